"""Per-group error rates of a risk model's selections, for a fairness audit.

The input is one row per evaluated case (in Ajoissa, one enrolment at one as-of
date) with the true label, the risk score and whether the row was selected for
review. :func:`audit_groups` splits the rows by each sensitive attribute and
computes, per group, the prevalence, selection rate, recall, false positive rate
and precision of the selections, using :class:`fairlearn.metrics.MetricFrame`.

Groups with fewer than ``min_group_size`` rows are suppressed: their metrics are
neither shown nor compared, and only the number of groups and rows suppressed is
kept. A rate whose denominator is zero is undefined (NaN with a reason), never 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count

logger = logging.getLogger(__name__)

UNKNOWN_GROUP = "unknown"
"""Group name given to rows whose sensitive attribute is missing."""

RATE_METRICS = (
    "prevalence",
    "selection_rate",
    "recall",
    "false_positive_rate",
    "precision",
)
"""Per-group rates, each a share between 0 and 1 or NaN when undefined."""

DISPARITY_METRICS = ("selection_rate", "recall", "false_positive_rate")
"""Rates compared across the shown groups with ``difference()`` and ``ratio()``."""

METRIC_LABELS = {
    "prevalence": "prevalence",
    "selection_rate": "selection rate",
    "recall": "recall",
    "false_positive_rate": "false positive rate",
    "precision": "precision",
}
"""Plain names of the rate metrics, for messages and reports."""

UNDEFINED_REASONS = {
    "prevalence": "the group has no rows",
    "selection_rate": "the group has no rows",
    "recall": (
        "no row in this group has y_true = 1 (no learner later withdrew), "
        "so recall has no denominator"
    ),
    "false_positive_rate": (
        "every row in this group has y_true = 1, "
        "so the false positive rate has no denominator"
    ),
    "precision": "no row in this group was selected, so precision has no denominator",
}
"""Reason each rate is undefined when its denominator is zero."""


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _prevalence(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _share(int(np.sum(y_true == 1)), len(y_true))


def _selection_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _share(int(np.sum(y_pred == 1)), len(y_pred))


def _recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    true_positives = int(np.sum((y_true == 1) & (y_pred == 1)))
    return _share(true_positives, int(np.sum(y_true == 1)))


def _false_positive_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    false_positives = int(np.sum((y_true == 0) & (y_pred == 1)))
    return _share(false_positives, int(np.sum(y_true == 0)))


def _precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    true_positives = int(np.sum((y_true == 1) & (y_pred == 1)))
    return _share(true_positives, int(np.sum(y_pred == 1)))


def _mean_score(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray) -> float:
    return float(np.mean(score)) if len(score) else float("nan")


# fairlearn 0.15's true_positive_rate and false_positive_rate return 0 for an
# empty denominator, which would hide an undefined rate, so these return NaN.
_METRICS: dict[str, Callable[..., float]] = {
    "n": count,
    "prevalence": _prevalence,
    "selection_rate": _selection_rate,
    "recall": _recall,
    "false_positive_rate": _false_positive_rate,
    "precision": _precision,
    "mean_score": _mean_score,
}


@dataclass(frozen=True)
class Suppression:
    """Groups of one sensitive attribute left out for having too few rows."""

    groups: int
    rows: int


@dataclass
class FairnessAudit:
    """Per-group metrics and disparities of one model's selections.

    Attributes
    ----------
    tables
        Per sensitive attribute, one row per shown group with the columns
        ``group``, ``n``, every name in ``RATE_METRICS``, ``mean_score`` and a
        ``<metric>_reason`` column per rate (missing when the rate is defined).
        Groups are sorted by name, with ``UNKNOWN_GROUP`` last.
    disparities
        Per sensitive attribute, one row per name in ``DISPARITY_METRICS`` (the
        index). ``difference`` is the max minus the min over the shown groups and
        ``ratio`` is the min over the max. ``groups_compared`` counts the shown
        groups whose rate is defined. ``difference_reason`` and ``ratio_reason``
        are missing when the value is defined.
    suppressed
        Per sensitive attribute, the groups and rows left out for having fewer
        than ``min_group_size`` rows.
    min_group_size
        Minimum number of rows a group needs to be shown.
    total_rows
        Rows audited, including those in suppressed groups.
    overall
        One row with the same columns as ``tables``, computed on all rows, with
        ``group`` set to ``"all rows"``.
    """

    tables: dict[str, pd.DataFrame]
    disparities: dict[str, pd.DataFrame]
    suppressed: dict[str, Suppression]
    min_group_size: int
    total_rows: int
    overall: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Convert the audit to plain types that ``json.dumps`` accepts.

        Undefined values become ``None`` next to a ``<name>_reason`` string.
        """
        attributes = {}
        for attribute, table in self.tables.items():
            disparity = self.disparities[attribute]
            attributes[attribute] = {
                "groups": _records(table),
                "suppressed": {
                    "groups": self.suppressed[attribute].groups,
                    "rows": self.suppressed[attribute].rows,
                },
                "disparities": {
                    str(metric): record
                    for metric, record in zip(
                        disparity.index, _records(disparity), strict=True
                    )
                },
            }
        return {
            "total_rows": self.total_rows,
            "min_group_size": self.min_group_size,
            "overall": _records(self.overall)[0],
            "attributes": attributes,
        }


def _json_value(value: Any) -> Any:
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(column): _json_value(value) for column, value in record.items()}
        for record in table.to_dict("records")
    ]


def audit_groups(
    frame: pd.DataFrame,
    *,
    sensitive_features: list[str],
    y_true: str = "y_true",
    score: str = "score",
    selected: str = "selected",
    min_group_size: int = 10,
) -> FairnessAudit:
    """Compute per-group metrics of the selections for each sensitive attribute.

    Parameters
    ----------
    frame
        One row per evaluated case.
    sensitive_features
        Columns of ``frame`` to split the rows by, one audit table each. Missing
        values form the group ``UNKNOWN_GROUP``, merged with any existing
        ``"unknown"`` value.
    y_true
        Column with the true label, 0 or 1 (1 when the learner later withdrew).
    score
        Column with the numeric risk score, reported as a per-group mean.
    selected
        Column with 1 (or True) for rows flagged for review, else 0.
    min_group_size
        Minimum number of rows a group needs to be shown. Smaller groups are
        suppressed.

    Returns
    -------
    FairnessAudit

    Raises
    ------
    ValueError
        If ``frame`` is empty, a column is missing, ``y_true`` or ``selected``
        contains a value other than 0 or 1, ``score`` is not numeric or has a missing
        value, or ``min_group_size`` is less than 1.
    """
    _validate(
        frame,
        sensitive_features=sensitive_features,
        columns=(y_true, score, selected),
        min_group_size=min_group_size,
    )
    labels = _binary_column(frame, y_true)
    selections = _binary_column(frame, selected)
    scores = frame[score].to_numpy(dtype=float)

    overall = _overall_row(labels, selections, scores)
    tables: dict[str, pd.DataFrame] = {}
    disparities: dict[str, pd.DataFrame] = {}
    suppressed: dict[str, Suppression] = {}
    for attribute in sensitive_features:
        groups = _group_names(frame[attribute])
        sizes = groups.value_counts()
        small = sizes[sizes < min_group_size]
        # NOTE: the minimum counts rows, not distinct learners. One learner
        # contributes a row per as-of date, so a shown group of 10 rows can be
        # fewer than 10 learners, which weakens the privacy protection.
        suppressed[attribute] = Suppression(groups=len(small), rows=int(small.sum()))
        in_shown_group = ~groups.isin(small.index).to_numpy()
        tables[attribute], disparities[attribute] = _audit_attribute(
            groups[in_shown_group],
            labels[in_shown_group],
            selections[in_shown_group],
            scores[in_shown_group],
            min_group_size=min_group_size,
        )
        logger.info(
            "audited %s: %d groups shown, %d groups with %d rows suppressed",
            attribute,
            len(tables[attribute]),
            suppressed[attribute].groups,
            suppressed[attribute].rows,
        )
    return FairnessAudit(
        tables=tables,
        disparities=disparities,
        suppressed=suppressed,
        min_group_size=min_group_size,
        total_rows=len(frame),
        overall=overall,
    )


def _validate(
    frame: pd.DataFrame,
    *,
    sensitive_features: list[str],
    columns: tuple[str, str, str],
    min_group_size: int,
) -> None:
    _validate_columns(frame, sensitive_features=sensitive_features, columns=columns)
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, int):
        raise ValueError(f"min_group_size must be an int, got {min_group_size!r}")
    if min_group_size < 1:
        raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")

    score = columns[1]
    is_numeric = pd.api.types.is_numeric_dtype(frame[score])
    if not is_numeric or pd.api.types.is_bool_dtype(frame[score]):
        raise ValueError(
            f"score column {score!r} must be numeric, got dtype {frame[score].dtype}"
        )
    if frame[score].isna().any():
        raise ValueError(
            f"score column {score!r} has {int(frame[score].isna().sum())} missing "
            "values; score every row before the audit"
        )


def _validate_columns(
    frame: pd.DataFrame, *, sensitive_features: list[str], columns: tuple[str, ...]
) -> None:
    if len(frame) == 0:
        raise ValueError("frame has no rows; an audit needs at least one row")

    if not sensitive_features:
        raise ValueError("sensitive_features is empty; name at least one column")
    if len(set(sensitive_features)) != len(sensitive_features):
        raise ValueError(f"sensitive_features has duplicates: {sensitive_features}")
    overlap = sorted(set(sensitive_features) & set(columns))
    if overlap:
        raise ValueError(
            f"sensitive_features {overlap} are also the label, score or "
            "selection column"
        )

    missing = [c for c in (*columns, *sensitive_features) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column {missing}; it has {list(frame.columns)}")


def _binary_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if values.isna().any():
        raise ValueError(
            f"column {column!r} has {int(values.isna().sum())} missing values; "
            "it must be 0 or 1 in every row"
        )
    invalid = values[~values.isin([0, 1])]
    if len(invalid):
        raise ValueError(
            f"column {column!r} must be 0 or 1, got {invalid.unique()[:5].tolist()}"
        )
    return values.to_numpy(dtype=int)


def _group_names(values: pd.Series) -> pd.Series:
    """Return the values as strings, with missing values named ``UNKNOWN_GROUP``."""
    # Going through object dtype lets categorical and numeric columns take the
    # new name, and the result has the pandas 3 ``str`` dtype.
    named = values.astype(object).where(values.notna(), UNKNOWN_GROUP)
    return named.astype(str).rename(values.name).reset_index(drop=True)


def _sorted_groups(names: list[str]) -> list[str]:
    known = sorted(name for name in names if name != UNKNOWN_GROUP)
    return known + [UNKNOWN_GROUP] * (UNKNOWN_GROUP in names)


def _add_reasons(table: pd.DataFrame) -> pd.DataFrame:
    for metric in RATE_METRICS:
        undefined = table[metric].isna()
        table[f"{metric}_reason"] = pd.Series(
            np.where(undefined, UNDEFINED_REASONS[metric], None),
            index=table.index,
            dtype="str",
        )
    return table


def _table_columns() -> list[str]:
    reasons = [f"{metric}_reason" for metric in RATE_METRICS]
    return ["group", "n", *RATE_METRICS, "mean_score", *reasons]


def _overall_row(
    labels: np.ndarray, selections: np.ndarray, scores: np.ndarray
) -> pd.DataFrame:
    row: dict[str, Any] = {"group": "all rows"}
    for name, function in _METRICS.items():
        if name == "mean_score":
            row[name] = function(labels, selections, scores)
        else:
            row[name] = function(labels, selections)
    table = pd.DataFrame([row])
    table["n"] = table["n"].astype(int)
    return _add_reasons(table)[_table_columns()]


def _audit_attribute(
    groups: pd.Series,
    labels: np.ndarray,
    selections: np.ndarray,
    scores: np.ndarray,
    *,
    min_group_size: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the group table and disparity table from the shown rows only."""
    if len(groups) == 0:
        table = pd.DataFrame({column: [] for column in _table_columns()})
        reason = f"no group has at least {min_group_size} rows"
        return table, _empty_disparities(reason)

    # NOTE: rates carry no confidence intervals. MetricFrame can bootstrap them
    # (n_boot, ci_quantiles), which the report would then need to show.
    metric_frame = MetricFrame(
        metrics=_METRICS,
        y_true=labels,
        y_pred=selections,
        sensitive_features=groups,
        sample_params={"mean_score": {"score": scores}},
    )
    by_group = metric_frame.by_group
    by_group = by_group.loc[_sorted_groups([str(g) for g in by_group.index])]
    table = by_group.reset_index(names="group")
    table["group"] = table["group"].astype(str)
    table["n"] = table["n"].astype(int)
    for metric in (*RATE_METRICS, "mean_score"):
        table[metric] = table[metric].astype(float)
    table = _add_reasons(table)[_table_columns()]

    disparities = _disparities(
        by_group,
        difference=metric_frame.difference(method="between_groups"),
        ratio=metric_frame.ratio(method="between_groups"),
    )
    return table, disparities


def _empty_disparities(reason: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "difference": [float("nan")] * len(DISPARITY_METRICS),
            "difference_reason": [reason] * len(DISPARITY_METRICS),
            "ratio": [float("nan")] * len(DISPARITY_METRICS),
            "ratio_reason": [reason] * len(DISPARITY_METRICS),
            "groups_compared": [0] * len(DISPARITY_METRICS),
        },
        index=pd.Index(DISPARITY_METRICS, name="metric"),
    )


def _disparities(
    by_group: pd.DataFrame, *, difference: pd.Series, ratio: pd.Series
) -> pd.DataFrame:
    """Keep fairlearn's difference and ratio where at least two groups compare.

    fairlearn skips groups whose rate is NaN and returns 0 and 1 for a single
    group, which would read as perfect parity, so those become undefined here.
    """
    rows = []
    for metric in DISPARITY_METRICS:
        label = METRIC_LABELS[metric]
        compared = int(by_group[metric].notna().sum())
        row: dict[str, Any] = {
            "difference": float(difference[metric]),
            "difference_reason": None,
            "ratio": float(ratio[metric]),
            "ratio_reason": None,
            "groups_compared": compared,
        }
        if compared < 2:
            reason = (
                f"fewer than two shown groups have a defined {label}, "
                "so there is nothing to compare"
            )
            row.update(
                difference=float("nan"),
                difference_reason=reason,
                ratio=float("nan"),
                ratio_reason=reason,
            )
        elif np.isnan(row["ratio"]):
            row["ratio_reason"] = (
                f"the {label} is 0 in every compared group, so the ratio is 0/0"
            )
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(DISPARITY_METRICS, name="metric"))
    for column in ("difference_reason", "ratio_reason"):
        table[column] = table[column].astype("str")
    return table
