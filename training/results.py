"""Turn validation folds into the metrics tables of the summary and of MLflow."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from features.build import FeatureFrame
from training.evaluate import evaluate_scores
from training.metrics import (
    calibration_curve,
    lead_time,
    list_stability,
    metrics_with_intervals,
)
from training.validate import Fold, Validation

logger = logging.getLogger(__name__)

PROMOTION_METRICS = ("roc_auc", "precision_at_k_share")
"""Metrics on which a challenger must beat the champion and every baseline."""


def evaluate_fold(
    frame: FeatureFrame,
    fold: Fold,
    asof_labels: dict[int, str],
    top_share: float,
    k_per_unit: int | None,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Return one fold's metrics per as-of date and overall, with stability and lead time."""
    rows = frame.data.iloc[fold.rows].reset_index(drop=True)
    y = frame.y[fold.rows]
    rows = rows.assign(y=y)
    dates = rows["asof_date"].astype(str).to_numpy()
    units = rows["unit_id"].astype(str).to_numpy()

    by_asof: dict[str, dict[str, Any]] = {}
    for offset in sorted(rows["asof_offset_days"].unique()):
        at = (rows["asof_offset_days"] == offset).to_numpy()
        label = asof_labels.get(int(offset), f"day_{int(offset)}")
        by_asof[label] = {
            name: metrics_with_intervals(
                y[at],
                _subset(scored, at),
                dates[at],
                units[at],
                top_share,
                k_per_unit,
                resamples,
                seed,
            )
            for name, scored in fold.scores.items()
        }
    overall = {
        name: metrics_with_intervals(
            y, scored, dates, units, top_share, k_per_unit, resamples, seed
        )
        for name, scored in fold.scores.items()
    }
    return {
        "name": fold.name,
        "details": fold.details,
        "not_applicable": fold.not_applicable,
        "by_asof": by_asof,
        "overall": overall,
        "list_stability": {
            name: list_stability(rows, scored, top_share)
            for name, scored in fold.scores.items()
        },
        "lead_time": {
            name: lead_time(rows, scored, top_share)
            for name, scored in fold.scores.items()
        },
        "calibration_curve": {
            name: calibration_curve(y, scored.probability)
            for name, scored in fold.scores.items()
            if name in ("model", "logistic")
        },
    }


def _subset(scored: Any, mask: np.ndarray) -> Any:
    return type(scored)(scored.probability[mask], scored.tiebreak[mask])


def evaluate_validation(
    frame: FeatureFrame,
    validation: Validation,
    asof_labels: dict[int, str],
    top_share: float,
    k_per_unit: int | None,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Return the evaluation block of the summary: every fold and the promotion figures."""
    folds = [
        evaluate_fold(frame, fold, asof_labels, top_share, k_per_unit, resamples, seed)
        for fold in validation.folds
    ]
    latest = folds[-1]
    return {
        "kind": validation.kind,
        "top_share": top_share,
        "k_per_unit": k_per_unit,
        "bootstrap_resamples": resamples,
        "interval": (
            "95 % bootstrap over evaluation rows (percentile intervals; the ECE's "
            "is shifted down by the bootstrap's bias estimate and clipped at 0)"
        ),
        "folds": folds,
        "skipped_folds": validation.skipped,
        "latest_fold": latest["name"],
        "promotion": promotion_figures(latest),
    }


def add_recorded_figures(
    evaluation: dict[str, Any], recorded: dict[str, dict[str, Any]]
) -> None:
    """Add figures that other models' own runs recorded to the latest fold.

    ``recorded`` maps a model name to its ``overall`` metrics, ``list_stability``
    and ``lead_time`` (as :func:`evaluate_fold` returns them for one model) and
    a ``description`` of where they come from, which is kept under
    ``evaluation["recorded_figures"]``. The figures join the latest fold's
    table and the promotion figures without being computed on its rows.
    """
    latest = evaluation["folds"][-1]
    for name, entry in recorded.items():
        latest["overall"][name] = entry["overall"]
        latest["list_stability"][name] = entry["list_stability"]
        latest["lead_time"][name] = entry["lead_time"]
        evaluation["promotion"][name] = {
            metric: entry["overall"].get(metric) for metric in PROMOTION_METRICS
        }
    evaluation["recorded_figures"] = {
        name: entry["description"] for name, entry in recorded.items()
    }


def promotion_figures(
    fold_result: dict[str, Any],
) -> dict[str, dict[str, float | None]]:
    """Return the promotion metrics of every model on one fold, pooled over as-of dates."""
    return {
        name: {metric: values.get(metric) for metric in PROMOTION_METRICS}
        for name, values in fold_result["overall"].items()
    }


def legacy_metrics(
    frame: FeatureFrame, fold: Fold, asof_labels: dict[int, str], top_share: float
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Return the headline table: per as-of date and model, the five summary metrics."""
    data = frame.data.iloc[fold.rows]
    y = frame.y[fold.rows]
    metrics: dict[str, dict[str, dict[str, float | None]]] = {}
    for offset in sorted(data["asof_offset_days"].unique()):
        at = (data["asof_offset_days"] == offset).to_numpy()
        label = asof_labels.get(int(offset), f"day_{int(offset)}")
        metrics[label] = {
            name: evaluate_scores(
                y[at], scored.probability[at], top_share, scored.tiebreak[at]
            )
            for name, scored in fold.scores.items()
        }
    return metrics


def fold_table(evaluation: dict[str, Any]) -> pd.DataFrame:
    """Return one row per fold, as-of date and model with the main metrics and intervals."""
    records = []
    for fold in evaluation["folds"]:
        for asof, by_model in [*fold["by_asof"].items(), ("all", fold["overall"])]:
            for model, values in by_model.items():
                records.append(
                    {"fold": fold["name"], "asof": asof, "model": model}
                    | {k: v for k, v in values.items() if not k.endswith("_ci")}
                )
    return pd.DataFrame(records)
