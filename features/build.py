"""Point-in-time features and labels, computed with DuckDB.

A feature row describes one enrolment as it stood at the end of an as-of date:
only events dated on or before that date reach it. The label is 1 when the
learner drops out after the as-of date. :mod:`features.labels` reads dropouts
from study-right histories when the source has them; otherwise the label is
whether the enrolment ended with the learner withdrawing. Enrolments that had not started,
or had already ended, by the as-of date get no row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from features.definitions import LEARNER_FEATURES, compile_sql
from features.engines import (
    DUCKDB_MEMORY_LIMIT,
    DuckDBEngine,
    FeatureEngine,
    learner_inputs,
)
from features.labels import (
    LabelRule,
    dropout_events,
    first_dropout_dates,
    label_dropouts,
)
from sources.contract import InputTables

logger = logging.getLogger(__name__)

KEY_COLUMNS = ("enrolment_id", "learner_id", "unit_id", "cohort", "asof_date")
LABEL = "withdraws_after"
WITHDRAWAL_DATE = "withdrawal_date"
"""Date of the dropout that makes the label 1, when it comes from study-right
histories. Lead time is measured to it."""
RECENT_DAYS = 28
"""Length of the recent window for attendance features, in days."""

CONTEXT_FEATURES = ("days_since_unit_start",)
"""Features that place a row in time but describe nothing about the learner, so
they are never given as reasons for a score."""

ASSESSMENT_FEATURES = (
    "days_since_unit_start",
    "days_enrolled",
    "days_registered_before_start",
    "assessments_due",
    "assessments_submitted",
    "assessments_missed",
    "assessments_failed",
    "assessments_late",
    "share_submitted",
    "mean_score",
    "weighted_mean_score",
    "last_score",
    "min_score",
    "mean_days_early",
    "days_since_last_submission",
)
ATTENDANCE_FEATURES = (
    "attendance_marks",
    "absence_share",
    "unexcused_share",
    "late_share",
    "absence_share_recent",
    "unexcused_share_recent",
)


@dataclass(frozen=True)
class FeatureFrame:
    """Feature rows with their keys and labels.

    ``data`` has the ``KEY_COLUMNS``, ``asof_offset_days`` (days after the unit's
    start), every column in ``feature_names`` and the ``LABEL`` column (1 when the
    learner withdraws after the as-of date).
    """

    data: pd.DataFrame
    feature_names: list[str]
    categorical: list[str]
    rows_past_data_end: int = 0
    """Feature rows left out because their label window, plus the transfer gap,
    runs past ``data_end``, so their label is not known yet."""
    data_end: pd.Timestamp | None = None
    """Last date the tables record anything, when labels come from study-right
    histories."""

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the usual name for a design matrix
        return self.data[self.feature_names]

    @property
    def y(self) -> np.ndarray:
        return self.data[LABEL].to_numpy(dtype=int)


def asof_points_by_offset(
    units: pd.DataFrame, offsets_days: Sequence[int]
) -> pd.DataFrame:
    """Return one as-of date per unit and offset (days after the unit's start)."""
    rows = [
        {
            "unit_id": unit.unit_id,
            "asof_date": unit.start_date + pd.Timedelta(days=int(offset)),
            "asof_offset_days": int(offset),
        }
        for unit in units.itertuples()
        for offset in offsets_days
        if unit.start_date + pd.Timedelta(days=int(offset)) <= unit.end_date
    ]
    return pd.DataFrame(rows, columns=["unit_id", "asof_date", "asof_offset_days"])


def asof_points_by_date(
    units: pd.DataFrame, dates: Sequence[pd.Timestamp]
) -> pd.DataFrame:
    """Return the given calendar as-of dates for every unit running on them."""
    rows = [
        {
            "unit_id": unit.unit_id,
            "asof_date": pd.Timestamp(day),
            "asof_offset_days": (pd.Timestamp(day) - unit.start_date).days,
        }
        for unit in units.itertuples()
        for day in dates
        if unit.start_date <= pd.Timestamp(day) <= unit.end_date
    ]
    return pd.DataFrame(rows, columns=["unit_id", "asof_date", "asof_offset_days"])


_SQL = f"""
WITH active AS (
    SELECT e.enrolment_id, e.learner_id, e.unit_id, u.cohort, p.asof_date,
           p.asof_offset_days, e.start_date AS enrolment_start,
           u.start_date AS unit_start,
           CASE WHEN e.end_reason = 'withdrawn' THEN 1 ELSE 0 END AS {LABEL}
    FROM enrolments e
    JOIN units u USING (unit_id)
    JOIN points p USING (unit_id)
    WHERE e.start_date <= p.asof_date
      AND (e.end_date IS NULL OR e.end_date > p.asof_date)
),
assessed AS (
    SELECT a.enrolment_id, a.asof_date,
        count(*) FILTER (WHERE s.due_date <= a.asof_date) AS assessments_due,
        count(*) FILTER (WHERE s.submitted_date <= a.asof_date) AS assessments_submitted,
        count(*) FILTER (WHERE s.due_date <= a.asof_date
            AND s.submitted_date <= a.asof_date) AS due_submitted,
        count(*) FILTER (WHERE s.due_date <= a.asof_date
            AND (s.submitted_date IS NULL OR s.submitted_date > a.asof_date))
            AS assessments_missed,
        count(*) FILTER (WHERE s.submitted_date <= a.asof_date AND NOT s.passed)
            AS assessments_failed,
        count(*) FILTER (WHERE s.submitted_date <= a.asof_date
            AND s.submitted_date > s.due_date) AS assessments_late,
        avg(s.score) FILTER (WHERE s.submitted_date <= a.asof_date) AS mean_score,
        sum(s.score * s.weight) FILTER (WHERE s.submitted_date <= a.asof_date)
            / nullif(sum(s.weight) FILTER (WHERE s.submitted_date <= a.asof_date
                AND s.score IS NOT NULL), 0) AS weighted_mean_score,
        -- Scores submitted on the same day are ordered by assessment id and
        -- score; with the date alone, the parallel aggregation picked any of
        -- them, and the feature changed from one run to the next.
        arg_max(s.score, {{'date': s.submitted_date, 'assessment': s.assessment_id,
                          'score': s.score}})
            FILTER (WHERE s.submitted_date <= a.asof_date AND s.score IS NOT NULL)
            AS last_score,
        min(s.score) FILTER (WHERE s.submitted_date <= a.asof_date) AS min_score,
        avg(date_diff('day', s.submitted_date, s.due_date))
            FILTER (WHERE s.submitted_date <= a.asof_date) AS mean_days_early,
        date_diff('day',
            max(s.submitted_date) FILTER (WHERE s.submitted_date <= a.asof_date),
            a.asof_date) AS days_since_last_submission
    FROM active a
    JOIN assessments s USING (enrolment_id)
    GROUP BY a.enrolment_id, a.asof_date
),
attended AS (
    SELECT a.enrolment_id, a.asof_date,
        count(*) AS attendance_marks,
        avg(CASE WHEN m.mark IN ('excused', 'unexcused') THEN 1 ELSE 0 END)
            AS absence_share,
        avg(CASE WHEN m.mark = 'unexcused' THEN 1 ELSE 0 END) AS unexcused_share,
        avg(CASE WHEN m.mark = 'late' THEN 1 ELSE 0 END) AS late_share,
        avg(CASE WHEN m.mark IN ('excused', 'unexcused') THEN 1 ELSE 0 END)
            FILTER (WHERE m.date > a.asof_date - INTERVAL {RECENT_DAYS} DAY)
            AS absence_share_recent,
        avg(CASE WHEN m.mark = 'unexcused' THEN 1 ELSE 0 END)
            FILTER (WHERE m.date > a.asof_date - INTERVAL {RECENT_DAYS} DAY)
            AS unexcused_share_recent
    FROM active a
    JOIN attendance m ON m.enrolment_id = a.enrolment_id AND m.date <= a.asof_date
    GROUP BY a.enrolment_id, a.asof_date
),
attributed AS (
    SELECT a.enrolment_id, a.asof_date, t.* EXCLUDE (enrolment_id, known_from)
    FROM active a
    ASOF LEFT JOIN attributes t
      ON t.enrolment_id = a.enrolment_id AND t.known_from <= a.asof_date
)
SELECT a.enrolment_id, a.learner_id, a.unit_id, a.cohort, a.asof_date,
    a.asof_offset_days,
    date_diff('day', a.unit_start, a.asof_date) AS days_since_unit_start,
    date_diff('day', a.enrolment_start, a.asof_date) AS days_enrolled,
    greatest(date_diff('day', a.enrolment_start, a.unit_start), 0)
        AS days_registered_before_start,
    coalesce(s.assessments_due, 0) AS assessments_due,
    coalesce(s.assessments_submitted, 0) AS assessments_submitted,
    coalesce(s.assessments_missed, 0) AS assessments_missed,
    coalesce(s.assessments_failed, 0) AS assessments_failed,
    coalesce(s.assessments_late, 0) AS assessments_late,
    -- 1 when nothing is due yet: no assessment has been missed. Missing here
    -- would read as "nothing submitted" to a model trained on weeks where
    -- something was always due.
    coalesce(s.due_submitted / nullif(s.assessments_due, 0), 1.0) AS share_submitted,
    s.mean_score, s.weighted_mean_score, s.last_score, s.min_score,
    s.mean_days_early, s.days_since_last_submission,
    coalesce(m.attendance_marks, 0) AS attendance_marks,
    m.absence_share, m.unexcused_share, m.late_share,
    m.absence_share_recent, m.unexcused_share_recent,
    t.* EXCLUDE (enrolment_id, asof_date),
    a.{LABEL}
FROM active a
LEFT JOIN assessed s USING (enrolment_id, asof_date)
LEFT JOIN attended m USING (enrolment_id, asof_date)
LEFT JOIN attributed t USING (enrolment_id, asof_date)
ORDER BY a.asof_date, a.enrolment_id
"""


def data_end(tables: InputTables) -> pd.Timestamp | None:
    """Return the last date on which the tables record anything, or None."""
    dates = [
        tables.study_right_states["state_from"].max(),
        tables.attendance["date"].max(),
        tables.assessments["submitted_date"].max(),
    ]
    known = [d for d in dates if pd.notna(d)]
    return max(known) if known else None


def _observed_until(tables: InputTables) -> pd.Timestamp:
    end = data_end(tables)
    if end is None:
        raise ValueError("the tables record no dated event, so no label can be judged")
    return end


LEARNER_FEATURE_NAMES = frozenset(
    {feature.name for feature in LEARNER_FEATURES} | {"age_years"}
)
"""Columns that only :func:`build_features` with ``with_learner_features`` adds."""


def uses_learner_features(feature_names: Sequence[str]) -> bool:
    """Return whether a model reading ``feature_names`` needs the learner features."""
    return any(name in LEARNER_FEATURE_NAMES for name in feature_names)


def learner_features(
    tables: InputTables,
    keys: pd.DataFrame,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
    engine: FeatureEngine | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Compute ``LEARNER_FEATURES`` for each learner and as-of date in ``keys``.

    Returns the features keyed by ``learner_id`` and ``asof_date``, and their
    names. Only features whose source the tables have are computed. ``engine``
    runs the SQL; DuckDB with ``memory_limit`` when not given.
    """
    inputs, sources = learner_inputs(tables, keys)
    compiled = compile_sql(LEARNER_FEATURES, sources)
    names = list(compiled.names)
    engine = engine or DuckDBEngine(memory_limit)
    started = time.perf_counter()
    features = compiled.finish(engine.run(compiled.sql, inputs))
    features["asof_date"] = features["asof_date"].astype(keys["asof_date"].dtype)
    logger.info(
        "computed %d learner features for %d keys on %s in %.1f s",
        len(names),
        len(features),
        engine.name,
        time.perf_counter() - started,
    )
    if "birth_date" in tables.learners.columns:
        # Age for grade is a declarative feature (features.definitions); plain
        # age also covers sources without grade levels.
        born = features["learner_id"].map(
            tables.learners.set_index("learner_id")["birth_date"]
        )
        features["age_years"] = (features["asof_date"] - born).dt.days / 365.25
        names.append("age_years")
    return features, names


def build_features(
    tables: InputTables,
    points: pd.DataFrame,
    label_rule: LabelRule | None = None,
    with_learner_features: bool = False,
    engine: FeatureEngine | None = None,
    labels: bool = True,
) -> FeatureFrame:
    """Build one feature row per enrolment active at each of the as-of ``points``.

    Parameters
    ----------
    tables
        Validated contract tables.
    points
        As-of dates per unit, from :func:`asof_points_by_offset` or
        :func:`asof_points_by_date`.
    label_rule
        How to read dropouts from ``tables.study_right_states``; the defaults
        of :class:`~features.labels.LabelRule` when not given. Unused when the
        source has no study-right states.
    with_learner_features
        Add the declarative learner features of
        :data:`features.definitions.LEARNER_FEATURES`, which follow a learner
        across enrolments.
    engine
        Engine that computes the learner features; DuckDB when not given.
    labels
        Add the ``LABEL`` and ``WITHDRAWAL_DATE`` columns. With study-right
        histories, rows whose label is not known yet are then left out and
        counted in ``rows_past_data_end``. Scoring passes False, so it keeps
        every active enrolment, and the frame has no label columns.
    """
    attributes = tables.attributes
    leaked = sorted(set(attributes.columns) & set(tables.all_sensitive))
    if leaked:
        raise ValueError(
            f"attribute columns {leaked} are sensitive attributes; keep them in the "
            "learners table, where they are used only for audits"
        )
    attribute_columns = [
        c for c in attributes.columns if c not in ("enrolment_id", "known_from")
    ]
    renamed = attributes.rename(columns={c: f"attr_{c}" for c in attribute_columns})
    logger.info(
        "building features for %d enrolments at %d as-of points",
        len(tables.enrolments),
        len(points),
    )
    with duckdb.connect() as con:
        con.register("enrolments", tables.enrolments)
        con.register("units", tables.units)
        con.register("points", points)
        con.register("assessments", tables.assessments)
        con.register("attendance", tables.attendance)
        con.register("attributes", renamed.sort_values("known_from"))
        data = con.execute(_SQL).df()

    categorical = [
        f"attr_{c}"
        for c in attribute_columns
        if not pd.api.types.is_numeric_dtype(attributes[c])
        and not pd.api.types.is_bool_dtype(attributes[c])
    ]
    for column in categorical:
        data[column] = data[column].astype("category")
    numeric = [
        c for c in data.columns if c.startswith("attr_") and c not in categorical
    ]
    for column in numeric:
        data[column] = data[column].astype(float)
    has_attendance = len(tables.attendance) > 0
    feature_names = [
        *ASSESSMENT_FEATURES,
        *(ATTENDANCE_FEATURES if has_attendance else ()),
        *(f"attr_{c}" for c in attribute_columns),
    ]
    if with_learner_features:
        extra, names = learner_features(tables, data, engine=engine)
        data = data.merge(extra, on=["learner_id", "asof_date"], how="left")
        feature_names += names
    for column in feature_names:
        if column not in categorical:
            data[column] = data[column].astype(float)
    if not labels:
        data = data.drop(columns=[LABEL])
        logger.info(
            "built %d feature rows, %d features, without labels",
            len(data),
            len(feature_names),
        )
        return FeatureFrame(data, feature_names, categorical)

    left_out, data_end = 0, None
    if len(tables.study_right_states):
        rule = label_rule or LabelRule()
        data_end = _observed_until(tables)
        events = dropout_events(tables.study_right_states, tables.learners, rule)
        label = label_dropouts(data, events, rule, data_end)
        unknown = label.isna().to_numpy()
        left_out = int(unknown.sum())
        logger.info(
            "left out %d feature rows whose label window (%d days plus a %d-day "
            "transfer gap) runs past the data end %s",
            left_out,
            rule.window_days,
            rule.transfer_gap_days,
            data_end.date(),
        )
        left = first_dropout_dates(data, events, rule)
        data = data.assign(**{LABEL: label, WITHDRAWAL_DATE: left})
        data = data[~unknown].reset_index(drop=True)
    data[LABEL] = data[LABEL].astype(int)
    logger.info(
        "built %d feature rows, %d features, label rate %.3f",
        len(data),
        len(feature_names),
        data[LABEL].mean() if len(data) else float("nan"),
    )
    return FeatureFrame(data, feature_names, categorical, left_out, data_end)
