"""Hyperparameter search for the risk model with Optuna.

Temporal validation scores each trial on one validation period (:func:`tune`).
Data without a time axis scores each trial by cross-validation over the
training rows (:func:`tune_cross_validated`), because one random validation
split of a small table gives ROC-AUC figures too noisy to rank trials by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from models.risk import (
    DEFAULT_PARAMS,
    MAX_LEAF_SHARE,
    MIN_LEAF_ROWS,
    STRONG_REGULARISATION,
    choose_rounds,
    fit_early_stopped,
    fit_risk_model,
    predict_risk,
)
from training.metrics import roc_auc

logger = logging.getLogger(__name__)

SEARCHED = (
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "colsample_bytree",
    "reg_lambda",
)
"""Hyperparameters that the search varies; the others keep ``DEFAULT_PARAMS``."""

LEAF_ROWS_RANGE = (20, 800)
"""Range of ``min_child_samples`` searched on large tables (log scale)."""

TUNING_FOLDS = 5
"""Folds of :func:`tune_cross_validated`, stratified by label and grouped by learner."""


@dataclass(frozen=True)
class Tuned:
    """The chosen hyperparameters, boosting rounds and the search's record."""

    params: dict[str, Any]
    rounds: int
    trials: int
    best_validation_roc_auc: float | None


def leaf_rows_range(rows: int) -> tuple[int, int]:
    """Return the ``min_child_samples`` range to search for ``rows`` training rows.

    ``models.risk`` caps the minimum leaf size at ``MAX_LEAF_SHARE`` of the
    rows, so on a small table the top of ``LEAF_ROWS_RANGE`` would all fall on
    that cap. The range is cut at the cap, and its bottom lowered to a quarter
    of the cap (but not under ``MIN_LEAF_ROWS``) when the cap is below 80 rows.
    """
    low, high = LEAF_ROWS_RANGE
    cap = max(MIN_LEAF_ROWS, int(rows * MAX_LEAF_SHARE))
    high = min(high, cap)
    low = min(low, max(MIN_LEAF_ROWS, high // 4))
    return low, high


def _suggest(trial: Any, rows: int) -> dict[str, Any]:
    low, high = leaf_rows_range(rows)
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int(
            "min_child_samples", low, high, log=True
        ),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def _search(
    score: Callable[[dict[str, Any]], tuple[float, int]],
    rows: int,
    trials: int,
    seed: int,
) -> Tuned:
    """Run the seeded TPE search; ``score`` returns a trial's ROC-AUC and rounds.

    The default hyperparameters are the first trial and ``STRONG_REGULARISATION``
    the second, each with ``min_child_samples`` moved into the searched range.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        value, rounds = score(_suggest(trial, rows) | {"random_state": seed})
        trial.set_user_attr("rounds", rounds)
        return value

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    low, high = leaf_rows_range(rows)
    for start in (DEFAULT_PARAMS, STRONG_REGULARISATION):
        values = {k: start[k] for k in SEARCHED}
        values["min_child_samples"] = min(
            max(int(values["min_child_samples"]), low), high
        )
        study.enqueue_trial(values)
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    logger.info(
        "Optuna chose %s after %d trials (validation ROC-AUC %.4f)",
        best.params,
        trials,
        best.value,
    )
    return Tuned(
        params=dict(best.params),
        rounds=int(best.user_attrs["rounds"]),
        trials=trials,
        best_validation_roc_auc=float(best.value),
    )


def tune(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    trials: int,
    seed: int,
) -> Tuned:
    """Search hyperparameters with a seeded TPE sampler; score each on ``X_valid``.

    Each trial stops boosting early on the validation log loss and is scored by
    its validation ROC-AUC. The default hyperparameters are the first trial and
    ``STRONG_REGULARISATION`` the second, so the search never returns anything
    worse on validation than either.
    With ``trials`` 0 the defaults are used with early stopping only.
    """
    if trials <= 0 or len(np.unique(y_valid)) < 2:
        rounds = choose_rounds(X_fit, y_fit, X_valid, y_valid, {"random_state": seed})
        return Tuned(params={}, rounds=rounds, trials=0, best_validation_roc_auc=None)

    def score(params: dict[str, Any]) -> tuple[float, int]:
        rounds = choose_rounds(X_fit, y_fit, X_valid, y_valid, params)
        model, spec = fit_risk_model(X_fit, y_fit, params | {"n_estimators": rounds})
        value = roc_auc(np.asarray(y_valid), predict_risk(model, spec, X_valid))
        return value or 0.0, rounds

    return _search(score, len(X_fit), trials, seed)


def tune_cross_validated(
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    trials: int,
    seed: int,
    folds: int = TUNING_FOLDS,
) -> Tuned:
    """Search hyperparameters, scoring each trial by cross-validation on ``X``.

    Folds are stratified by ``y`` and grouped by ``groups`` (the learner). In
    each fold the booster stops early on the held-out fold's log loss and is
    scored by its ROC-AUC there. A trial scores the mean ROC-AUC over the folds
    and keeps the mean of their boosting rounds for the refit on all of ``X``.
    With ``trials`` 0 the defaults are used and only the rounds are chosen.
    """
    y = np.asarray(y)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(X, y, groups))

    def score(params: dict[str, Any]) -> tuple[float, int]:
        values, rounds = [], []
        for fit_rows, scored_rows in splits:
            model, spec = fit_early_stopped(
                X.iloc[fit_rows],
                y[fit_rows],
                X.iloc[scored_rows],
                y[scored_rows],
                params,
            )
            rounds.append(max(int(model.best_iteration_ or 1), 1))
            scored = predict_risk(model, spec, X.iloc[scored_rows])
            values.append(roc_auc(y[scored_rows], scored) or 0.0)
        return float(np.mean(values)), round(float(np.mean(rounds)))

    if trials <= 0:
        value, rounds = score({"random_state": seed})
        logger.info(
            "early stopping chose %d boosting rounds over %d folds", rounds, folds
        )
        return Tuned(params={}, rounds=rounds, trials=0, best_validation_roc_auc=value)
    rows = len(X) - len(X) // folds
    return _search(score, rows, trials, seed)
