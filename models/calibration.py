"""Probability calibration that is stored as plain numbers next to the booster.

A calibration maps the booster's raw probability to a calibrated one. It is fitted
on a period the booster did not train on and never changes the booster. Its
parameters are plain lists and floats, so they travel in the registered model's
metadata and a server applies them without importing scikit-learn's calibrators
or the training code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

ISOTONIC_MIN_ROWS = 1000
"""Calibration sets with at least this many rows, and ``ISOTONIC_MIN_POSITIVES``
positives, get isotonic regression; smaller ones get a sigmoid (Platt scaling),
because isotonic regression overfits small sets."""
ISOTONIC_MIN_POSITIVES = 100
_EPS = 1e-6


@dataclass(frozen=True)
class Calibration:
    """A fitted map from raw to calibrated probability.

    ``method`` is ``sigmoid`` (``p = 1 / (1 + exp(-(a * logit(raw) + b)))``) or
    ``isotonic`` (piecewise-linear interpolation through ``x`` and ``y``).
    """

    method: Literal["sigmoid", "isotonic"]
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    rows: int = 0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities for raw booster probabilities ``raw``."""
        p = np.asarray(raw, dtype=float)
        if self.method == "sigmoid":
            clipped = np.clip(p, _EPS, 1 - _EPS)
            logit = np.log(clipped / (1 - clipped))
            return 1.0 / (1.0 + np.exp(-(self.a * logit + self.b)))
        return np.interp(p, np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "a": self.a,
            "b": self.b,
            "x": self.x,
            "y": self.y,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration | None:
        if not data:
            return None
        return cls(
            method=data["method"],
            a=float(data.get("a", 1.0)),
            b=float(data.get("b", 0.0)),
            x=[float(v) for v in data.get("x", [])],
            y=[float(v) for v in data.get("y", [])],
            rows=int(data.get("rows", 0)),
        )


def choose_method(y: np.ndarray) -> Literal["sigmoid", "isotonic"]:
    """Return ``isotonic`` for large calibration sets and ``sigmoid`` otherwise."""
    y = np.asarray(y, dtype=int)
    positives = int(y.sum())
    negatives = len(y) - positives
    if (
        len(y) >= ISOTONIC_MIN_ROWS
        and min(positives, negatives) >= ISOTONIC_MIN_POSITIVES
    ):
        return "isotonic"
    return "sigmoid"


def fit_calibration(
    raw: np.ndarray,
    y: np.ndarray,
    method: Literal["sigmoid", "isotonic"] | None = None,
) -> Calibration:
    """Fit a calibration of raw probabilities ``raw`` to outcomes ``y``.

    Raises
    ------
    ValueError
        If ``y`` has only one class, because no calibration can be fitted then.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    p = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"the calibration set of {len(y)} rows has only one class; use a longer "
            "calibration period"
        )
    method = method or choose_method(y)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(p, y)
        calibration = Calibration(
            method="isotonic",
            x=[float(v) for v in iso.X_thresholds_],
            y=[float(v) for v in iso.y_thresholds_],
            rows=len(y),
        )
    else:
        clipped = np.clip(p, _EPS, 1 - _EPS)
        logit = np.log(clipped / (1 - clipped)).reshape(-1, 1)
        # A large C makes this plain maximum-likelihood Platt scaling.
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(logit, y)
        calibration = Calibration(
            method="sigmoid",
            a=float(platt.coef_[0, 0]),
            b=float(platt.intercept_[0]),
            rows=len(y),
        )
    logger.info("fitted %s calibration on %d rows", calibration.method, len(y))
    return calibration
