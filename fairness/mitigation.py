"""What mitigating a disparity in recall would cost, on held-out learners.

Four ways of flagging learners are compared on the same evaluation half:

1. the unmitigated model, flagging the top share ``k`` by score;
2. fairlearn's :class:`~fairlearn.postprocessing.ThresholdOptimizer` on the
   model's score with ``true_positive_rate_parity`` (equal opportunity), fitted
   on the other half. It picks its own selection rate, so its precision is not
   at ``k`` and its selection rate is shown next to it;
3. a logistic regression on the same features, unmitigated, at ``k``; it
   separates the cost of changing the learner from the cost of mitigating;
4. fairlearn's :class:`~fairlearn.reductions.ExponentiatedGradient` with that
   logistic regression under ``TruePositiveRateParity`` (in-training), at ``k``.

The split is by learner and seeded, so results are reproducible. Groups with a
single class in the fitting half cannot be fitted by either method: their rows
are left out of fitting, the ThresholdOptimizer flags them with the unmitigated
score threshold, and each such fallback is logged and listed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from threadpoolctl import threadpool_limits

from fairness.audit import _group_names

logger = logging.getLogger(__name__)

MIN_RECALL_LEARNERS = 10
"""A group enters the recall ratio only with this many learners in the
evaluation half, the same default as the audit's suppression."""


@dataclass
class MethodResult:
    """Selections of one method on the evaluation half."""

    name: str
    description: str
    selection_rate: float
    precision: float
    recall: float
    precision_at_k: float | None
    recall_by_group: dict[str, float | None]
    recall_ratio: float | None
    recall_ratio_reason: str | None = None


@dataclass
class MitigationResult:
    """The comparison of :func:`compare_mitigations`."""

    attribute: str | None
    top_share: float
    seed: int
    fit_rows: int = 0
    eval_rows: int = 0
    methods: list[MethodResult] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    skipped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "top_share": self.top_share,
            "seed": self.seed,
            "fit_rows": self.fit_rows,
            "eval_rows": self.eval_rows,
            "methods": [_clean(m.__dict__) for m in self.methods],
            "fallbacks": self.fallbacks,
            "skipped_reason": self.skipped_reason,
        }


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    def value(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        return v

    return {k: value(v) for k, v in data.items()}


class _ScoreAsModel(ClassifierMixin, BaseEstimator):
    """A fitted "estimator" whose probability is the first column of X.

    ThresholdOptimizer then thresholds the risk model's own scores, without the
    LightGBM categorical columns passing through fairlearn's input checks.
    """

    def fit(self, X: Any = None, y: Any = None, **kwargs: Any) -> _ScoreAsModel:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        return (np.asarray(X)[:, 0] >= 0.5).astype(int)

    def predict_proba(self, X: Any) -> np.ndarray:
        score = np.asarray(X, dtype=float)[:, 0]
        return np.column_stack([1 - score, score])


def _top_k(scores: np.ndarray, share: float) -> np.ndarray:
    k = math.ceil(share * len(scores))
    order = np.argsort(-scores, kind="stable")
    selected = np.zeros(len(scores), dtype=bool)
    selected[order[:k]] = True
    return selected


def _design_matrix(X: pd.DataFrame, fit_rows: np.ndarray) -> np.ndarray:
    """Median-impute and standardise numeric columns, one-hot the categorical ones."""
    numeric = X.select_dtypes(include="number").astype(float)
    medians = numeric[fit_rows].median()
    numeric = numeric.fillna(medians).fillna(0.0)
    mean, std = numeric[fit_rows].mean(), numeric[fit_rows].std().replace(0, 1)
    parts = [((numeric - mean) / std).fillna(0.0)]
    categorical = [c for c in X.columns if c not in numeric.columns]
    if categorical:
        parts.append(
            pd.get_dummies(X[categorical].astype(str), dtype=float).reset_index(
                drop=True
            )
        )
    return pd.concat([p.reset_index(drop=True) for p in parts], axis=1).to_numpy()


def _evaluate(
    name: str,
    description: str,
    y: np.ndarray,
    selected: np.ndarray,
    groups: pd.Series,
    learners: np.ndarray,
    share: float,
    ranked: bool,
) -> MethodResult:
    chosen = int(selected.sum())
    positives = int(y.sum())
    true_positives = int((selected & (y == 1)).sum())
    recall_by_group: dict[str, float | None] = {}
    eligible = []
    for group in sorted(groups.unique()):
        in_group = (groups == group).to_numpy()
        group_positives = int(y[in_group].sum())
        value = (
            float((selected[in_group] & (y[in_group] == 1)).sum() / group_positives)
            if group_positives
            else None
        )
        recall_by_group[group] = value
        if (
            value is not None
            and len(np.unique(learners[in_group])) >= MIN_RECALL_LEARNERS
        ):
            eligible.append(value)
    ratio, reason = None, None
    if len(eligible) < 2:
        reason = (
            f"fewer than two groups have {MIN_RECALL_LEARNERS} learners and a "
            "defined recall in the evaluation half"
        )
    elif max(eligible) == 0:
        reason = "recall is 0 in every group, so the ratio is 0/0"
    else:
        ratio = min(eligible) / max(eligible)
    precision = true_positives / chosen if chosen else float("nan")
    return MethodResult(
        name=name,
        description=description,
        selection_rate=chosen / len(y),
        precision=precision,
        recall=true_positives / positives if positives else float("nan"),
        precision_at_k=precision if ranked else None,
        recall_by_group=recall_by_group,
        recall_ratio=ratio,
        recall_ratio_reason=reason,
    )


def _split_learners(learners: np.ndarray, seed: int) -> np.ndarray:
    unique = np.unique(learners)
    rng = np.random.default_rng(seed)
    fit_learners = rng.permutation(unique)[: len(unique) // 2]
    return np.isin(learners, fit_learners)


def _both_classes(groups: pd.Series, y: np.ndarray) -> set[str]:
    per_group = pd.Series(y).groupby(groups.to_numpy()).agg(["min", "max"])
    return set(per_group.index[per_group["min"] < per_group["max"]].astype(str))


def compare_mitigations(
    X: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    sensitive: pd.Series | None,
    *,
    attribute: str | None,
    learners: np.ndarray,
    top_share: float,
    seed: int = 0,
    max_rows: int = 20000,
) -> MitigationResult:
    """Compare the unmitigated model with a post-processing and an in-training method.

    Parameters
    ----------
    X
        Model features of the evaluation rows.
    y
        True labels, 0 or 1.
    scores
        The risk model's probabilities for the rows.
    sensitive
        The attribute whose recall is equalised; missing values become
        ``unknown``. ``None`` skips the comparison.
    attribute
        Name of that attribute, for the report.
    learners
        Learner per row; fitting and evaluation halves never share a learner.
    top_share
        Operating point ``k`` as a share of rows.
    seed
        Seed of the split, the ThresholdOptimizer's randomisation and the
        in-training method.
    max_rows
        At most this many rows of the fitting half fit the in-training method,
        sampled with ``seed``.
    """
    # One BLAS thread: the many small logistic fits of the reduction ran about
    # ten times slower with OpenBLAS threads competing on a busy 2-core machine.
    with threadpool_limits(limits=1):
        return _compare(
            X,
            y,
            scores,
            sensitive,
            attribute=attribute,
            learners=learners,
            top_share=top_share,
            seed=seed,
            max_rows=max_rows,
        )


def _compare(
    X: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    sensitive: pd.Series | None,
    *,
    attribute: str | None,
    learners: np.ndarray,
    top_share: float,
    seed: int,
    max_rows: int,
) -> MitigationResult:
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import ExponentiatedGradient, TruePositiveRateParity
    from sklearn.linear_model import LogisticRegression

    result = MitigationResult(attribute=attribute, top_share=top_share, seed=seed)
    if sensitive is None:
        result.skipped_reason = (
            "the source has none of the policy's sensitive attributes"
        )
        return result
    groups = _group_names(sensitive.reset_index(drop=True))
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    fit = _split_learners(np.asarray(learners), seed)
    held = ~fit
    result.fit_rows, result.eval_rows = int(fit.sum()), int(held.sum())
    if y[fit].min() == y[fit].max() or y[held].min() == y[held].max():
        result.skipped_reason = "a half of the split has only one class"
        return result

    fittable = _both_classes(groups[fit], y[fit])
    for group in sorted(set(groups) - fittable):
        message = (
            f"{attribute} = {group}: one class (or no rows) in the fitting half, so "
            "it is left out of fitting and flagged at the unmitigated threshold"
        )
        logger.warning("mitigation fallback: %s", message)
        result.fallbacks.append(message)
    in_fittable = groups.isin(fittable).to_numpy()

    eval_groups = groups[held].reset_index(drop=True)
    eval_learners = np.asarray(learners)[held]
    y_eval = y[held]

    def evaluate(
        name: str, description: str, selected: np.ndarray, ranked: bool
    ) -> None:
        result.methods.append(
            _evaluate(
                name,
                description,
                y_eval,
                selected,
                eval_groups,
                eval_learners,
                top_share,
                ranked,
            )
        )

    evaluate(
        "unmitigated model",
        f"the risk model, top {top_share:.0%} of rows by score",
        _top_k(scores[held], top_share),
        ranked=True,
    )

    # ThresholdOptimizer on the score, fitted on the fitting half's fittable groups.
    fit_post = fit & in_fittable
    optimizer = ThresholdOptimizer(
        estimator=_ScoreAsModel().fit(),
        constraints="true_positive_rate_parity",
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict_proba",
    )
    optimizer.fit(
        scores[fit_post].reshape(-1, 1),
        y[fit_post],
        sensitive_features=groups[fit_post],
    )
    threshold = np.sort(scores[fit])[::-1][max(math.ceil(top_share * fit.sum()) - 1, 0)]
    post = scores[held] >= threshold
    known = in_fittable[held]
    if known.any():
        post[known] = optimizer.predict(
            scores[held][known].reshape(-1, 1),
            sensitive_features=eval_groups[known],
            random_state=seed,
        ).astype(bool)
    evaluate(
        "ThresholdOptimizer (equal opportunity)",
        "fairlearn post-processing of the model's score with group-specific "
        "thresholds for equal recall, balanced-accuracy objective; it sets its own "
        "selection rate",
        post,
        ranked=False,
    )

    # Logistic regression, unmitigated and with ExponentiatedGradient.
    design = _design_matrix(X.reset_index(drop=True), fit)
    rng = np.random.default_rng(seed)
    fit_index = np.flatnonzero(fit & in_fittable)
    if len(fit_index) > max_rows:
        fit_index = np.sort(rng.choice(fit_index, size=max_rows, replace=False))
    logistic = LogisticRegression(max_iter=500)
    logistic.fit(design[fit_index], y[fit_index])
    evaluate(
        "logistic regression",
        f"unmitigated logistic regression on the same features, top {top_share:.0%}",
        _top_k(logistic.predict_proba(design[held])[:, 1], top_share),
        ranked=True,
    )
    reduction = ExponentiatedGradient(
        LogisticRegression(max_iter=500),
        constraints=TruePositiveRateParity(difference_bound=0.02),
        max_iter=20,
        nu=None,
    )
    reduction.fit(
        design[fit_index], y[fit_index], sensitive_features=groups.to_numpy()[fit_index]
    )
    # Rank by the mixture's expected probability: each predictor's probability
    # weighted by the weight fairlearn gives it (public weights_ and predictors_).
    mitigated = np.zeros(int(held.sum()))
    for index, weight in reduction.weights_.items():
        if weight > 0:
            predictor = reduction.predictors_[index]
            mitigated += weight * predictor.predict_proba(design[held])[:, 1]
    evaluate(
        "ExponentiatedGradient (equal opportunity)",
        "fairlearn in-training reduction with true positive rate parity "
        f"(bound 0.02) on the logistic regression, top {top_share:.0%} by its "
        "predicted probability",
        _top_k(mitigated, top_share),
        ranked=True,
    )
    logger.info(
        "compared %d mitigation methods on %d held-out rows (%d fallbacks)",
        len(result.methods),
        result.eval_rows,
        len(result.fallbacks),
    )
    return result
