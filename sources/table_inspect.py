"""Inspect a mapped table: a summary and warnings for ``ajoissa inspect``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from sources.table import MappedTable

LEAKAGE_AUC = 0.95
"""A feature whose univariate ROC-AUC (or 1 minus it) reaches this alone
separates the outcome classes almost perfectly, which suggests leakage."""

MISSING_WARNING_SHARE = 0.2
"""Columns with at least this share of missing values get a warning."""


@dataclass
class TableInspection:
    """Summary and warnings that ``ajoissa inspect`` prints about a mapped table."""

    table: MappedTable
    outcome_rate: float
    adverse_rows: int
    sensitive_groups: dict[str, dict[str, int]]
    univariate_auc: dict[str, float]
    """Per feature column, max(ROC-AUC, 1 - ROC-AUC) of the column alone."""
    warnings: list[str] = field(default_factory=list)


def inspect_mapped_table(table: MappedTable) -> TableInspection:
    """Summarise a read table and list what looks wrong in it."""
    mapping = table.mapping
    y = table.adverse.astype(int)
    warnings: list[str] = []
    auc: dict[str, float] = {}
    by_name = {info.feature_name: info for info in table.columns if info.feature_name}
    for name in table.features.columns:
        info = by_name[name]
        values = table.features[name]
        if info.distinct <= 1:
            warnings.append(f"column {info.column!r} is constant; it cannot help")
            continue
        auc[info.column] = univariate_auc(values, y)
        if auc[info.column] >= LEAKAGE_AUC:
            warnings.append(
                f"column {info.column!r} alone separates the outcome classes "
                f"(univariate ROC-AUC {auc[info.column]:.3f} >= {LEAKAGE_AUC}); it "
                "may leak the outcome. Add it to 'exclude' unless it is known "
                "before the outcome"
            )
    for info in table.columns:
        if info.missing_share >= MISSING_WARNING_SHARE and info.role != "excluded":
            warnings.append(
                f"column {info.column!r} is missing in {info.missing_share:.0%} of rows"
            )

    warnings += _overlap_warnings(table)

    groups: dict[str, dict[str, int]] = {}
    for spec in mapping.sensitive:
        counts = table.sensitive[spec.audit_name].fillna("unknown").value_counts()
        groups[spec.audit_name] = {
            str(k): int(v) for k, v in counts.sort_index().items()
        }
        small = {
            k: v
            for k, v in groups[spec.audit_name].items()
            if v < mapping.min_group_size
        }
        for group, size in small.items():
            warnings.append(
                f"sensitive attribute {spec.audit_name!r}: group {group!r} has "
                f"{size} rows, fewer than the minimum group size "
                f"{mapping.min_group_size}, so the audit suppresses it"
            )
        if spec.reference is not None and spec.reference not in groups[spec.audit_name]:
            warnings.append(
                f"sensitive attribute {spec.audit_name!r}: the reference group "
                f"{spec.reference!r} has no rows"
            )
    return TableInspection(
        table=table,
        outcome_rate=float(y.mean()),
        adverse_rows=int(y.sum()),
        sensitive_groups=groups,
        univariate_auc=auc,
        warnings=warnings,
    )


def _overlap_warnings(table: MappedTable) -> list[str]:
    """Warn when test-period pupils also have training rows, which the split drops."""
    cutoff = table.temporal_cutoff()
    if cutoff is None or table.period_start is None:
        return []
    test = (table.period_start >= pd.Timestamp(cutoff)).to_numpy()
    seen = table.learner_id[test].isin(table.learner_id[~test])
    if not seen.any():
        return []
    message = (
        f"{int(seen.sum())} of {int(test.sum())} rows in the test periods (from "
        f"{cutoff}) belong to pupils who also have rows in earlier periods; the "
        "temporal split drops them from the test set, so that no pupil is on both "
        "sides"
    )
    return [message]


def univariate_auc(values: pd.Series, y: np.ndarray) -> float:
    """Return max(ROC-AUC, 1 - ROC-AUC) of one column used alone as a score.

    A numeric column scores by its value, leaving out missing rows. A categorical
    column scores each row by its category's adverse rate in the same rows
    (missing is a category), which flatters columns with many rare categories.
    Returns NaN when the scored rows have a single class.
    """
    if pd.api.types.is_numeric_dtype(values):
        present = values.notna().to_numpy()
        scores = values.to_numpy(dtype=float)[present]
        labels = y[present]
    else:
        categories = values.astype(object).where(values.notna(), "<missing>")
        rates = pd.Series(y, index=values.index).groupby(categories).transform("mean")
        scores = rates.to_numpy(dtype=float)
        labels = y
    if len(np.unique(labels)) < 2:
        return float("nan")
    auc = float(roc_auc_score(labels, scores))
    return max(auc, 1 - auc)
