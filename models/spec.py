"""The feature specification that travels with a registered model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class FeatureSpec:
    """The columns a model expects, in order, with the categories it was trained on.

    Numeric features are float64. Each categorical feature lists its categories in
    training order, because LightGBM encodes categories by their position.
    """

    features: list[str]
    categorical: dict[str, list[str]] = field(default_factory=dict)
    label: str = "withdraws_after"

    @classmethod
    def from_frame(cls, X: pd.DataFrame, label: str = "withdraws_after") -> FeatureSpec:
        # Only categories that occur in X count as seen: a category declared by
        # the dtype but absent from the training rows is unknown to the model.
        categorical = {
            name: [
                str(c)
                for c in X[name].cat.categories
                if c in set(X[name].dropna().unique())
            ]
            for name in X.columns
            if isinstance(X[name].dtype, pd.CategoricalDtype)
        }
        return cls(features=list(X.columns), categorical=categorical, label=label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "categorical": self.categorical,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            features=list(data["features"]),
            categorical={k: list(v) for k, v in data.get("categorical", {}).items()},
            label=data.get("label", "withdraws_after"),
        )

    def conform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return ``X`` with the spec's column order and types.

        Categorical columns get exactly the training categories, so a value never
        seen in training becomes missing instead of shifting the codes.

        Raises
        ------
        KeyError
            If a feature column is missing.
        """
        missing = [name for name in self.features if name not in X.columns]
        if missing:
            raise KeyError(f"missing feature columns: {missing}")
        out = {}
        for name in self.features:
            if name in self.categorical:
                values = X[name].astype("object").where(X[name].notna(), None)
                values = values.map(lambda v: None if v is None else str(v))
                out[name] = pd.Categorical(values, categories=self.categorical[name])
            else:
                out[name] = pd.to_numeric(X[name], errors="raise").astype(float)
        return pd.DataFrame(out, index=X.index)
