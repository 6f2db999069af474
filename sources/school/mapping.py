"""Map validated school records into the input contract.

- learners: pupils, with ``birth_date`` set to the first day of the birth month;
- units: one per school and school year (1 August to 31 July), cohort = the
  school year's starting calendar year;
- enrolments: one per study right and school year it overlaps;
- attendance and assessments: marks and grades, each joined to the enrolment
  of the pupil at that school on that date;
- attributes: the support level in force (0 general, 1 intensified,
  2 special), the number of behaviour notes so far and, when the export has
  grade levels, the grade level in force (see :func:`grade_levels`);
- study_right_states: the state histories, which the dropout labels read.
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pandas as pd

from sources.contract import InputTables
from sources.school.records import SchoolRecords, school_year
from sources.school.tables import SUPPORT_LEVELS
from sources.study_rights import study_right_spells

logger = logging.getLogger(__name__)

GRADE_SCALE = (4.0, 10.0)
"""Numeric range of Finnish general-education grades, mapped linearly to 0-100."""

_END_REASONS = {
    "resigned": "withdrawn",
    "considered_resigned": "withdrawn",
    "cancelled": "withdrawn",
    "graduated": "completed",
}


def _year_start(years: pd.Series) -> pd.Series:
    return pd.to_datetime({"year": years, "month": 8, "day": 1})


def _states(records: SchoolRecords) -> pd.DataFrame:
    """Return the state histories with learner and the study right's level."""
    rights = _right_levels(records)
    states = records.study_right_states.merge(
        rights[["study_right_id", "pupil_id", "level"]], on="study_right_id"
    )
    # A right without any recorded state is in force from its start date, but
    # only once that date lies within the recorded activity. A right that
    # starts later (the contract allows exporting a future right without
    # states) gets no state, so it gets no enrolment and cannot move the data
    # end that the labels are judged against.
    stateless = rights[~rights["study_right_id"].isin(states["study_right_id"])]
    end = _data_end(records)
    if end is not None:
        stateless = stateless[stateless["start_date"] <= end]
    opened = pd.DataFrame(
        {
            "study_right_id": stateless["study_right_id"],
            "state_from": stateless["start_date"],
            "state": "present",
            "pupil_id": stateless["pupil_id"],
            "level": stateless["level"],
        }
    )
    states = pd.concat([states, opened], ignore_index=True)
    return states.rename(columns={"pupil_id": "learner_id"})[
        ["learner_id", "study_right_id", "level", "state_from", "state"]
    ]


def _data_start(records: SchoolRecords) -> pd.Timestamp | None:
    """Return the first date with a mark or grade, or None when there is none."""
    dates = [records.attendance_marks["date"].min(), records.grades["date"].min()]
    dates = [d for d in dates if pd.notna(d)]
    return min(dates) if dates else None


def _data_end(records: SchoolRecords) -> pd.Timestamp | None:
    """Return the last date of recorded activity, or None when there is none.

    Only marks, grades and recorded states count, never a study right's start
    date, so the data end does not move past what has happened.
    """
    candidates = [
        records.attendance_marks["date"].max(),
        records.grades["date"].max(),
        records.study_right_states["state_from"].max(),
    ]
    known = [d for d in candidates if pd.notna(d)]
    return max(known) if known else None


def _enrolments(records: SchoolRecords, states: pd.DataFrame) -> pd.DataFrame:
    """Cut each study right into one enrolment per school year it overlaps."""
    spells = study_right_spells(states).drop(columns=["start", "learner_id", "level"])
    rights = records.study_rights.merge(spells, on="study_right_id")
    end = _data_end(records)
    last_day = rights["end"].fillna(pd.NaT if end is None else end)
    first_year = school_year(rights["start_date"])

    # Study rights often began years before the export: the years without any
    # marks or grades get no enrolments, because they would have no features.
    start = _data_start(records)
    if start is not None:
        first_year = first_year.clip(lower=int(school_year(pd.Series([start])).iloc[0]))
    last_year = school_year(
        last_day.where(last_day >= rights["start_date"], rights["start_date"])
    )
    rights = rights[last_year >= first_year]
    first_year, last_year = first_year[rights.index], last_year[rights.index]

    rights = rights.assign(
        year=[list(range(a, b + 1)) for a, b in zip(first_year, last_year, strict=True)]
    ).explode("year")
    rights["year"] = rights["year"].astype(int)

    year_start = _year_start(rights["year"])
    year_end = _year_start(rights["year"] + 1) - pd.Timedelta(days=1)
    ends_here = rights["end"].notna() & (rights["end"] <= year_end)
    is_last = rights["year"] == rights.groupby("study_right_id")["year"].transform(
        "max"
    )
    end_date = rights["end"].where(ends_here, year_end.where(~is_last))
    end_reason = rights["end_state"].map(_END_REASONS).where(ends_here, None)
    end_reason = end_reason.where(ends_here | is_last, "completed")

    return pd.DataFrame(
        {
            "enrolment_id": rights["study_right_id"] + "/" + rights["year"].astype(str),
            "learner_id": rights["pupil_id"],
            "unit_id": rights["school_id"] + "/" + rights["year"].astype(str),
            "start_date": rights["start_date"].where(
                rights["start_date"] > year_start, year_start
            ),
            "end_date": end_date,
            "end_reason": end_reason,
            "_school": rights["school_id"],
            "_year": rights["year"],
        }
    ).reset_index(drop=True)


def _attach(events: pd.DataFrame, enrolments: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add ``enrolment_id`` to dated ``events`` of a pupil at a school.

    An event within two study rights there gets the one that started first.
    An event outside every study right of the pupil at that school is left
    out, and the count of those is returned with the attached events.
    :func:`~sources.school.records.read_records` reports such events, so
    records that it returns have none. The join runs in DuckDB because marks
    run to millions of rows. It returns each event's position and that of its
    study right, and ``enrolment_id`` becomes a category of the ids, so no text
    is built per event.
    """
    keyed = events[["pupil_id", "school_id", "date"]].assign(
        _event=np.arange(len(events), dtype=np.int64)
    )
    # Numbered by start date, so the smallest number is the earliest right.
    ordered = enrolments.sort_values(["start_date", "enrolment_id"], kind="stable")
    spans = ordered[["learner_id", "_school", "start_date", "end_date"]].assign(
        _span=np.arange(len(ordered), dtype=np.int64)
    )
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.register("events", keyed)
        con.register("spans", spans)
        matched = con.execute(
            """
            SELECT e._event, min(s._span) AS _span
            FROM events e
            JOIN spans s
              ON s.learner_id = e.pupil_id AND s._school = e.school_id
             AND e.date >= s.start_date
             AND (s.end_date IS NULL OR e.date <= s.end_date)
            GROUP BY e._event
            """
        ).fetchnumpy()
    span = np.full(len(events), -1, dtype=np.int64)
    span[matched["_event"]] = matched["_span"]
    found = span >= 0
    outside = int((~found).sum())
    attached = (events if not outside else events[found]).reset_index(drop=True)
    attached["enrolment_id"] = pd.Categorical.from_codes(
        span[found], categories=pd.Index(ordered["enrolment_id"], dtype="str")
    )
    return attached, outside


UPPER_SECONDARY_LEVELS = ("general_upper_secondary", "vocational")


def _right_levels(records: SchoolRecords) -> pd.DataFrame:
    """Return the study rights with their level.

    A study right's level is its own ``level`` column when it has one (the
    Koski importer sets it from the study right's type), otherwise its school's.
    """
    rights = records.study_rights
    if "level" not in rights.columns:
        rights = rights.merge(
            records.schools[["school_id", "level"]], on="school_id", how="left"
        )
    return rights


def grade_levels(records: SchoolRecords) -> pd.DataFrame:
    """Return each pupil's grade levels as years of schooling since grade 1.

    A grade in basic education counts as itself, and year of study n in upper
    secondary education counts as grade 9 + n, because upper secondary
    education follows grade 9. The level is the study right's. Rows of study
    rights at another level are left out. The columns are ``learner_id``,
    ``start_date`` and ``grade_level``.
    """
    rows = records.grade_levels.merge(
        _right_levels(records)[["study_right_id", "pupil_id", "level"]],
        on="study_right_id",
    )
    grade = rows["grade_level"].astype(float)
    grade = grade.where(rows["level"] == "basic", grade + 9)
    grade = grade.where(rows["level"].isin(("basic", *UPPER_SECONDARY_LEVELS)))
    return pd.DataFrame(
        {
            "learner_id": rows["pupil_id"].astype("str"),
            "start_date": rows["start_date"].astype("datetime64[ns]"),
            "grade_level": grade,
        }
    ).dropna(subset=["grade_level"])


def _grade_in_force(timeline: pd.DataFrame, grades: pd.DataFrame) -> np.ndarray:
    """Return the grade level in force on each row's ``date``, or NaN.

    A grade level is in force from its start date to the end of that school
    year, so an export that lacks the next year's grade never carries the old
    one over.
    """
    left = timeline[["learner_id", "date"]].astype({"date": "datetime64[ns]"})
    left = left.assign(_row=np.arange(len(left))).sort_values("date")
    matched = pd.merge_asof(
        left,
        grades.sort_values("start_date"),
        left_on="date",
        right_on="start_date",
        by="learner_id",
        direction="backward",
    )
    same_year = school_year(matched["date"]) == school_year(matched["start_date"])
    values = matched["grade_level"].where(same_year).to_numpy()
    in_force = np.full(len(left), np.nan)
    in_force[matched["_row"].to_numpy()] = values
    return in_force


def _attributes(records: SchoolRecords, enrolments: pd.DataFrame) -> pd.DataFrame:
    """Build support level, behaviour-note count and grade level per enrolment as
    they change."""
    grades = grade_levels(records)
    support = records.support_decisions
    rank = {level: i for i, level in enumerate(SUPPORT_LEVELS)}
    changes = pd.concat(
        [
            pd.DataFrame(
                {"learner_id": support["pupil_id"], "date": support["start_date"]}
            ),
            pd.DataFrame(
                {
                    "learner_id": support["pupil_id"],
                    "date": support["end_date"] + pd.Timedelta(days=1),
                }
            ).dropna(),
            pd.DataFrame(
                {
                    "learner_id": records.behaviour_notes["pupil_id"],
                    "date": records.behaviour_notes["date"],
                }
            ),
            enrolments[["learner_id", "start_date"]].rename(
                columns={"start_date": "date"}
            ),
            grades[["learner_id", "start_date"]].rename(columns={"start_date": "date"}),
        ],
        ignore_index=True,
    ).drop_duplicates()

    in_force = changes.merge(
        support.rename(columns={"pupil_id": "learner_id"}), on="learner_id", how="left"
    )
    active = (in_force["start_date"] <= in_force["date"]) & (
        in_force["end_date"].isna() | (in_force["end_date"] >= in_force["date"])
    )
    in_force["rank"] = in_force["level"].map(rank).where(active, 0).fillna(0)
    level = (
        in_force.groupby(["learner_id", "date"])["rank"].max().rename("support_level")
    )

    notes = records.behaviour_notes.rename(columns={"pupil_id": "learner_id"})
    counted = changes.merge(
        notes[["learner_id", "date"]].rename(columns={"date": "note"}),
        on="learner_id",
        how="left",
    )
    counted["seen"] = (counted["note"] <= counted["date"]).astype(int)
    count = (
        counted.groupby(["learner_id", "date"])["seen"].sum().rename("behaviour_notes")
    )

    timeline = pd.concat([level, count], axis=1).reset_index()
    columns = {"support_level": float, "behaviour_notes": float}
    if len(grades):
        timeline["grade_level"] = _grade_in_force(timeline, grades)
        columns["grade_level"] = float
    rows = timeline.merge(
        enrolments[["enrolment_id", "learner_id", "start_date", "end_date"]],
        on="learner_id",
    )
    keep = rows["date"] <= rows["end_date"].fillna(pd.Timestamp.max)
    rows = rows[keep]
    rows["known_from"] = rows[["date", "start_date"]].max(axis=1)
    rows = rows.sort_values("date").drop_duplicates(
        ["enrolment_id", "known_from"], keep="last"
    )
    return (
        rows[["enrolment_id", "known_from", *columns]]
        .astype(columns)
        .reset_index(drop=True)
    )


OPTIONAL_TABLE_FEATURES = {
    "behaviour_notes": ("attr_behaviour_notes",),
    "grade_levels": ("attr_grade_level", "age_for_grade_months"),
}
"""Model features that each optional export table feeds, by way of the
attributes that :func:`_attributes` builds from it."""


def to_input_tables(
    records: SchoolRecords, origin: str = "<records>", strict: bool = True
) -> InputTables:
    """Map ``records`` into the contract tables, unvalidated.

    With ``strict`` off, marks and grades outside every study right are left
    out and counted in the log instead of raising. Records from
    :func:`~sources.school.records.read_records` have no such marks or grades,
    because it reports each one with its file and row.

    Raises
    ------
    ValueError
        If ``strict`` and a mark or grade falls outside every study right of
        the pupil at the school that recorded it, which only records built
        without ``read_records`` can have.
    """
    states = _states(records)
    enrolments = _enrolments(records, states)

    marks = records.attendance_marks[
        ["pupil_id", "school_id", "date", "subject", "mark"]
    ]
    attended, marks_outside = _attach(marks, enrolments)
    graded, grades_outside = _attach(records.grades, enrolments)
    outside = marks_outside + grades_outside
    if outside and strict:
        raise ValueError(
            f"{marks_outside} marks and {grades_outside} grades lie outside every "
            "study right of their pupil at their school. read_records reports "
            "each one with its file and row; call to_input_tables with "
            "strict=False to leave them out."
        )
    if outside:
        logger.info("left out %d marks and grades outside every study right", outside)

    low, high = GRADE_SCALE
    assessments = pd.DataFrame(
        {
            "enrolment_id": graded["enrolment_id"],
            "assessment_id": graded["subject"]
            + "@"
            + graded["date"].dt.strftime("%Y-%m-%d"),
            "due_date": graded["date"],
            "submitted_date": graded["date"],
            "score": (graded["value"].astype(float) - low) / (high - low) * 100,
            "passed": graded["passed"],
            "weight": 1.0,
            "subject": graded["subject"],
            "grade_token": graded["grade"],
        }
    )
    pupils = records.pupils
    learners = pd.DataFrame(
        {
            "learner_id": pupils["pupil_id"],
            "gender": pupils["gender"],
            "mother_tongue": pupils["mother_tongue"],
            "birth_date": pd.to_datetime(
                {
                    "year": pupils["birth_year"].astype("Float64"),
                    "month": pupils["birth_month"].astype("Float64"),
                    "day": 1,
                },
                errors="coerce",
            ),
        }
    )
    years = enrolments[["_school", "_year"]].drop_duplicates()
    units = pd.DataFrame(
        {
            "unit_id": years["_school"] + "/" + years["_year"].astype(str),
            "cohort": years["_year"].astype(str),
            "start_date": _year_start(years["_year"]),
            "end_date": _year_start(years["_year"] + 1) - pd.Timedelta(days=1),
            "school_id": years["_school"],
        }
    )
    tables = InputTables(
        learners=learners,
        units=units.reset_index(drop=True),
        enrolments=enrolments.drop(columns=["_school", "_year"]),
        attributes=_attributes(records, enrolments),
        assessments=assessments,
        attendance=attended[["enrolment_id", "date", "mark"]],
        study_right_states=states,
        origin=origin,
        absent_tables={
            name: OPTIONAL_TABLE_FEATURES[name] for name in records.absent_tables
        },
    )
    logger.info(
        "mapped records: %d learners, %d units, %d enrolments, %d marks, %d grades",
        len(learners),
        len(units),
        len(enrolments),
        len(attended),
        len(graded),
    )
    return tables
