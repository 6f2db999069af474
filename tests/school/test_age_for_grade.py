"""Age for grade from hand-made pupils, read from an export with grade levels."""

import numpy as np
import pandas as pd
import pytest
from school_fixtures import write_export

from features.build import learner_features
from sources.errors import InputDataError
from sources.school.mapping import to_input_tables
from sources.school.records import read_records

OCTOBER = pd.Timestamp("2023-10-01")

# pupil, birth year, birth month, school, grade rows as (start, grade level)
PUPILS = [
    ("march", 2010, 3, "s1", [("15.08.2023", 7)]),
    ("held_back", 2009, 12, "s1", [("15.08.2023", 7)]),
    ("early", 2011, 1, "s1", [("15.08.2023", 7)]),
    ("upper", 2007, 5, "s2", [("15.08.2023", 1)]),
    ("moved_up", 2010, 6, "s1", [("15.08.2023", 7), ("08.01.2024", 8)]),
    ("no_grade", 2010, 6, "s1", []),
]


def export(grade_rows: list[str] | None = None) -> dict[str, list[str]]:
    tables = {
        "pupils": [
            "pupil_id;birth_year;birth_month;gender;mother_tongue;home_municipality"
        ],
        "schools": [
            "school_id;name;municipality;level",
            "s1;Alppilan koulu;;basic",
            "s2;Kallion lukio;;general_upper_secondary",
        ],
        "study_rights": ["study_right_id;pupil_id;school_id;start_date"],
        "study_right_states": ["study_right_id;state_from;state"],
        "attendance_marks": [
            "pupil_id;school_id;lesson_start;lesson;subject;mark_code;recorded_by;recorded_at"
        ],
        "grades": ["pupil_id;school_id;date;subject;grade"],
        "support_decisions": ["pupil_id;start_date;end_date;level"],
        "grade_levels": ["study_right_id;start_date;grade_level"],
    }
    for pupil, year, month, school, grades in PUPILS:
        tables["pupils"].append(f"{pupil};{year};{month};;;")
        tables["study_rights"].append(f"r_{pupil};{pupil};{school};01.08.2017")
        tables["study_right_states"].append(f"r_{pupil};01.08.2017;present")
        tables["attendance_marks"].append(
            f"{pupil};{school};04.09.2023 08:15;1;;P;teacher;"
        )
        tables["grade_levels"] += [f"r_{pupil};{day};{g}" for day, g in grades]
    if grade_rows is not None:
        tables["grade_levels"] = tables["grade_levels"][:1] + grade_rows
    return tables


@pytest.fixture(scope="module")
def ages(tmp_path_factory) -> pd.Series:
    folder = write_export(tmp_path_factory.mktemp("grades") / "export", export())
    tables = to_input_tables(read_records(folder)).validated()
    dates = [OCTOBER, pd.Timestamp("2024-02-01"), pd.Timestamp("2024-10-01")]
    keys = pd.DataFrame(
        [(p[0], d) for p in PUPILS for d in dates], columns=["learner_id", "asof_date"]
    )
    features, names = learner_features(tables, keys)
    assert "age_for_grade_months" in names
    return features.set_index(["learner_id", "asof_date"])["age_for_grade_months"]


def test_on_track_pupil(ages):
    # Expected birth year for grade 7 in school year 2023: 2023 - 6 - 7 = 2010.
    assert ages[("march", OCTOBER)] == 9


def test_held_back_pupil(ages):
    assert ages[("held_back", OCTOBER)] == 12


def test_early_starter_negative(ages):
    assert ages[("early", OCTOBER)] == -1


def test_upper_secondary_year(ages):
    # Year 1 of upper secondary counts as grade 10: expected birth year 2007.
    assert ages[("upper", OCTOBER)] == 7


def test_grade_change_midyear(ages):
    assert ages[("moved_up", OCTOBER)] == 6
    assert ages[("moved_up", pd.Timestamp("2024-02-01"))] == -6


def test_not_carried_into_next_year(ages):
    assert np.isnan(ages[("march", pd.Timestamp("2024-10-01"))])


def test_missing_without_grade(ages):
    assert np.isnan(ages[("no_grade", OCTOBER)])


def test_grade_level_out_of_range(tmp_path):
    folder = write_export(tmp_path / "export", export(["r_march;15.08.2023;10"]))
    with pytest.raises(InputDataError, match="grade_level.*whole number from 1 to 9"):
        read_records(folder)


def test_unknown_study_right(tmp_path):
    folder = write_export(tmp_path / "export", export(["r_nobody;15.08.2023;7"]))
    with pytest.raises(InputDataError, match="study_right_id.*listed in study_rights"):
        read_records(folder)
