"""Map the UCI "Predict Students' Dropout and Academic Success" data into the contract.

The data (Realinho, Machado, Baptista and Martins 2022, CC BY 4.0, UCI dataset 697)
has one row per undergraduate of the Polytechnic Institute of Portalegre. Each row
contains what was known at enrolment, the curricular-unit results of the first two
semesters and ``Target``, the student's status when the normal course duration
ended: ``Dropout``, ``Graduate`` or ``Enrolled``.

The file has no dates, so the loader maps it as one snapshot:

- one unit per ``Course`` code, all in cohort ``"snapshot"``, starting on
  ``SNAPSHOT_START`` and ending one year later. The date is a placeholder and
  carries no meaning.
- one enrolment per row, starting on ``SNAPSHOT_START``.
- every column that is neither sensitive nor the target becomes an attribute
  known from ``SNAPSHOT_START``, and so do four attributes derived from the
  semester results: the share of enrolled curricular units approved in each
  semester, its change and the change in grade (``DERIVED_ATTRIBUTES``).
- the pipeline scores the snapshot at the as-of date
  ``SNAPSHOT_START + SNAPSHOT_OFFSET_DAYS``. ``Dropout`` ends the enrolment as
  ``withdrawn`` one day after that date, so every dropout is still enrolled at
  the as-of date and labelled 1. ``Graduate`` ends it as ``completed`` on the
  unit's end date. ``Enrolled`` leaves it open, so it is labelled 0 although
  its outcome is unknown.
- there are no assessment or attendance events.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sources.contract import InputTables, empty_table
from sources.csvread import ColumnKind, read_typed_csv
from sources.errors import InputDataError, Problem

logger = logging.getLogger(__name__)

TABLE = "uci_dropout"
"""Table name used in error messages."""

SNAPSHOT_START = pd.Timestamp("2000-01-01")
"""Placeholder start date of every unit and enrolment, because the file has no dates."""

SNAPSHOT_OFFSET_DAYS = 1
"""As-of offset, in days after ``SNAPSHOT_START``, at which the snapshot is scored.

Pass it to ``features.build.asof_points_by_offset(units, [SNAPSHOT_OFFSET_DAYS])``.
"""

COHORT = "snapshot"

UNIT_LENGTH = pd.DateOffset(years=1)

TARGET_TO_END_REASON: dict[str, str | None] = {
    "Dropout": "withdrawn",
    "Graduate": "completed",
    "Enrolled": None,
}

CODED_ATTRIBUTES = {
    "Marital status": "marital_status",
    "Application mode": "application_mode",
    "Course": "course",
    "Previous qualification": "previous_qualification",
    "Nacionality": "nationality",
    "Mother's qualification": "mother_qualification",
    "Father's qualification": "father_qualification",
    "Mother's occupation": "mother_occupation",
    "Father's occupation": "father_occupation",
}
"""Source columns of integer codes, mapped to attribute names.

The codes are kept as strings so that they become categorical features. The code
meanings are on the UCI dataset page and in the data paper, which
``ajoissa/data/uci-dropout-academic-success/README.md`` cites.
"""

SEMESTER_ATTRIBUTES: dict[str, tuple[str, ColumnKind]] = {
    f"Curricular units {sem} sem ({measure})": (
        f"curricular_units_{sem}_sem_{measure.replace(' ', '_')}",
        "float" if measure == "grade" else "int",
    )
    for sem in ("1st", "2nd")
    for measure in (
        "credited",
        "enrolled",
        "evaluations",
        "approved",
        "grade",
        "without evaluations",
    )
}
"""Curricular-unit results of the first two semesters, mapped to attribute names.

Grades are on the Portuguese 0 to 20 scale and the other columns are counts.
"""

DERIVED_ATTRIBUTES = (
    "curricular_units_1st_sem_approved_share",
    "curricular_units_2nd_sem_approved_share",
    "curricular_units_approved_share_change",
    "curricular_units_grade_change",
)
"""Attributes derived from ``SEMESTER_ATTRIBUTES`` (see :func:`derived_attributes`)."""

NUMERIC_ATTRIBUTES: dict[str, tuple[str, ColumnKind]] = {
    "Application order": ("application_order", "int"),
    # 1 = daytime, 0 = evening. The source header ends in a tab, which
    # read_typed_csv strips.
    "Daytime/evening attendance": ("daytime_attendance", "int"),
    "Previous qualification (grade)": ("previous_qualification_grade", "float"),
    "Admission grade": ("admission_grade", "float"),
    "Displaced": ("displaced", "int"),
    "Debtor": ("debtor", "int"),
    "Tuition fees up to date": ("tuition_fees_up_to_date", "int"),
    "Scholarship holder": ("scholarship_holder", "int"),
    "International": ("international", "int"),
    **SEMESTER_ATTRIBUTES,
    "Unemployment rate": ("unemployment_rate", "float"),
    "Inflation rate": ("inflation_rate", "float"),
    "GDP": ("gdp", "float"),
}
"""Source columns of flags (1 = yes, 0 = no), counts and rates, mapped to names."""

GENDER_CODES = {1: "M", 0: "F"}
"""``Gender`` codes as the UCI variable table defines them: 1 male, 0 female.

The data README quotes the same coding.
"""

SPECIAL_NEEDS_CODES = {1: "Y", 0: "N"}
"""``Educational special needs`` codes (1 yes, 0 no) as contract ``disability``."""

AGE_BAND_EDGES = (-np.inf, 16, 20, 25, 35, np.inf)
AGE_BAND_LABELS = ("under 17", "17-20", "21-25", "26-35", "36+")
"""``age_band`` from ``Age at enrollment`` in whole years, bands closed on the right.

The shipped file has ages 17 to 70 (median 20), so ``under 17`` stays empty there.
"""

SENSITIVE_COLUMNS: dict[str, ColumnKind] = {
    "Gender": "int",
    "Age at enrollment": "int",
    "Educational special needs": "int",
}
TARGET = "Target"


def load_uci_dropout(path: Path) -> InputTables:
    """Read the UCI dropout CSV at ``path`` and map it into the contract.

    ``learner_id`` is ``uci-<n>``, where ``n`` is the 1-based data row (file line
    ``n + 1``). ``unit_id`` is ``uci-course-<Course code>``.

    The learners table contains the contract's sensitive attributes that the
    data defines: ``gender`` from ``Gender``, ``age_band`` from ``Age at enrollment`` (see
    ``AGE_BAND_LABELS``) and ``disability`` from ``Educational special needs``.
    ``Debtor``, ``Tuition fees up to date``, ``Scholarship holder`` and
    ``Displaced`` stay ordinary features, but they can act as proxies for
    income, and ``Nacionality`` and ``International`` as proxies for national
    origin. Fairness audits should check them.

    NOTE: the snapshot treats the first- and second-semester results as known at
    the as-of date. A student who left during the first year is likely to have no
    approved second-semester unit, so those features may partly record the
    withdrawal itself. In the shipped file, 727 of the 1,421 dropouts have no
    approved second-semester unit, against 75 of the 2,209 graduates. Drop the
    attributes in ``SEMESTER_ATTRIBUTES`` and ``DERIVED_ATTRIBUTES`` to score on
    what is known at enrolment.

    Parameters
    ----------
    path
        The ``;``-separated UCI ``data.csv`` (UTF-8, with or without a BOM).

    Raises
    ------
    InputDataError
        If the file or a column is missing, a value is empty or does not parse,
        or a code or ``Target`` value is not one the data defines.
    """
    logger.info("loading the UCI dropout data from %s", path)
    raw = _read(path)
    _check_codes(raw, path)

    row_number = pd.Series(np.arange(1, len(raw) + 1), index=raw.index)
    learner_id = "uci-" + row_number.astype(str)
    course = raw["Course"].astype(str)
    unit_id = "uci-course-" + course
    enrolment_id = unit_id + "-" + learner_id

    units = _units(course)
    end_reason = raw[TARGET].map(TARGET_TO_END_REASON)
    withdrawal_date = SNAPSHOT_START + pd.Timedelta(days=SNAPSHOT_OFFSET_DAYS + 1)
    end_date = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    end_date[end_reason == "withdrawn"] = withdrawal_date
    end_date[end_reason == "completed"] = SNAPSHOT_START + UNIT_LENGTH
    enrolments = pd.DataFrame(
        {
            "enrolment_id": enrolment_id,
            "learner_id": learner_id,
            "unit_id": unit_id,
            "start_date": SNAPSHOT_START,
            "end_date": end_date,
            "end_reason": end_reason,
        }
    )

    learners = pd.DataFrame(
        {
            "learner_id": learner_id,
            "gender": raw["Gender"].astype(int).map(GENDER_CODES),
            "age_band": _age_bands(raw["Age at enrollment"]),
            "disability": raw["Educational special needs"]
            .astype(int)
            .map(SPECIAL_NEEDS_CODES),
        }
    )

    numeric = pd.DataFrame(
        {
            name: raw[column].astype(float)
            for column, (name, _) in NUMERIC_ATTRIBUTES.items()
        }
    )
    attributes = pd.concat(
        [
            pd.DataFrame(
                {"enrolment_id": enrolment_id, "known_from": SNAPSHOT_START}
                | {
                    name: raw[column].astype(str)
                    for column, name in CODED_ATTRIBUTES.items()
                }
            ),
            numeric,
            derived_attributes(numeric),
        ],
        axis=1,
    )

    logger.info(
        "mapped %d UCI enrolments in %d units: %s",
        len(enrolments),
        len(units),
        raw[TARGET].value_counts().to_dict(),
    )
    return InputTables(
        learners=learners,
        units=units,
        enrolments=enrolments,
        attributes=attributes,
        assessments=empty_table("assessments"),
        origin=str(path),
    )


def derived_attributes(semesters: pd.DataFrame) -> pd.DataFrame:
    """Derive the ``DERIVED_ATTRIBUTES`` from the semester attributes.

    ``semesters`` has the attribute names of ``SEMESTER_ATTRIBUTES`` as columns.
    The approved share of a semester is approved units over enrolled units,
    missing when none were enrolled. The changes are the second semester's
    value minus the first's. In the shipped file a semester's grade is 0
    exactly when no unit was approved, so the grade change also records a
    semester without an approved unit.
    """
    shares = {}
    for sem in ("1st", "2nd"):
        prefix = f"curricular_units_{sem}_sem"
        enrolled = semesters[f"{prefix}_enrolled"].astype(float)
        approved = semesters[f"{prefix}_approved"].astype(float)
        shares[sem] = approved / enrolled.where(enrolled != 0)
    grade = "curricular_units_{}_sem_grade"
    return pd.DataFrame(
        {
            "curricular_units_1st_sem_approved_share": shares["1st"],
            "curricular_units_2nd_sem_approved_share": shares["2nd"],
            "curricular_units_approved_share_change": shares["2nd"] - shares["1st"],
            "curricular_units_grade_change": semesters[grade.format("2nd")].astype(
                float
            )
            - semesters[grade.format("1st")].astype(float),
        },
        index=semesters.index,
    )


def _read(path: Path) -> pd.DataFrame:
    columns: dict[str, ColumnKind] = (
        {column: "int" for column in CODED_ATTRIBUTES}
        | {column: kind for column, (_, kind) in NUMERIC_ATTRIBUTES.items()}
        | SENSITIVE_COLUMNS
        | {TARGET: "str"}
    )
    return read_typed_csv(
        path,
        TABLE,
        columns,
        required=tuple(columns),
        sep=";",
        encoding="utf-8-sig",
    )


def _check_codes(raw: pd.DataFrame, path: Path) -> None:
    """Raise InputDataError for a code or ``Target`` value the data does not define."""
    allowed: dict[str, tuple[object, ...]] = {
        "Gender": tuple(GENDER_CODES),
        "Educational special needs": tuple(SPECIAL_NEEDS_CODES),
        TARGET: tuple(TARGET_TO_END_REASON),
    }
    problems = []
    for column, values in allowed.items():
        invalid = ~raw[column].isin(values)
        for i in np.flatnonzero(invalid.to_numpy())[:50]:
            value = raw[column].iloc[i]
            problems.append(
                Problem(
                    str(path),
                    TABLE,
                    column,
                    int(i) + 2,
                    value.item() if isinstance(value, np.generic) else value,
                    "one of " + ", ".join(repr(v) for v in values),
                )
            )
    if problems:
        raise InputDataError(problems)


def _units(course: pd.Series) -> pd.DataFrame:
    codes = sorted(course.unique(), key=int)
    return pd.DataFrame(
        {
            "unit_id": ["uci-course-" + code for code in codes],
            "cohort": COHORT,
            "start_date": SNAPSHOT_START,
            "end_date": SNAPSHOT_START + UNIT_LENGTH,
        }
    )


def _age_bands(age: pd.Series) -> pd.Series:
    bands = pd.cut(
        age.astype(float), bins=list(AGE_BAND_EDGES), labels=list(AGE_BAND_LABELS)
    )
    return bands.astype(str)
