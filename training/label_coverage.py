"""Cohorts with known labels, and the reason a temporal split may find none.

A label from study-right histories is known only when its as-of date plus the
label window and the transfer gap falls on or before the data end
(:func:`features.labels.label_dropouts`). The latest cohorts of an export
therefore have no labelled rows, and the temporal split tests on the latest
cohort that has some.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from features.build import FeatureFrame
from features.labels import LabelRule, label_horizon


def latest_labelled_cohort_start(
    frame: FeatureFrame, units: pd.DataFrame
) -> pd.Timestamp:
    """Return the first unit start of the latest cohort that has feature rows.

    Raises
    ------
    ValueError
        If ``frame`` has no rows.
    """
    if frame.data.empty:
        raise ValueError("no feature rows, so no cohort has labelled rows")
    labelled = units[units["unit_id"].isin(frame.data["unit_id"])]
    return labelled.groupby("cohort")["start_date"].min().max()


def cohorts_needed(
    cohort_starts: Sequence[pd.Timestamp],
    data_end: pd.Timestamp,
    first_offset_days: int,
    rule: LabelRule,
) -> int | None:
    """Estimate how many cohorts a temporal split needs under ``rule``.

    Cohorts are assumed to start at even intervals (the median gap between the
    given starts) and the data to end as long after the latest start as now.
    The test cohort needs enough later data for the label window and transfer
    gap of its first as-of date, ``first_offset_days`` after its start. A
    training cohort needs that date plus the window to fall before the test
    cohort starts. Returns None with fewer than two cohorts, whose spacing is
    unknown.
    """
    starts = pd.Series(sorted(set(cohort_starts)))
    if len(starts) < 2:
        return None
    spacing = starts.diff().dt.days.median()
    after_latest = (data_end - starts.iloc[-1]).days
    judged_after = first_offset_days + label_horizon(rule).days
    later_for_labels = max(0, math.ceil((judged_after - after_latest) / spacing))
    earlier_for_training = math.floor((first_offset_days + rule.window_days) / spacing)
    return later_for_labels + earlier_for_training + 2


def censoring_explanation(
    frame: FeatureFrame,
    units: pd.DataFrame,
    first_offset_days: int,
    rule: LabelRule,
) -> str:
    """Explain, for an error message, how the data end limits the labelled rows."""
    if frame.data_end is None:
        return ""
    horizon = label_horizon(rule)
    latest_asof = frame.data_end - horizon
    starts = units.groupby("cohort")["start_date"].min()
    text = (
        f"A label is known only when its as-of date plus the {rule.window_days}-day "
        f"label window and the {rule.transfer_gap_days}-day transfer gap falls on "
        f"or before the data end {frame.data_end.date()}, that is for as-of dates "
        f"up to {latest_asof.date()}, and {frame.rows_past_data_end} later feature "
        "rows were left out. A training row also needs its label window to end "
        "before the test cohort starts."
    )
    needed = cohorts_needed(starts.tolist(), frame.data_end, first_offset_days, rule)
    if needed is not None:
        text += (
            f" The data have {len(starts)} cohorts (school years) and this label "
            f"rule needs about {needed}. Add earlier school years to the data, or "
            "shorten the label window with --label-window-days."
        )
    else:
        text += (
            " Add school years to the data, or shorten the label window with "
            "--label-window-days."
        )
    return text
