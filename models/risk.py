"""The LightGBM dropout-risk model."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import Calibration
from models.spec import FeatureSpec

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, object] = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "random_state": 0,
    "n_jobs": 2,
    # Multithreaded histogram sums can differ in the last bits between runs,
    # which changes early stopping on large data; these two make runs repeatable.
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
"""Hyperparameters used when none are given; chosen by hand, not searched.

``n_estimators`` is normally replaced by :func:`choose_rounds` on a validation set.
"""

MAX_LEAF_SHARE = 0.05
"""Largest minimum leaf size as a share of the training rows."""
MIN_LEAF_ROWS = 5
"""Smallest minimum leaf size that the cap by ``MAX_LEAF_SHARE`` can set."""

STRONG_REGULARISATION: dict[str, object] = {
    "learning_rate": 0.02,
    "num_leaves": 7,
    "min_child_samples": 400,
    "colsample_bytree": 0.8,
    "reg_lambda": 10.0,
}
"""A second starting point for the hyperparameter search: small trees, large
leaves and a strong L2 penalty, for small, noisy and mostly linear signals such
as OULAD's assessment features (docs/model-quality.md has the comparison)."""

SINGLE_THREAD_ROWS = 20_000
"""Training sets with fewer rows are fitted on one thread unless ``n_jobs`` is
given. On a small table each boosting round is short, and LightGBM's OpenMP
threads wait between rounds by spinning. When another process keeps one of the
2 cores busy, a 2-thread fit waits for that core at every round. 30 fits of 100
rounds on 3,500 rows took 70.4 s on 2 threads against 8.9 s on one thread, and
5.0 s against 8.6 s with both cores free (``benchmarks/fit_threads.py``)."""

MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50

MONOTONE_DIRECTIONS: dict[str, int] = {
    "assessments_missed": 1,
    "assessments_failed": 1,
    "share_submitted": -1,
    "mean_score": -1,
    "weighted_mean_score": -1,
    "last_score": -1,
    "min_score": -1,
    "days_since_last_submission": 1,
}
"""Features whose effect on the risk has a known sign: 1 raises it, -1 lowers it.

The booster is constrained to these directions (LightGBM ``monotone_constraints``),
so it cannot learn a noisy reversal from a small training set. The measured
effect on OULAD, inside the training cohorts, is in docs/model-quality.md.
"""


def monotone_constraints(columns: list[str]) -> list[int]:
    """Return LightGBM's ``monotone_constraints`` for ``columns`` in that order."""
    return [MONOTONE_DIRECTIONS.get(name, 0) for name in columns]


def fit_risk_model(
    X: pd.DataFrame,
    y: np.ndarray,
    params: dict[str, object] | None = None,
) -> tuple[lgb.LGBMClassifier, FeatureSpec]:
    """Fit the LightGBM classifier on ``X`` and return it with its feature spec.

    Categorical columns must have pandas ``category`` dtype; LightGBM then stores
    their categories in the booster and reapplies them at prediction time.
    """
    spec = FeatureSpec.from_frame(X)
    model = lgb.LGBMClassifier(**_with_constraints(params, spec.features, len(X)))
    logger.info("fitting LightGBM on %d rows and %d features", len(X), X.shape[1])
    model.fit(spec.conform(X), y)
    return model, spec


def predict_risk(
    model: lgb.LGBMClassifier,
    spec: FeatureSpec,
    X: pd.DataFrame | np.ndarray,
    calibration: Calibration | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Return the probability of withdrawing for each row of ``X``.

    ``X`` is a frame with the spec's columns, or a float matrix from
    :meth:`FeatureSpec.encode`, which skips pandas and costs far less for a few
    rows. ``num_threads`` overrides the model's LightGBM thread count for this
    call. With ``calibration`` the booster's probability is mapped through it;
    the booster itself is the same either way.
    """
    options = {} if num_threads is None else {"num_threads": num_threads}
    if isinstance(X, np.ndarray):
        raw = model.booster_.predict(X, **options)
    else:
        raw = model.predict_proba(spec.conform(X), **options)[:, 1]
    if calibration is None:
        return raw
    return calibration.apply(raw)


def rank_order(probabilities: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
    """Return row positions from highest to lowest risk.

    Equal probabilities (isotonic calibration maps many raw scores to one value)
    are ordered by the raw score, then by row position, so the list is
    reproducible.
    """
    p = np.asarray(probabilities, dtype=float)
    tiebreak = np.zeros(len(p)) if raw is None else np.asarray(raw, dtype=float)
    positions = np.arange(len(p))
    # np.lexsort sorts by the last key first.
    return np.lexsort((positions, -tiebreak, -p))


def choose_rounds(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    params: dict[str, object] | None = None,
) -> int:
    """Return the number of boosting rounds at which validation log loss stops improving.

    Training stops after ``EARLY_STOPPING_ROUNDS`` rounds without improvement,
    or at ``MAX_ROUNDS``.
    """
    spec = FeatureSpec.from_frame(X_fit)
    model = lgb.LGBMClassifier(
        **_with_constraints(
            (params or {}) | {"n_estimators": MAX_ROUNDS}, spec.features, len(X_fit)
        )
    )
    model.fit(
        spec.conform(X_fit),
        y_fit,
        eval_X=(spec.conform(X_valid),),
        eval_y=(y_valid,),
        eval_metric="binary_logloss",
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    rounds = int(model.best_iteration_ or MAX_ROUNDS)
    logger.info("early stopping chose %d boosting rounds", rounds)
    return max(rounds, 1)


def _with_constraints(
    params: dict[str, object] | None, columns: list[str], rows: int
) -> dict[str, object]:
    merged = DEFAULT_PARAMS | (params or {})
    if rows < SINGLE_THREAD_ROWS and "n_jobs" not in (params or {}):
        merged["n_jobs"] = 1
    if "monotone_constraints" not in merged:
        merged["monotone_constraints"] = monotone_constraints(columns)
    # A leaf size meant for tens of thousands of rows forbids every split on a
    # table of a few hundred, and the booster then scores all rows alike.
    cap = max(MIN_LEAF_ROWS, int(rows * MAX_LEAF_SHARE))
    merged["min_child_samples"] = min(int(merged["min_child_samples"]), cap)
    return merged
