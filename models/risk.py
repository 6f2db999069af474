"""The LightGBM dropout-risk model."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.spec import FeatureSpec

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, object] = {
    "n_estimators": 400,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "random_state": 0,
    "n_jobs": 2,
    "verbose": -1,
}
"""Hyperparameters used when none are given; chosen by hand, not searched."""


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
    model = lgb.LGBMClassifier(**(DEFAULT_PARAMS | (params or {})))
    logger.info("fitting LightGBM on %d rows and %d features", len(X), X.shape[1])
    model.fit(spec.conform(X), y)
    return model, spec


def predict_risk(model: lgb.LGBMClassifier, spec: FeatureSpec, X: pd.DataFrame) -> np.ndarray:
    """Return the probability of withdrawing for each row of ``X``."""
    return model.predict_proba(spec.conform(X))[:, 1]
