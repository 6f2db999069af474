"""The input contract: the tables that every source is mapped into.

Everything downstream of a source loader (features, training, audits, serving)
reads only these tables and never learns which source they came from.

Tables
------
learners
    One row per learner: ``learner_id`` and the sensitive attributes, which are
    kept for audits and are never model features.
units
    One row per teaching unit that learners enrol in (a course presentation or a
    school year at a school): ``unit_id``, ``cohort``, ``start_date``, ``end_date``.
enrolments
    One row per learner and unit: ``enrolment_id``, ``learner_id``, ``unit_id``,
    ``start_date``, ``end_date`` (missing while enrolled), ``end_reason`` (one of
    ``END_REASONS``, missing while enrolled).
attributes
    Facts about an enrolment that become known on ``known_from`` (for example
    credits taken or prior attempts): ``enrolment_id``, ``known_from`` and any
    further columns. Each further column becomes a feature named ``attr_<column>``.
assessments
    Dated assessment events: ``enrolment_id``, ``assessment_id``, ``due_date``
    (missing when undated), ``submitted_date`` (missing when not submitted),
    ``score`` (0 to 100, missing when not graded), ``passed`` (whether the score
    is a pass by the source's own pass mark, missing when not graded), ``weight``.
attendance
    Dated attendance marks: ``enrolment_id``, ``date``, ``mark`` (one of
    ``ATTENDANCE_MARKS``). Empty for sources without attendance data.
study_right_states
    Dated state histories of learners' study rights, one row per state change:
    ``learner_id``, ``study_right_id``, ``level`` (one of ``EDUCATION_LEVELS``),
    ``state_from`` and ``state`` (one of ``STUDY_RIGHT_STATES``). When a source
    fills it, dropout labels are read from it (see ``features.labels``);
    otherwise they come from ``enrolments.end_reason``.

``learners`` may also have ``birth_date`` (used for age rules, never audited),
and ``assessments`` may have ``subject`` and ``grade_token`` (the grade as the
source wrote it).

Dates are ``datetime64`` at day precision, without a time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from sources.errors import InputDataError, Problem

END_REASONS = ("withdrawn", "completed", "failed", "transferred")
"""Reasons an enrolment can end. Only ``withdrawn`` counts as dropping out."""

ATTENDANCE_MARKS = ("present", "excused", "unexcused", "late")

STUDY_RIGHT_STATES = (
    "present",
    "on_leave",
    "temporarily_interrupted",
    "resigned",
    "considered_resigned",
    "graduated",
    "cancelled",
)
"""States of a study right, as the Finnish national register Koski records them."""

EXIT_STATES = ("resigned", "considered_resigned")
"""States that end a study right without completing it."""

EDUCATION_LEVELS = ("basic", "preparatory", "general_upper_secondary", "vocational")
"""Levels of school education; ``preparatory`` covers the bridging programmes
between and before them (additional basic education, preparatory instruction)."""

SENSITIVE_ATTRIBUTES = (
    "gender",
    "age_band",
    "disability",
    "deprivation_band",
    "mother_tongue",
)
"""Learner columns used only in fairness audits. A source fills those it has.

A source may name further sensitive learner columns in ``InputTables.sensitive``.
"""

ID_PATTERN = r"[\w.:-]{1,100}"
"""Pupil and school ids: letters (ä, ö and å included), digits and ``_ . : -``.

The scoring API and the review screens take ids in URL paths with the same
rule, so an id with a space or a ``/`` could be loaded and scored but never
read back. The loaders of school records and mapped tables check it."""
ID_EXPECTED = (
    "an id of 1 to 100 letters, digits, '_', '.', ':' or '-', without spaces or "
    "'/', so that the API and the screens can read it"
)
SCHOOL_ID_PATTERN = r"(?=.{1,100}$)[\w.:-]+(?:[/@][\w.:-]+)*"
"""School ids, as scores and staff tokens name them: ids by ``ID_PATTERN``, or
such ids joined by ``/`` or ``@``, at most 100 characters in all.

A unit without a ``school_id`` is its own school, and loaders build unit ids
from parts: school records as ``school/year`` and mapped tables as
``unit-group@period``, where a school-year period reads like ``2023/24``.
The table source checks its group values against ``ID_PATTERN``."""
SCHOOL_ID_EXPECTED = (
    "a school id of 1 to 100 characters: letters, digits, '_', '.', ':' and '-', "
    "where '/' or '@' may join such parts, as in SCHOOL01/2024"
)
_SCHOOL_ID = re.compile(SCHOOL_ID_PATTERN)


def check_school_ids(school_ids: Iterable[str]) -> None:
    """Check each of ``school_ids`` against ``SCHOOL_ID_PATTERN``.

    Raises
    ------
    ValueError
        If an id does not match. The message names every such id and the rule.
    """
    invalid = [school for school in school_ids if not _SCHOOL_ID.fullmatch(school)]
    if invalid:
        raise ValueError(
            f"invalid school id {', '.join(map(repr, invalid))}: expected "
            f"{SCHOOL_ID_EXPECTED}"
        )


_date = pa.Column("datetime64[ns]", nullable=False, coerce=True)
_optional_date = pa.Column("datetime64[ns]", nullable=True, coerce=True)
_id = pa.Column(str, nullable=False, coerce=True)


def learners_schema(
    sensitive: tuple[str, ...] = SENSITIVE_ATTRIBUTES,
) -> pa.DataFrameSchema:
    """Return the learners schema with ``sensitive`` as optional text columns."""
    return pa.DataFrameSchema(
        {"learner_id": pa.Column(str, nullable=False, unique=True, coerce=True)}
        | {
            name: pa.Column(str, nullable=True, coerce=True, required=False)
            for name in sensitive
        }
        | {
            "birth_date": pa.Column(
                "datetime64[ns]", nullable=True, coerce=True, required=False
            )
        },
        strict=True,
    )


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "learners": learners_schema(),
    "units": pa.DataFrameSchema(
        {
            "unit_id": pa.Column(str, nullable=False, unique=True, coerce=True),
            "cohort": _id,
            "start_date": _date,
            "end_date": _date,
            # The school that runs the unit, where a unit is one of its years.
            # Scheduled scores and staff access use it; without it the unit
            # id is the school.
            "school_id": pa.Column(str, nullable=True, coerce=True, required=False),
        },
        checks=pa.Check(
            lambda df: df["end_date"] >= df["start_date"],
            error="end_date must not be before start_date",
        ),
        strict=True,
    ),
    "enrolments": pa.DataFrameSchema(
        {
            "enrolment_id": pa.Column(str, nullable=False, unique=True, coerce=True),
            "learner_id": _id,
            "unit_id": _id,
            "start_date": _date,
            "end_date": _optional_date,
            "end_reason": pa.Column(
                str, pa.Check.isin(END_REASONS), nullable=True, coerce=True
            ),
        },
        strict=True,
    ),
    "attributes": pa.DataFrameSchema(
        {"enrolment_id": _id, "known_from": _date}, strict=False
    ),
    "assessments": pa.DataFrameSchema(
        {
            "enrolment_id": _id,
            "assessment_id": _id,
            "due_date": _optional_date,
            "submitted_date": _optional_date,
            "score": pa.Column(
                float, pa.Check.in_range(0, 100), nullable=True, coerce=True
            ),
            "passed": pa.Column("boolean", nullable=True, coerce=True),
            "weight": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
            "subject": pa.Column(str, nullable=True, coerce=True, required=False),
            "grade_token": pa.Column(str, nullable=True, coerce=True, required=False),
        },
        strict=True,
    ),
    # Marks run to millions of rows that repeat a few thousand enrolment ids
    # and four marks, so both columns are categories. Checked as strings, the
    # 8 million marks of a 3,000-pupil synthetic export took about 0.6 GB more.
    "attendance": pa.DataFrameSchema(
        {
            "enrolment_id": pa.Column("category", nullable=False, coerce=True),
            "date": _date,
            "mark": pa.Column("category", pa.Check.isin(ATTENDANCE_MARKS), coerce=True),
        },
        strict=True,
    ),
    "study_right_states": pa.DataFrameSchema(
        {
            "learner_id": _id,
            "study_right_id": _id,
            "level": pa.Column(str, pa.Check.isin(EDUCATION_LEVELS), coerce=True),
            "state_from": _date,
            "state": pa.Column(str, pa.Check.isin(STUDY_RIGHT_STATES), coerce=True),
        },
        strict=True,
    ),
}


def empty_table(name: str) -> pd.DataFrame:
    """Return an empty table with the columns and types of contract table ``name``."""
    schema = SCHEMAS[name]
    return schema.validate(pd.DataFrame({c: [] for c in schema.columns}))


@dataclass
class InputTables:
    """The contract tables of one source, plus where they came from."""

    learners: pd.DataFrame
    units: pd.DataFrame
    enrolments: pd.DataFrame
    attributes: pd.DataFrame
    assessments: pd.DataFrame
    attendance: pd.DataFrame = field(default_factory=lambda: empty_table("attendance"))
    study_right_states: pd.DataFrame = field(
        default_factory=lambda: empty_table("study_right_states")
    )
    origin: str = "<memory>"
    """Origin of the tables (a path or label), used only in error messages."""
    sensitive: tuple[str, ...] = SENSITIVE_ATTRIBUTES
    """Learner columns that are sensitive attributes, used only in audits.

    A source that names its own attributes (for example a mapped table with
    ``sex`` and ``address``) lists them here. They may never be attributes.
    """

    absent_tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Optional tables of the source that the data lacks, each mapped to the
    features it feeds. Those features then take their no-event value, such as
    a count of 0, for every learner."""

    def validated(self) -> InputTables:
        """Return a copy with every table checked and coerced to the contract.

        Raises
        ------
        InputDataError
            Listing every invalid value and every reference to a missing
            learner, unit or enrolment.
        """
        problems: list[Problem] = []
        checked: dict[str, pd.DataFrame] = {}
        schemas = SCHEMAS | {"learners": learners_schema(self.all_sensitive)}
        for name, schema in schemas.items():
            try:
                checked[name] = schema.validate(getattr(self, name), lazy=True)
            except pa.errors.SchemaErrors as exc:
                problems.extend(_problems_from_pandera(self.origin, name, exc))
        if problems:
            raise InputDataError(problems)

        problems.extend(self._reference_problems(checked))
        if problems:
            raise InputDataError(problems)
        return InputTables(
            **checked,
            origin=self.origin,
            sensitive=self.sensitive,
            absent_tables=self.absent_tables,
        )

    @property
    def all_sensitive(self) -> tuple[str, ...]:
        """The contract's sensitive attributes followed by this source's own."""
        extra = tuple(c for c in self.sensitive if c not in SENSITIVE_ATTRIBUTES)
        return SENSITIVE_ATTRIBUTES + extra

    def _reference_problems(self, t: dict[str, pd.DataFrame]) -> list[Problem]:
        references = [
            ("enrolments", "learner_id", t["learners"]["learner_id"]),
            ("enrolments", "unit_id", t["units"]["unit_id"]),
            ("attributes", "enrolment_id", t["enrolments"]["enrolment_id"]),
            ("assessments", "enrolment_id", t["enrolments"]["enrolment_id"]),
            ("attendance", "enrolment_id", t["enrolments"]["enrolment_id"]),
            ("study_right_states", "learner_id", t["learners"]["learner_id"]),
        ]
        problems = []
        for table, column, known in references:
            unknown = ~t[table][column].isin(known)
            for position in unknown.to_numpy().nonzero()[0][:20]:
                problems.append(
                    Problem(
                        self.origin,
                        table,
                        column,
                        int(position),
                        t[table][column].iloc[position],
                        f"an id present in the {column.removesuffix('_id')} table",
                    )
                )
        return problems


def _problems_from_pandera(
    origin: str, table: str, exc: pa.errors.SchemaErrors
) -> list[Problem]:
    problems = []
    cases = exc.failure_cases
    for record in cases.head(50).to_dict("records"):
        column = record.get("column")
        index = record.get("index")
        problems.append(
            Problem(
                origin,
                table,
                str(column) if column is not None else "*",
                None if pd.isna(index) else int(index),
                record.get("failure_case"),
                str(record.get("check")),
            )
        )
    return problems
