"""Baselines that the risk model must beat.

``RuleBaseline`` is the rule many schools already use: count the assessments a
learner has missed or failed so far. ``LogisticBaseline`` is a logistic
regression on the same features as the risk model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

RULE_COLUMNS = ("assessments_missed", "assessments_failed")


class RuleBaseline:
    """Score = missed + failed assessments so far, turned into a probability.

    ``fit`` stores the withdrawal rate observed in training for each count, so
    the score can be compared with probabilistic models on the Brier score too;
    counts above the largest seen in training take the rate of the largest.
    """

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RuleBaseline:
        counts = self.rule_score(X)
        frame = pd.DataFrame({"count": counts, "y": np.asarray(y, dtype=float)})
        # Add-one smoothing keeps rare counts from getting rates of exactly 0 or 1.
        grouped = frame.groupby("count")["y"].agg(["sum", "size"])
        self.rates_ = ((grouped["sum"] + 1) / (grouped["size"] + 2)).sort_index()
        return self

    @staticmethod
    def rule_score(X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in RULE_COLUMNS if c not in X.columns]
        if missing:
            raise KeyError(f"the rule baseline needs columns {missing}")
        return X[list(RULE_COLUMNS)].fillna(0).sum(axis=1).to_numpy(dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        counts = np.minimum(self.rule_score(X), self.rates_.index.max())
        # The rate of the nearest count seen in training at or below each count.
        positions = np.searchsorted(self.rates_.index.to_numpy(), counts, side="right")
        rates = self.rates_.to_numpy()[np.maximum(positions - 1, 0)]
        return np.column_stack([1 - rates, rates])


class LogisticBaseline:
    """Logistic regression on the risk model's features.

    Numeric features are median-imputed with missing-value indicators and
    standardised; categorical features are one-hot encoded, ignoring categories
    not seen in training.
    """

    def __init__(self, categorical: list[str], max_iter: int = 2000) -> None:
        self.categorical = categorical
        self.max_iter = max_iter

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for column in self.categorical:
            values = out[column].astype(object)
            out[column] = values.where(values.notna(), "missing").astype(str)
        return out

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        numeric = [c for c in X.columns if c not in self.categorical]
        prepare = ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True,
                                      keep_empty_features=True),
                        StandardScaler(),
                    ),
                    numeric,
                ),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), self.categorical),
            ]
        )
        self.pipeline_ = Pipeline(
            [("prepare", prepare), ("model", LogisticRegression(max_iter=self.max_iter))]
        )
        self.pipeline_.fit(self._prepare(X), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._prepare(X))
