"""The tables of a school platform's export and the rules each column follows.

docs/data-contract.md describes the same tables for the people who produce the
export; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sources.contract import STUDY_RIGHT_STATES

SCHOOL_LEVELS = ("basic", "general_upper_secondary", "vocational")
SUPPORT_LEVELS = ("general", "intensified", "special")
"""Tiers of learning support in Finnish basic education, lowest first."""

MOTHER_TONGUE_GROUPS = ("finnish", "swedish", "sami", "other")
GENDERS = ("female", "male", "other", "unknown")
GRADE_LEVELS = (1, 9)
"""Range of ``grade_level``: the grade (vuosiluokka, 1 to 9) in basic education,
the year of study in upper secondary education."""
KOSKI_STATE_CODES = {
    "lasna": "present",
    "loma": "on_leave",
    "valiaikaisestikeskeytynyt": "temporarily_interrupted",
    "eronnut": "resigned",
    "katsotaaneronneeksi": "considered_resigned",
    "valmistunut": "graduated",
    "hyvaksytystisuoritettu": "graduated",
    "peruutettu": "cancelled",
}
"""Koski state codes (code list ``koskiopiskeluoikeudentila``) and the contract
state each one maps to."""
RECORDED_BY = ("teacher", "office")
"""Recorders of attendance marks. An office correction outranks a teacher's mark."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of an export table.

    ``kind`` is ``text``, ``id`` (text that matches
    :data:`sources.contract.ID_PATTERN`),
    ``int``, ``date`` (a calendar day, ``dd.mm.yyyy`` or ``yyyy-mm-dd`` in CSV) or
    ``timestamp`` (ISO 8601 with a UTC offset, or ``dd.mm.yyyy hh:mm``,
    ``dd.mm.yyyy hh.mm`` or ``yyyy-mm-dd hh:mm`` in Helsinki local time).
    ``choices`` lists the allowed text values, and ``other_codes`` maps codes
    of another system, such as Koski, to the choice each one corresponds to,
    so that a problem with such a code names the choice to write.
    """

    name: str
    kind: str = "text"
    required: bool = True
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    other_codes: Mapping[str, str] | None = None


@dataclass(frozen=True)
class TableSpec:
    """One export table: its file stem, columns and key."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    optional: bool = False
    """Whether the export may leave the table out."""


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "pupils",
            (
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("birth_year", "int", low=1980, high=2100),
                ColumnSpec("birth_month", "int", low=1, high=12),
                ColumnSpec("gender", required=False, choices=GENDERS),
                ColumnSpec(
                    "mother_tongue", required=False, choices=MOTHER_TONGUE_GROUPS
                ),
                ColumnSpec("home_municipality", required=False),
            ),
            key=("pupil_id",),
        ),
        TableSpec(
            "schools",
            (
                ColumnSpec("school_id", "id"),
                ColumnSpec("name"),
                ColumnSpec("municipality", required=False),
                ColumnSpec("level", choices=SCHOOL_LEVELS),
            ),
            key=("school_id",),
        ),
        TableSpec(
            "study_rights",
            (
                ColumnSpec("study_right_id"),
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("school_id", "id"),
                ColumnSpec("start_date", "date"),
            ),
            key=("study_right_id",),
        ),
        TableSpec(
            "study_right_states",
            (
                ColumnSpec("study_right_id"),
                ColumnSpec("state_from", "date"),
                ColumnSpec(
                    "state",
                    choices=STUDY_RIGHT_STATES,
                    other_codes=KOSKI_STATE_CODES,
                ),
            ),
            key=("study_right_id", "state_from"),
        ),
        TableSpec(
            "attendance_marks",
            (
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("school_id", "id"),
                ColumnSpec("lesson_start", "timestamp"),
                ColumnSpec("lesson"),
                ColumnSpec("subject", required=False),
                ColumnSpec("mark_code"),
                ColumnSpec("recorded_by", choices=RECORDED_BY),
                ColumnSpec("recorded_at", "timestamp", required=False),
            ),
        ),
        TableSpec(
            "grades",
            (
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("school_id", "id"),
                ColumnSpec("date", "date"),
                ColumnSpec("subject"),
                ColumnSpec("grade"),
            ),
        ),
        TableSpec(
            "support_decisions",
            (
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("start_date", "date"),
                ColumnSpec("end_date", "date", required=False),
                ColumnSpec("level", choices=SUPPORT_LEVELS),
            ),
        ),
        TableSpec(
            "behaviour_notes",
            (
                ColumnSpec("pupil_id", "id"),
                ColumnSpec("date", "date"),
                ColumnSpec("note_type"),
            ),
            optional=True,
        ),
        TableSpec(
            "grade_levels",
            (
                ColumnSpec("study_right_id"),
                ColumnSpec("start_date", "date"),
                ColumnSpec(
                    "grade_level", "int", low=GRADE_LEVELS[0], high=GRADE_LEVELS[1]
                ),
            ),
            key=("study_right_id", "start_date"),
            optional=True,
        ),
    )
}
