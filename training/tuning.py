"""Hyperparameter search for the risk model with Optuna on a validation period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.risk import (
    DEFAULT_PARAMS,
    STRONG_REGULARISATION,
    choose_rounds,
    fit_risk_model,
    predict_risk,
)
from training.metrics import roc_auc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuned:
    """The chosen hyperparameters, boosting rounds and the search's record."""

    params: dict[str, Any]
    rounds: int
    trials: int
    best_validation_roc_auc: float | None


def _suggest(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 800, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


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

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        params = _suggest(trial) | {"random_state": seed}
        rounds = choose_rounds(X_fit, y_fit, X_valid, y_valid, params)
        model, spec = fit_risk_model(X_fit, y_fit, params | {"n_estimators": rounds})
        trial.set_user_attr("rounds", rounds)
        return roc_auc(np.asarray(y_valid), predict_risk(model, spec, X_valid)) or 0.0

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    searched = (
        "learning_rate",
        "num_leaves",
        "min_child_samples",
        "colsample_bytree",
        "reg_lambda",
    )
    for start in (DEFAULT_PARAMS, STRONG_REGULARISATION):
        study.enqueue_trial({k: start[k] for k in searched})
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
