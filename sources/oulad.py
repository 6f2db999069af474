"""Map the Open University Learning Analytics Dataset (OULAD) into the contract.

OULAD (Kuzilek, Hlosta and Zdrahal 2017, CC BY 4.0) counts days from the start of
each module presentation. The dataset does not give calendar start dates, only the
presentation code: ``2013B`` starts in February 2013 and ``2013J`` in October
2013. The loader places every presentation on the first day of that month, so
calendar dates are approximate but every interval between events is exact.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from sources.contract import InputTables
from sources.csvread import read_typed_csv, reject_duplicates

logger = logging.getLogger(__name__)

START_MONTH = {"B": 2, "J": 10}
"""Month in which presentations with each code letter start."""

FINAL_RESULT_TO_END_REASON = {
    "Pass": "completed",
    "Distinction": "completed",
    "Fail": "failed",
    "Withdrawn": "withdrawn",
}

PASS_MARK = 40.0
"""Lowest passing assessment score at the Open University (scores run 0 to 100)."""

FILES = {
    "courses": "courses.csv",
    "assessments": "assessments.csv",
    "studentInfo": "studentInfo.csv.gz",
    "studentRegistration": "studentRegistration.csv.gz",
    "studentAssessment": "studentAssessment.csv.gz",
}


def _read(data_dir: Path) -> dict[str, pd.DataFrame]:
    def path(name: str) -> Path:
        plain = data_dir / FILES[name].removesuffix(".gz")
        return plain if plain.is_file() else data_dir / FILES[name]

    key = ("code_module", "code_presentation")
    tables = {
        "courses": read_typed_csv(
            path("courses"),
            "courses",
            {
                "code_module": "str",
                "code_presentation": "str",
                "module_presentation_length": "int",
            },
            required=(*key, "module_presentation_length"),
        ),
        "assessments": read_typed_csv(
            path("assessments"),
            "assessments",
            {
                "code_module": "str",
                "code_presentation": "str",
                "id_assessment": "str",
                "assessment_type": "str",
                "date": "int",
                "weight": "float",
            },
            required=(*key, "id_assessment"),
        ),
        "studentInfo": read_typed_csv(
            path("studentInfo"),
            "studentInfo",
            {
                "code_module": "str",
                "code_presentation": "str",
                "id_student": "str",
                "gender": "str",
                "highest_education": "str",
                "imd_band": "str",
                "age_band": "str",
                "num_of_prev_attempts": "int",
                "studied_credits": "int",
                "disability": "str",
                "final_result": "str",
            },
            required=(*key, "id_student", "final_result"),
        ),
        "studentRegistration": read_typed_csv(
            path("studentRegistration"),
            "studentRegistration",
            {
                "code_module": "str",
                "code_presentation": "str",
                "id_student": "str",
                "date_registration": "int",
                "date_unregistration": "int",
            },
            required=(*key, "id_student"),
        ),
        "studentAssessment": read_typed_csv(
            path("studentAssessment"),
            "studentAssessment",
            {
                "id_assessment": "str",
                "id_student": "str",
                "date_submitted": "int",
                "score": "float",
            },
            required=("id_assessment", "id_student", "date_submitted"),
        ),
    }
    unique_keys = {
        "courses": [*key],
        "assessments": ["id_assessment"],
        "studentInfo": [*key, "id_student"],
        "studentRegistration": [*key, "id_student"],
        "studentAssessment": ["id_assessment", "id_student"],
    }
    for name, unique in unique_keys.items():
        reject_duplicates(tables[name], unique, path(name), name)
    return tables


def _days_after(start: pd.Series, days: pd.Series) -> pd.Series:
    return start + pd.to_timedelta(days.astype("Float64").astype(float), unit="D")


def _units(courses: pd.DataFrame, origin: Path) -> pd.DataFrame:
    code = courses["code_presentation"]
    letter = code.str[-1]
    bad = ~code.str.fullmatch(r"\d{4}[BJ]")
    if bad.any():
        from sources.errors import InputDataError, Problem

        raise InputDataError(
            [
                Problem(
                    str(origin / FILES["courses"]),
                    "courses",
                    "code_presentation",
                    int(i) + 2,
                    code.iloc[i],
                    "a year and B or J, such as 2013J",
                )
                for i in bad.to_numpy().nonzero()[0]
            ]
        )
    start = pd.to_datetime(
        {"year": code.str[:4].astype(int), "month": letter.map(START_MONTH), "day": 1}
    )
    return pd.DataFrame(
        {
            "unit_id": courses["code_module"] + "-" + code,
            "cohort": code,
            "start_date": start,
            "end_date": _days_after(start, courses["module_presentation_length"]),
        }
    )


def load_oulad(data_dir: Path) -> InputTables:
    """Read the OULAD CSV files in ``data_dir`` and map them into the contract.

    Withdrawn registrations without an unregistration date cannot be placed in
    time, so they are left out and counted in the log.
    """
    logger.info("loading OULAD from %s", data_dir)
    raw = _read(data_dir)
    units = _units(raw["courses"], data_dir)

    reg = raw["studentInfo"].merge(
        raw["studentRegistration"],
        on=["code_module", "code_presentation", "id_student"],
        how="left",
        validate="one_to_one",
    )
    reg["unit_id"] = reg["code_module"] + "-" + reg["code_presentation"]
    reg = reg.merge(units, on="unit_id", how="inner", validate="many_to_one")
    reg["enrolment_id"] = reg["unit_id"] + "-" + reg["id_student"]

    undated = (reg["final_result"] == "Withdrawn") & reg["date_unregistration"].isna()
    if undated.any():
        logger.warning(
            "left out %d withdrawn registrations that have no unregistration date",
            int(undated.sum()),
        )
    reg = reg[~undated].reset_index(drop=True)

    registered = _days_after(reg["start_date"], reg["date_registration"])
    unregistered = _days_after(reg["start_date"], reg["date_unregistration"])
    enrolments = pd.DataFrame(
        {
            "enrolment_id": reg["enrolment_id"],
            "learner_id": reg["id_student"],
            "unit_id": reg["unit_id"],
            "start_date": registered.fillna(reg["start_date"]),
            "end_date": unregistered.fillna(reg["end_date"]),
            "end_reason": reg["final_result"].map(FINAL_RESULT_TO_END_REASON),
        }
    )

    # A student's age band and deprivation band can differ between presentations;
    # the learner table keeps the values of the latest presentation.
    latest = reg.sort_values("start_date").drop_duplicates("id_student", keep="last")
    learners = pd.DataFrame(
        {
            "learner_id": latest["id_student"],
            "gender": latest["gender"],
            "age_band": latest["age_band"],
            "disability": latest["disability"],
            # The file writes one band as "10-20" and the others with "%".
            "deprivation_band": latest["imd_band"].replace("10-20", "10-20%"),
        }
    )

    attributes = pd.DataFrame(
        {
            "enrolment_id": reg["enrolment_id"],
            "known_from": enrolments["start_date"],
            "module": reg["code_module"],
            "highest_education": reg["highest_education"],
            "prev_attempts": reg["num_of_prev_attempts"].astype(float),
            "studied_credits": reg["studied_credits"].astype(float),
        }
    )

    assessments = _assessments(raw, reg)
    return InputTables(
        learners=learners.reset_index(drop=True),
        units=units,
        enrolments=enrolments,
        attributes=attributes,
        assessments=assessments,
        origin=str(data_dir),
    )


def _assessments(raw: dict[str, pd.DataFrame], reg: pd.DataFrame) -> pd.DataFrame:
    """Build one event per enrolment and assessment of its presentation.

    Assessments that a student never submitted stay in the table with no
    submission date, because a missed assessment is itself a warning sign.
    Undated assessments (some final exams) are due on the last day.
    """
    planned = raw["assessments"].merge(
        reg[
            [
                "code_module",
                "code_presentation",
                "id_student",
                "enrolment_id",
                "start_date",
                "end_date",
            ]
        ],
        on=["code_module", "code_presentation"],
    )
    events = planned.merge(
        raw["studentAssessment"], on=["id_assessment", "id_student"], how="left"
    )
    due = _days_after(events["start_date"], events["date"]).fillna(events["end_date"])
    return pd.DataFrame(
        {
            "enrolment_id": events["enrolment_id"],
            "assessment_id": events["id_assessment"],
            "due_date": due,
            "submitted_date": _days_after(
                events["start_date"], events["date_submitted"]
            ),
            "score": events["score"].astype(float),
            "passed": (events["score"] >= PASS_MARK)
            .astype("boolean")
            .mask(events["score"].isna()),
            "weight": events["weight"].astype(float),
        }
    )
