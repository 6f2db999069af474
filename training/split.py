"""Train the risk model and its baselines under temporal or stratified validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from features.build import FeatureFrame
from models.baselines import LogisticBaseline, RuleBaseline
from models.risk import choose_rounds, fit_risk_model, predict_risk
from models.spec import FeatureSpec

logger = logging.getLogger(__name__)

EARLY_STOPPING_SHARE = 0.2
"""Share of training rows held out for early stopping when no later cohort exists."""


@dataclass
class Prediction:
    """Scores of every model on the evaluation rows, and the model to register.

    ``rows`` are positions in the feature frame; ``scores`` maps ``model``,
    ``rule`` and ``logistic`` to probabilities aligned with ``rows``.
    """

    rows: np.ndarray
    scores: dict[str, np.ndarray]
    final_model: lgb.LGBMClassifier
    spec: FeatureSpec
    details: dict[str, Any] = field(default_factory=dict)


def _fit_all(
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_test: pd.DataFrame,
    rounds: int,
    categorical: list[str],
    seed: int,
) -> tuple[dict[str, np.ndarray], lgb.LGBMClassifier, FeatureSpec]:
    model, spec = fit_risk_model(
        X_train, y_train, {"n_estimators": rounds, "random_state": seed}
    )
    rule = RuleBaseline().fit(X_train, y_train)
    logistic = LogisticBaseline(categorical).fit(X_train, y_train)
    scores = {
        "model": predict_risk(model, spec, X_test),
        "rule": rule.predict_proba(X_test)[:, 1],
        "logistic": logistic.predict_proba(X_test)[:, 1],
    }
    return scores, model, spec


def _holdout_rounds(
    X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, seed: int
) -> int:
    """Choose boosting rounds on a random learner-disjoint share of ``X``."""
    splitter = StratifiedGroupKFold(
        n_splits=round(1 / EARLY_STOPPING_SHARE), shuffle=True, random_state=seed
    )
    fit_rows, valid_rows = next(splitter.split(X, y, groups))
    return choose_rounds(
        X.iloc[fit_rows], y[fit_rows], X.iloc[valid_rows], y[valid_rows]
    )


def predict_temporal(
    frame: FeatureFrame,
    units: pd.DataFrame,
    cutoff: pd.Timestamp,
    seed: int = 0,
    disjoint_learners: bool = True,
    label_window_days: int | None = None,
) -> Prediction:
    """Train on units that start before ``cutoff`` and score the later units.

    Boosting rounds are chosen by early stopping on the latest training cohort,
    so that the choice is itself made forward in time. With
    ``disjoint_learners``, test rows of learners who also appear in training
    are dropped, so no learner is on both sides. School records follow the same
    pupils from year to year, and the model scores them again next year, so
    they turn it off. With ``label_window_days``, training rows whose label
    window reaches the cutoff are dropped, so no training label looks into the
    test period.
    """
    data = frame.data
    unit_start = data["unit_id"].map(units.set_index("unit_id")["start_date"])
    train = (unit_start < cutoff).to_numpy()
    test = ~train
    purged = np.zeros(len(data), dtype=bool)
    if label_window_days is not None:
        window_end = data["asof_date"] + pd.Timedelta(days=label_window_days)
        purged = train & (window_end >= cutoff).to_numpy()
        train = train & ~purged
    if not train.any() or not test.any():
        raise ValueError(
            f"the temporal cutoff {cutoff.date()} leaves no training or no test rows; "
            "choose a date between the first and last unit start dates"
        )
    overlap = test & data["learner_id"].isin(data.loc[train, "learner_id"]).to_numpy()
    if not disjoint_learners:
        overlap[:] = False
    test = test & ~overlap
    if not test.any():
        raise ValueError(
            f"every learner in the units starting on or after {cutoff.date()} also "
            f"has rows in earlier units ({int(overlap.sum())} test rows dropped), so "
            "no test rows remain; test on units with new learners, or use "
            "stratified validation"
        )
    X, y = frame.X, frame.y

    train_cohorts = unit_start[train].groupby(data.loc[train, "cohort"]).min()
    latest = train_cohorts.idxmax()
    valid = train & (data["cohort"] == latest).to_numpy()
    if len(train_cohorts) > 1:
        rounds = choose_rounds(X[train & ~valid], y[train & ~valid], X[valid], y[valid])
        stopping = f"early stopping on the latest training cohort {latest}"
    else:
        rounds = _holdout_rounds(
            X[train], y[train], data.loc[train, "learner_id"].to_numpy(), seed
        )
        stopping = "early stopping on a random 20 % of training learners"

    scores, model, spec = _fit_all(
        X[train], y[train], X[test], rounds, frame.categorical, seed
    )
    rows = np.flatnonzero(test)
    logger.info(
        "temporal split: %d training rows, %d test rows, %d test rows dropped",
        int(train.sum()),
        len(rows),
        int(overlap.sum()),
    )
    return Prediction(
        rows=rows,
        scores=scores,
        final_model=model,
        spec=spec,
        details={
            "cutoff": str(cutoff.date()),
            "train_cohorts": sorted(train_cohorts.index.tolist()),
            "test_cohorts": sorted(data.loc[test, "cohort"].unique().tolist()),
            "train_rows": int(train.sum()),
            "test_rows": int(len(rows)),
            "test_rows_dropped_learner_in_training": int(overlap.sum()),
            "training_rows_dropped_label_after_cutoff": int(purged.sum()),
            "boosting_rounds": rounds,
            "rounds_chosen_by": stopping,
        },
    )


def predict_stratified(
    frame: FeatureFrame, folds: int = 5, seed: int = 0
) -> Prediction:
    """Score every row out of fold with stratified cross-validation grouped by learner.

    The registered model is refitted on all rows with the median number of
    boosting rounds chosen in the folds.
    """
    X, y = frame.X, frame.y
    groups = frame.data["learner_id"].to_numpy()
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {name: np.zeros(len(X)) for name in ("model", "rule", "logistic")}
    fold_rounds = []
    for fold, (train_rows, test_rows) in enumerate(splitter.split(X, y, groups)):
        rounds = _holdout_rounds(
            X.iloc[train_rows], y[train_rows], groups[train_rows], seed
        )
        fold_scores, _, _ = _fit_all(
            X.iloc[train_rows],
            y[train_rows],
            X.iloc[test_rows],
            rounds,
            frame.categorical,
            seed,
        )
        for name, values in fold_scores.items():
            scores[name][test_rows] = values
        fold_rounds.append(rounds)
        logger.info("fold %d of %d done (%d boosting rounds)", fold + 1, folds, rounds)

    rounds = int(np.median(fold_rounds))
    model, spec = fit_risk_model(X, y, {"n_estimators": rounds, "random_state": seed})
    return Prediction(
        rows=np.arange(len(X)),
        scores=scores,
        final_model=model,
        spec=spec,
        details={
            "folds": folds,
            "boosting_rounds_per_fold": fold_rounds,
            "boosting_rounds": rounds,
            "rounds_chosen_by": "early stopping on 20 % of each fold's training learners",
        },
    )
