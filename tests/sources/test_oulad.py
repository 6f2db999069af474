import re
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

import ajoissa
from features.build import LABEL, asof_points_by_offset, build_features
from sources.contract import InputTables
from sources.errors import InputDataError
from sources.oulad import load_oulad

DATA = Path(ajoissa.__file__).parent / "data" / "oulad"
UNIT = "AAA-2013J"
OFFSET = 60
"""As-of offset in days used by the point-in-time tests."""


@pytest.fixture(scope="module")
def tables() -> InputTables:
    return load_oulad(DATA).validated()


@pytest.fixture(scope="module")
def asof(tables) -> pd.Timestamp:
    units = tables.units.set_index("unit_id")
    return units.loc[UNIT, "start_date"] + pd.Timedelta(days=OFFSET)


@pytest.fixture(scope="module")
def picked(tables, asof) -> dict[str, str]:
    """Pick one enrolment of ``UNIT`` for each case that the as-of date separates."""
    e = tables.enrolments[tables.enrolments["unit_id"] == UNIT]
    withdrawn = e["end_reason"] == "withdrawn"
    cases = {
        "completed": e[e["end_reason"] == "completed"],
        "failed": e[e["end_reason"] == "failed"],
        "withdrawn_later": e[withdrawn & (e["end_date"] > asof)],
        "withdrawn_before": e[
            withdrawn & (e["end_date"] < asof) & (e["start_date"] <= asof)
        ],
    }
    return {case: rows["enrolment_id"].iloc[0] for case, rows in cases.items()}


@pytest.fixture(scope="module")
def small(tables, picked) -> InputTables:
    """Return the contract tables restricted to the picked enrolments."""
    ids = list(picked.values())

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["enrolment_id"].isin(ids)].reset_index(drop=True)

    enrolments = keep(tables.enrolments)
    learners = tables.learners[
        tables.learners["learner_id"].isin(enrolments["learner_id"])
    ]
    units = tables.units[tables.units["unit_id"].isin(enrolments["unit_id"])]
    return InputTables(
        learners=learners.reset_index(drop=True),
        units=units.reset_index(drop=True),
        enrolments=enrolments,
        attributes=keep(tables.attributes),
        assessments=keep(tables.assessments),
        origin=tables.origin,
    ).validated()


def features_at_offset(tables: InputTables) -> pd.DataFrame:
    return build_features(tables, asof_points_by_offset(tables.units, [OFFSET])).data


def with_submission(
    tables: InputTables,
    enrolment_id: str,
    submitted: pd.Timestamp,
    score: float,
) -> InputTables:
    """Return ``tables`` plus one graded submission, due on the day it was made."""
    event = pd.DataFrame(
        {
            "enrolment_id": [enrolment_id],
            "assessment_id": ["added-by-test"],
            "due_date": [submitted],
            "submitted_date": [submitted],
            "score": [score],
            "passed": [score >= 40],
            "weight": [10.0],
        }
    )
    assessments = pd.concat([tables.assessments, event], ignore_index=True)
    return replace(tables, assessments=assessments).validated()


def copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "oulad"
    shutil.copytree(DATA, target)
    return target


# Loader on the shipped data


def test_row_counts(tables):
    assert len(tables.units) == 22
    assert len(tables.enrolments) == 32593 - 93
    assert len(tables.learners) == 28717
    assert len(tables.attributes) == len(tables.enrolments)
    assert len(tables.assessments) == 323034


def test_end_reasons(tables):
    reasons = tables.enrolments["end_reason"].value_counts(dropna=False)
    assert reasons["withdrawn"] == 10156 - 93
    assert reasons["failed"] == 7052
    assert reasons["completed"] == 12361 + 3024
    assert tables.enrolments["end_reason"].notna().all()


def test_withdrawals_dated(tables):
    withdrawn = tables.enrolments[tables.enrolments["end_reason"] == "withdrawn"]
    assert withdrawn["end_date"].notna().all()


def test_sensitive_only_in_learners(tables):
    assert "imd_band" not in tables.attributes.columns
    assert "deprivation_band" in tables.learners.columns
    assert (tables.learners["gender"].isin(["M", "F"])).all()


# Errors on edited copies


def test_deprivation_bands_written_alike(tables):
    bands = set(tables.learners["deprivation_band"].dropna())
    assert "10-20%" in bands
    assert all(band.endswith("%") for band in bands)


def test_missing_file(tmp_path):
    data = copy_data(tmp_path)
    (data / "courses.csv").unlink()
    expected = f"{data / 'courses.csv'}: table 'courses': file not found"
    with pytest.raises(InputDataError, match=re.escape(expected)):
        load_oulad(data)


def test_missing_column(tmp_path):
    data = copy_data(tmp_path)
    courses = pd.read_csv(data / "courses.csv", dtype=str)
    courses.drop(columns="module_presentation_length").to_csv(
        data / "courses.csv", index=False
    )
    expected = (
        f"{data / 'courses.csv'}: table 'courses', "
        "column 'module_presentation_length', row 1"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        load_oulad(data)


def test_unparseable_number(tmp_path):
    data = copy_data(tmp_path)
    path = data / "assessments.csv"
    lines = path.read_bytes().split(b"\r\n")
    assert lines[3] == b'"AAA","2013J","1754","TMA","117","20"'
    lines[3] = b'"AAA","2013J","1754","TMA","117","twenty"'
    path.write_bytes(b"\r\n".join(lines))
    expected = (
        f"{path}: table 'assessments', column 'weight', row 4: "
        "value 'twenty' is invalid; expected a number"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        load_oulad(data)


def test_fractional_day(tmp_path):
    data = copy_data(tmp_path)
    path = data / "assessments.csv"
    lines = path.read_bytes().split(b"\r\n")
    lines[2] = b'"AAA","2013J","1753","TMA","54.5","20"'
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(
        InputDataError, match=r"column 'date', row 3: value '54\.5' .*an integer"
    ):
        load_oulad(data)


# Point in time


def test_picked_cases(picked):
    assert len(set(picked.values())) == 4


def test_ended_before_asof_no_row(small, picked):
    rows = features_at_offset(small)
    assert picked["withdrawn_before"] not in set(rows["enrolment_id"])
    assert len(rows) == 3


def test_label_withdrawn_later_only(small, picked):
    rows = features_at_offset(small).set_index("enrolment_id")
    assert rows.loc[picked["withdrawn_later"], LABEL] == 1
    assert rows.loc[picked["completed"], LABEL] == 0
    assert rows.loc[picked["failed"], LABEL] == 0


def test_submission_after_asof_ignored(small, picked, asof):
    before = features_at_offset(small)
    later = with_submission(
        small, picked["withdrawn_later"], asof + pd.Timedelta(days=1), 5.0
    )
    pd.testing.assert_frame_equal(features_at_offset(later), before)


def test_score_after_asof_ignored(small, picked, asof):
    before = features_at_offset(small)
    assessments = small.assessments.copy()
    future = (assessments["enrolment_id"] == picked["completed"]) & (
        assessments["due_date"] > asof
    )
    assert future.any()
    assessments.loc[future, "submitted_date"] = asof + pd.Timedelta(days=1)
    assessments.loc[future, "score"] = 0.0
    assessments.loc[future, "passed"] = False
    edited = replace(small, assessments=assessments).validated()
    pd.testing.assert_frame_equal(features_at_offset(edited), before)


def test_submission_on_asof_counts(small, picked, asof):
    enrolment = picked["withdrawn_later"]
    before = features_at_offset(small).set_index("enrolment_id").loc[enrolment]
    on_day = with_submission(small, enrolment, asof, 5.0)
    after = features_at_offset(on_day).set_index("enrolment_id").loc[enrolment]
    assert after["assessments_submitted"] == before["assessments_submitted"] + 1
    assert after["assessments_failed"] == before["assessments_failed"] + 1
    assert after["min_score"] == 5.0
    assert after["days_since_last_submission"] == 0


def test_submission_before_asof_counts(small, picked, asof):
    enrolment = picked["completed"]
    before = features_at_offset(small).set_index("enrolment_id").loc[enrolment]
    earlier = with_submission(small, enrolment, asof - pd.Timedelta(days=3), 5.0)
    after = features_at_offset(earlier).set_index("enrolment_id").loc[enrolment]
    assert after["assessments_submitted"] == before["assessments_submitted"] + 1
    assert after["assessments_due"] == before["assessments_due"] + 1
    assert after["min_score"] == 5.0
    assert after["days_since_last_submission"] == 3


@pytest.mark.parametrize("order", [["zz-a", "zz-b"], ["zz-b", "zz-a"]])
def test_same_day_last_score_by_assessment_id(small, picked, asof, order):
    enrolment = picked["withdrawn_later"]
    scores = {"zz-a": 90.0, "zz-b": 10.0}
    events = pd.DataFrame(
        {
            "enrolment_id": [enrolment] * 2,
            "assessment_id": order,
            "due_date": [asof] * 2,
            "submitted_date": [asof] * 2,
            "score": [scores[i] for i in order],
            "passed": [scores[i] >= 40 for i in order],
            "weight": [10.0] * 2,
        }
    )
    assessments = pd.concat([small.assessments, events], ignore_index=True)
    tables = replace(small, assessments=assessments).validated()
    row = features_at_offset(tables).set_index("enrolment_id").loc[enrolment]
    # The later assessment id of the day wins, whatever the row order.
    assert row["last_score"] == 10.0
