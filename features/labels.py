"""Dropout labels read from study-right state histories, point in time.

A study right (Finnish *opiskeluoikeus*) ends when its last recorded state is
terminal: resigned, considered resigned, graduated or cancelled. An end is a
*dropout* on its date when

- the state is resigned or considered resigned, and no other study right of the
  learner is in force on that date or starts within ``transfer_gap_days`` after
  it. A new right within the gap makes the end a change of school; or
- a learner of compulsory-education age graduates from basic education and no
  study right at another level (preparatory, general upper secondary or
  vocational) is in force on that date or starts within the gap.

The label of a learner at an as-of date is 1 when a dropout falls after the
as-of date and at most ``window_days`` after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from sources.contract import EXIT_STATES
from sources.study_rights import study_right_spells

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRule:
    """Settings that decide which end of a study right counts as dropping out."""

    window_days: int = 365
    """Length of the label window after the as-of date, in days."""
    transfer_gap_days: int = 120
    """Maximum gap, in days, between the end of one study right and the start of
    the next that still counts as moving on rather than dropping out. The default
    covers the summer break between basic and upper secondary education."""
    compulsory_education_until_age: int = 18
    """Age, in years, at which compulsory education ends. Finishing basic
    education younger than this without continuing counts as dropping out."""

    def __post_init__(self) -> None:
        if self.window_days < 1:
            raise ValueError(
                f"invalid label window {self.window_days} days: expected at least 1"
            )
        if self.transfer_gap_days < 0:
            raise ValueError(
                f"invalid transfer gap {self.transfer_gap_days} days: expected 0 or more"
            )


def dropout_events(
    states: pd.DataFrame, learners: pd.DataFrame, rule: LabelRule
) -> pd.DataFrame:
    """Return the dropouts in ``states``: ``learner_id``, ``study_right_id``, ``date``.

    ``learners`` needs ``birth_date`` for the compulsory-education rule. A
    learner without one is treated as past that age. Ends too close to the end
    of the data to judge are included; :func:`label_dropouts` leaves out the
    rows whose window they could fall in.
    """
    spells = study_right_spells(states)
    exits = spells[spells["end_state"].isin(EXIT_STATES)].assign(after_basic=False)
    graduated_basic = spells[
        (spells["end_state"] == "graduated") & (spells["level"] == "basic")
    ]
    if "birth_date" in learners.columns and not graduated_basic.empty:
        born = graduated_basic["learner_id"].map(
            learners.set_index("learner_id")["birth_date"]
        )
        adult_from = born + pd.DateOffset(years=rule.compulsory_education_until_age)
        young = (graduated_basic["end"] < adult_from).fillna(False)
        exits = pd.concat([exits, graduated_basic[young].assign(after_basic=True)])

    candidates = exits[["learner_id", "study_right_id", "end", "after_basic"]].merge(
        spells[spells["end_state"] != "cancelled"],
        on="learner_id",
        suffixes=("", "_next"),
    )
    gap = pd.Timedelta(days=rule.transfer_gap_days)
    continues = (
        (candidates["study_right_id_next"] != candidates["study_right_id"])
        & (candidates["start"] <= candidates["end"] + gap)
        & (
            candidates["end_next"].isna()
            | (candidates["end_next"] >= candidates["end"])
        )
        & (~candidates["after_basic"] | (candidates["level"] != "basic"))
    )
    continued = set(candidates.loc[continues, "study_right_id"])
    events = exits[~exits["study_right_id"].isin(continued)]
    logger.info(
        "%d study rights ended without continuing (%d exits checked)",
        len(events),
        len(exits),
    )
    return events.rename(columns={"end": "date"})[
        ["learner_id", "study_right_id", "date"]
    ]


def label_dropouts(
    keys: pd.DataFrame,
    events: pd.DataFrame,
    rule: LabelRule,
    observed_until: pd.Timestamp | None = None,
) -> pd.Series:
    """Label each ``keys`` row (``learner_id``, ``asof_date``), aligned with ``keys``.

    The label is 1 when a dropout falls in the window after the as-of date and 0
    otherwise. A dropout is only known once ``transfer_gap_days`` have passed
    after it, so the label is known only when ``asof_date + window_days +
    transfer_gap_days`` is on or before ``observed_until``, the last date the
    data record. Otherwise it is missing (``<NA>``), even when a dropout is
    already seen in the window, because keeping only those rows would
    over-represent dropouts. With ``observed_until`` None every label is known.
    """
    window = pd.Timedelta(days=rule.window_days)
    indexed = keys[["learner_id", "asof_date"]].reset_index(drop=True)
    indexed["_row"] = indexed.index
    joined = indexed.merge(events[["learner_id", "date"]], on="learner_id")
    in_window = (joined["date"] > joined["asof_date"]) & (
        joined["date"] <= joined["asof_date"] + window
    )
    labels = pd.Series(0, index=indexed.index, dtype="Int64")
    labels[joined.loc[in_window, "_row"].unique()] = 1
    if observed_until is not None:
        judged_by = indexed["asof_date"] + label_horizon(rule)
        labels[(judged_by > observed_until).to_numpy()] = pd.NA
    labels.index = keys.index
    return labels


def label_horizon(rule: LabelRule) -> pd.Timedelta:
    """Return how long after an as-of date its label can first be judged in full."""
    return pd.Timedelta(days=rule.window_days + rule.transfer_gap_days)


def first_dropout_dates(
    keys: pd.DataFrame, events: pd.DataFrame, rule: LabelRule
) -> pd.Series:
    """Return each ``keys`` row's first dropout in its label window, aligned with ``keys``.

    Missing where no dropout falls in the window. Lead time is measured to this
    date.
    """
    window = pd.Timedelta(days=rule.window_days)
    indexed = keys[["learner_id", "asof_date"]].reset_index(drop=True)
    indexed["_row"] = indexed.index
    joined = indexed.merge(events[["learner_id", "date"]], on="learner_id")
    joined = joined[
        (joined["date"] > joined["asof_date"])
        & (joined["date"] <= joined["asof_date"] + window)
    ]
    first = joined.groupby("_row")["date"].min()
    dates = pd.Series(pd.NaT, index=indexed.index, dtype="datetime64[ns]")
    dates[first.index] = first.to_numpy()
    dates.index = keys.index
    return dates
