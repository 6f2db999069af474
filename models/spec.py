"""The feature specification that travels with a registered model."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

_INTEGRAL_DECIMAL = re.compile(r"[+-]?\d+\.0+")


def category_text(value: Any) -> str:
    """Return the text by which a categorical value is matched to a category.

    Surrounding whitespace is stripped, and an integral number, sent as a
    number or as decimal text, is written as an integer (``171``, ``171.0``,
    ``"171.0"`` and ``" 171 "`` all give ``"171"``). Other numbers keep
    ``str()`` (``1.5`` gives ``"1.5"``). Training categories and
    input values both pass through this function before they are compared.
    """
    if isinstance(value, str):
        text = value.strip()
        if _INTEGRAL_DECIMAL.fullmatch(text):
            return str(int(text.split(".")[0]))
        return text
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    is_float = isinstance(value, (float, np.floating))
    if is_float and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class FeatureSpec:
    """The columns a model expects, in order, with the categories it was trained on.

    Numeric features are float64. Each categorical feature lists its categories in
    training order, because LightGBM encodes categories by their position. Input
    values are matched to categories by :func:`category_text`.
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

    def encode(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Return the float matrix (rows by features) that LightGBM scores.

        ``columns`` maps every feature name to its values by row: numbers or
        None for numeric features, strings or None for categorical ones. A
        category becomes its position in the training categories, which is the
        code LightGBM reads from a frame made by :meth:`conform`. Missing values
        and categories not seen in training become NaN, as in :meth:`conform`.
        Building the matrix directly avoids pandas, whose per-column overhead
        dominates the cost of scoring a few rows.

        Raises
        ------
        KeyError
            If a feature is missing from ``columns``.
        """
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise KeyError(f"missing feature columns: {missing}")
        rows = len(columns[self.features[0]]) if self.features else 0
        matrix = np.empty((rows, len(self.features)), dtype=np.float64)
        for position, name in enumerate(self.features):
            values = columns[name]
            if name in self.categorical:
                codes = self._category_codes[name]
                matrix[:, position] = list(
                    map(codes.get, values, itertools.repeat(np.nan))
                )
            else:
                # A float array turns None into NaN.
                matrix[:, position] = np.asarray(values, dtype=np.float64)
        return matrix

    @cached_property
    def _category_codes(self) -> dict[str, dict[Any, float]]:
        # The spec is frozen, so the codes are computed once per instance.
        return {
            name: {category: float(code) for code, category in enumerate(values)}
            for name, values in self.categorical.items()
        }

    @cached_property
    def category_lookup(self) -> dict[str, dict[str, str]]:
        """Training category by its :func:`category_text`, per categorical feature.

        A category stored as ``"171.0"`` (from a float column in training) is
        also found by ``"171"``, so an integral number matches it.

        A blank category (empty or whitespace only) is left out, because a
        blank input value is a missing value, as null is.

        NOTE: if two training categories differ only in surrounding whitespace
        or in ``171`` against ``171.0``, only the first one is ever matched.
        """
        lookup: dict[str, dict[str, str]] = {}
        for name, values in self.categorical.items():
            by_text: dict[str, str] = {}
            for category in values:
                text = category_text(category)
                if not text:
                    continue
                by_text.setdefault(text, category)
                if _INTEGRAL_DECIMAL.fullmatch(text):
                    by_text.setdefault(str(int(float(text))), category)
            lookup[name] = by_text
        return lookup

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
                lookup = self.category_lookup[name]
                values = X[name].astype("object").where(X[name].notna(), None)
                values = values.map(
                    lambda v, lookup=lookup: (
                        None if v is None else lookup.get(category_text(v))
                    )
                )
                out[name] = pd.Categorical(values, categories=self.categorical[name])
            else:
                out[name] = pd.to_numeric(X[name], errors="raise").astype(float)
        return pd.DataFrame(out, index=X.index)
