"""Global view of the model's explanations, for the audit report.

Contributions are TreeSHAP values for the dropout class in log-odds, from
LightGBM's ``pred_contrib`` (see :mod:`models.reasons`). On a seeded sample of
rows, the overview checks that they add up, with the base value, to LightGBM's
raw score and that they agree with ``shap.TreeExplainer``. It then ranks
features by mean absolute contribution, draws dependence plots for the top
features and shows the reason sentences of a few of the highest-risk rows.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.reason_text import CONTRIBUTION_UNIT, feature_label, top_reasons
from models.reasons import contributions
from models.spec import FeatureSpec

logger = logging.getLogger(__name__)

ADDITIVITY_TOLERANCE = 1e-6
"""Largest accepted gap, in log-odds, between contributions plus base value and
the raw score."""


@dataclass
class ExplanationOverview:
    """Global explanation figures of one model on a sample of evaluation rows."""

    rows: int
    base_value: float
    additivity_max_error: float
    shap_agreement_max_error: float | None
    importance: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    unit: str = CONTRIBUTION_UNIT
    plots: dict[str, str] = field(default_factory=dict)
    """Dependence plots, feature name to PNG as base64; not stored in JSON."""

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.pop("plots")
        return data


def _dependence_png(feature: str, values: pd.Series, shap_values: np.ndarray) -> str:
    figure = Figure(figsize=(4.2, 3.0), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if isinstance(
        values.dtype, pd.CategoricalDtype
    ) or not pd.api.types.is_numeric_dtype(values):
        labels = values.astype(str).fillna("missing")
        order = sorted(labels.unique())
        positions = labels.map({name: i for i, name in enumerate(order)})
        axes.scatter(positions, shap_values, s=6, alpha=0.4, color="#0072B2")
        axes.set_xticks(range(len(order)), labels=order, rotation=45, fontsize=7)
    else:
        axes.scatter(values, shap_values, s=6, alpha=0.4, color="#0072B2")
    axes.axhline(0.0, color="#595959", linewidth=0.8)
    axes.set_xlabel(feature_label(feature), fontsize=8)
    axes.set_ylabel(f"contribution ({CONTRIBUTION_UNIT})", fontsize=8)
    axes.set_title(feature, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shap_agreement(
    model: lgb.LGBMClassifier, spec: FeatureSpec, X: pd.DataFrame, fast: np.ndarray
) -> float | None:
    try:
        import shap
    except ImportError:  # pragma: no cover - shap is a dependency
        return None
    explainer = shap.TreeExplainer(model.booster_)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightGBM binary classifier")
        values = explainer.shap_values(spec.conform(X))
    if isinstance(values, list):
        values = values[1]
    return float(np.max(np.abs(np.asarray(values) - fast)))


def explanation_overview(
    model: lgb.LGBMClassifier,
    spec: FeatureSpec,
    X: pd.DataFrame,
    *,
    seed: int = 0,
    sample: int = 2000,
    plotted: int = 4,
    examples: int = 3,
) -> ExplanationOverview:
    """Compute the global explanation view on at most ``sample`` rows of ``X``.

    Raises
    ------
    RuntimeError
        If contributions plus base value differ from the raw score by more than
        ``ADDITIVITY_TOLERANCE`` on any sampled row.
    """
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(X), size=min(sample, len(X)), replace=False))
    X = X.iloc[chosen].reset_index(drop=True)
    values, base = contributions(model, spec, X)
    raw = model.booster_.predict(spec.conform(X), raw_score=True)
    additivity = float(np.max(np.abs(values.sum(axis=1) + base - raw)))
    if additivity > ADDITIVITY_TOLERANCE:
        raise RuntimeError(
            f"SHAP contributions plus base value differ from the raw score by up to "
            f"{additivity:.2e} {CONTRIBUTION_UNIT}; the explanations are not faithful"
        )
    agreement = _shap_agreement(model, spec, X.head(200), values[:200])

    mean_abs = np.abs(values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    importance = [
        {
            "feature": spec.features[i],
            "label": feature_label(spec.features[i]),
            "mean_abs_contribution": float(mean_abs[i]),
        }
        for i in order
    ]
    plots = {
        spec.features[i]: _dependence_png(
            spec.features[i], X[spec.features[i]], values[:, i]
        )
        for i in order[:plotted]
    }

    probability = 1 / (1 + np.exp(-raw))
    highest = np.argsort(-probability, kind="stable")[:examples]
    example_rows = [
        {
            "probability": float(probability[i]),
            "raw_score_log_odds": float(raw[i]),
            "reasons": top_reasons(values[i], X.iloc[i], spec.features),
        }
        for i in highest
    ]
    logger.info(
        "explanation overview on %d rows: additivity error %.2e, %d plots",
        len(X),
        additivity,
        len(plots),
    )
    return ExplanationOverview(
        rows=len(X),
        base_value=float(base[0]),
        additivity_max_error=additivity,
        shap_agreement_max_error=agreement,
        importance=importance,
        examples=example_rows,
        plots=plots,
    )
