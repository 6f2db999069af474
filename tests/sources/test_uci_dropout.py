import re
from pathlib import Path

import pandas as pd
import pytest

import ajoissa
from features.build import LABEL, asof_points_by_offset, build_features
from sources.contract import SENSITIVE_ATTRIBUTES
from sources.errors import InputDataError
from sources.uci_dropout import (
    DERIVED_ATTRIBUTES,
    SEMESTER_ATTRIBUTES,
    SNAPSHOT_OFFSET_DAYS,
    SNAPSHOT_START,
    load_uci_dropout,
)

DATA = Path(ajoissa.__file__).parent / "data" / "uci-dropout-academic-success"
CSV = DATA / "data.csv"


@pytest.fixture(scope="module")
def tables():
    return load_uci_dropout(CSV).validated()


def write_copy(
    tmp_path: Path,
    edits: dict[tuple[int, str], str] | None = None,
    drop: str | None = None,
    rows: int = 20,
    bom: bool = True,
) -> Path:
    """Write the header and the first ``rows`` data rows of the shipped file.

    ``edits`` maps (1-based data row, column name) to a new cell text.
    """
    lines = CSV.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(";")
    names = [name.strip('"').strip() for name in header]
    records = [line.split(";") for line in lines[1 : rows + 1]]
    for (row, column), text in (edits or {}).items():
        records[row - 1][names.index(column)] = text
    if drop is not None:
        position = names.index(drop)
        header.pop(position)
        for record in records:
            record.pop(position)
    out = tmp_path / "data.csv"
    body = "\r\n".join(";".join(fields) for fields in [header, *records]) + "\r\n"
    out.write_text(body, encoding="utf-8-sig" if bom else "utf-8", newline="")
    return out


def test_row_counts(tables):
    assert len(tables.learners) == 4424
    assert len(tables.enrolments) == 4424
    assert len(tables.attributes) == 4424
    assert len(tables.units) == 17
    assert len(tables.assessments) == 0
    assert len(tables.attendance) == 0


def test_end_reasons(tables):
    reasons = tables.enrolments["end_reason"].value_counts(dropna=False)
    assert reasons["withdrawn"] == 1421
    assert reasons["completed"] == 2209
    assert tables.enrolments["end_reason"].isna().sum() == 794
    assert tables.enrolments["end_date"].isna().sum() == 794


def test_sensitive_counts(tables):
    gender = tables.learners["gender"].value_counts()
    assert gender["M"] == 1556
    assert gender["F"] == 2868
    assert (tables.learners["disability"] == "Y").sum() == 51
    assert set(tables.learners["age_band"]) == {"17-20", "21-25", "26-35", "36+"}


def test_ids(tables):
    first = tables.enrolments.iloc[0]
    assert first["learner_id"] == "uci-1"
    assert first["unit_id"] == "uci-course-171"
    assert tables.units["cohort"].unique().tolist() == ["snapshot"]


def test_attributes_not_sensitive(tables):
    columns = set(tables.attributes.columns)
    assert not columns & set(SENSITIVE_ATTRIBUTES)
    assert not [c for c in columns if "age" in c.split("_") or "gender" in c]
    assert "educational_special_needs" not in columns
    assert (tables.attributes["known_from"] == SNAPSHOT_START).all()


def test_semester_attributes_present(tables):
    for name, _ in SEMESTER_ATTRIBUTES.values():
        assert name in tables.attributes.columns


def test_derived_attributes(tables):
    attributes = tables.attributes
    for name in DERIVED_ATTRIBUTES:
        assert name in attributes.columns
    first = attributes["curricular_units_1st_sem_approved_share"]
    second = attributes["curricular_units_2nd_sem_approved_share"]
    enrolled = attributes["curricular_units_1st_sem_enrolled"]
    approved = attributes["curricular_units_1st_sem_approved"]
    assert first.isna().equals(enrolled == 0)
    assert (
        first[enrolled > 0] == approved[enrolled > 0] / enrolled[enrolled > 0]
    ).all()
    assert first.dropna().between(0, 1).all()
    change = attributes["curricular_units_approved_share_change"]
    assert change.dropna().equals((second - first).dropna())


def test_derived_from_edited_row(tmp_path):
    edits = {
        (1, "Curricular units 1st sem (enrolled)"): "6",
        (1, "Curricular units 1st sem (approved)"): "3",
        (1, "Curricular units 1st sem (grade)"): "12.5",
        (1, "Curricular units 2nd sem (enrolled)"): "5",
        (1, "Curricular units 2nd sem (approved)"): "5",
        (1, "Curricular units 2nd sem (grade)"): "14.0",
        (2, "Curricular units 1st sem (enrolled)"): "0",
        (2, "Curricular units 1st sem (approved)"): "0",
    }
    attributes = load_uci_dropout(write_copy(tmp_path, edits)).attributes
    row = attributes.iloc[0]
    assert row["curricular_units_1st_sem_approved_share"] == 0.5
    assert row["curricular_units_2nd_sem_approved_share"] == 1.0
    assert row["curricular_units_approved_share_change"] == 0.5
    assert row["curricular_units_grade_change"] == 1.5
    second = attributes.iloc[1]
    assert pd.isna(second["curricular_units_1st_sem_approved_share"])
    assert pd.isna(second["curricular_units_approved_share_change"])


def test_features_snapshot(tables):
    points = asof_points_by_offset(tables.units, [SNAPSHOT_OFFSET_DAYS])
    frame = build_features(tables, points)
    assert len(frame.data) == 4424
    assert frame.data[LABEL].sum() == 1421
    assert frame.data[LABEL].mean() == pytest.approx(1421 / 4424)
    assert "attr_course" in frame.categorical
    assert "attr_nationality" in frame.categorical
    assert "attr_admission_grade" not in frame.categorical
    assert "attr_debtor" in frame.feature_names


def test_copy_without_bom(tmp_path):
    loaded = load_uci_dropout(write_copy(tmp_path, bom=False)).validated()
    assert len(loaded.enrolments) == 20
    assert loaded.attributes["marital_status"].iloc[0] == "1"


def test_age_bands(tmp_path):
    ages = {1: "16", 2: "17", 3: "20", 4: "21", 5: "25", 6: "26", 7: "35", 8: "36"}
    path = write_copy(
        tmp_path, {(row, "Age at enrollment"): age for row, age in ages.items()}
    )
    bands = load_uci_dropout(path).learners["age_band"].tolist()[:8]
    assert bands == [
        "under 17",
        "17-20",
        "17-20",
        "21-25",
        "21-25",
        "26-35",
        "26-35",
        "36+",
    ]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(InputDataError, match=re.escape(str(path))):
        load_uci_dropout(path)


def test_missing_column(tmp_path):
    path = write_copy(tmp_path, drop="Admission grade")
    with pytest.raises(InputDataError) as caught:
        load_uci_dropout(path)
    message = str(caught.value)
    assert str(path) in message
    assert "column 'Admission grade', row 1" in message
    assert "expected this column in the header" in message


def test_unparseable_number(tmp_path):
    path = write_copy(tmp_path, {(3, "Admission grade"): "12,5"})
    expected = (
        f"{path}: table 'uci_dropout', column 'Admission grade', row 4: "
        "value '12,5' is invalid; expected a number"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        load_uci_dropout(path)


def test_fractional_code(tmp_path):
    path = write_copy(tmp_path, {(2, "Course"): "9500.5"})
    with pytest.raises(
        InputDataError, match=r"column 'Course', row 3: value '9500\.5'"
    ):
        load_uci_dropout(path)


def test_empty_value(tmp_path):
    path = write_copy(tmp_path, {(5, "GDP"): ""})
    with pytest.raises(InputDataError, match=r"column 'GDP', row 6: .*non-empty"):
        load_uci_dropout(path)


def test_unknown_target(tmp_path):
    path = write_copy(tmp_path, {(1, "Target"): "Transferred"})
    with pytest.raises(
        InputDataError, match=r"column 'Target', row 2: value 'Transferred'"
    ):
        load_uci_dropout(path)


def test_unknown_gender_code(tmp_path):
    path = write_copy(tmp_path, {(7, "Gender"): "2"})
    with pytest.raises(InputDataError, match=r"column 'Gender', row 8: value 2\b"):
        load_uci_dropout(path)
