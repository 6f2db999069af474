import pandas as pd
import pytest
from school_fixtures import EXPORT, write_export

from features.build import (
    LABEL,
    asof_points_by_date,
    asof_points_by_offset,
    build_features,
    data_end,
)
from features.labels import LabelRule
from sources.errors import InputDataError
from sources.school.mapping import to_input_tables
from sources.school.records import load_day, read_records


@pytest.fixture
def tables(export_dir):
    return to_input_tables(read_records(export_dir)).validated()


def test_units_are_school_years(tables):
    unit = tables.units.set_index("unit_id").loc["s1/2024"]
    assert unit["start_date"] == pd.Timestamp("2024-08-01")
    assert unit["end_date"] == pd.Timestamp("2025-07-31")


def test_enrolments_start_with_data(tables):
    # The study right began in 2018, but the first mark is from school year 2024.
    years = tables.enrolments.loc[tables.enrolments["learner_id"] == "p1", "unit_id"]
    assert years.tolist() == ["s1/2024"]


def test_resignation_ends_enrolment(tables):
    last = tables.enrolments.set_index("enrolment_id").loc["r2/2024"]
    assert last["end_date"] == pd.Timestamp("2025-02-15")
    assert last["end_reason"] == "withdrawn"


def test_grade_scores(tables):
    scores = tables.assessments.set_index("grade_token")["score"]
    assert scores["8+"] == pytest.approx((8.25 - 4) / 6 * 100)
    assert pd.isna(scores["S"])


def test_support_level_attribute(tables):
    support = tables.attributes[tables.attributes["enrolment_id"] == "r2/2024"]
    assert support["support_level"].tolist() == [0.0, 1.0]


def test_labels_from_states(tables):
    # The window and gap after 2024-10-01 end on 2025-04-29, before the last
    # record on 2025-05-30, so both labels are known.
    points = asof_points_by_date(tables.units, [pd.Timestamp("2024-10-01")])
    frame = build_features(
        tables, points, LabelRule(window_days=150, transfer_gap_days=60)
    )
    labels = frame.data.set_index("learner_id")[LABEL]
    assert labels["p2"] == 1
    assert labels["p1"] == 0
    assert frame.rows_past_data_end == 0


def test_window_past_data_end_left_out(tables):
    points = asof_points_by_date(tables.units, [pd.Timestamp("2024-10-01")])
    frame = build_features(
        tables, points, LabelRule(window_days=365, transfer_gap_days=60)
    )
    assert frame.data.empty
    assert frame.rows_past_data_end == 2
    assert frame.data_end == pd.Timestamp("2025-05-30")


def only_problem(tmp_path, table: str, line: str):
    """Write the export with ``line`` added to ``table``; return the folder and
    the one problem that reading it reports."""
    broken = {k: list(v) for k, v in EXPORT.items()}
    broken[table].append(line)
    folder = write_export(tmp_path / "e", broken)
    with pytest.raises(InputDataError) as raised:
        read_records(folder)
    (problem,) = raised.value.problems
    return folder, problem


def test_mark_outside_study_right(tmp_path):
    folder, problem = only_problem(
        tmp_path, "attendance_marks", "p1;s2;03.09.2024 08:15;1;MA;P;teacher;"
    )
    assert problem.file == str(folder / "attendance_marks.csv")
    assert problem.column == "lesson_start"
    assert problem.row == 7
    text = str(problem)
    assert "value '03.09.2024 08:15' is invalid" in text
    assert "within one of the pupil's study rights" in text
    assert "The mark of pupil 'p1' at school 's2' on 03.09.2024 in subject 'MA'" in text


def test_grade_outside_study_right(tmp_path):
    folder, problem = only_problem(tmp_path, "grades", "p1;s2;20.12.2024;AI;7")
    assert problem.file == str(folder / "grades.csv")
    assert problem.table == "grades"
    assert problem.row == 7
    assert "The grade of pupil 'p1' at school 's2' on 20.12.2024" in str(problem)


def test_grade_after_resignation_reported(tmp_path):
    # r2 ends on 15.02.2025, and p2 has no other study right at s1.
    _, problem = only_problem(tmp_path, "grades", "p2;s1;30.05.2025;MA;7")
    assert problem.row == 7
    assert "The grade of pupil 'p2' at school 's1' on 30.05.2025" in str(problem)


def test_mapping_rejects_records_outside_rights(export_dir):
    # Records built without read_records's checks, here by moving a mark to
    # a school where the pupil has no study right.
    records = read_records(export_dir)
    marks = records.attendance_marks
    marks["school_id"] = marks["school_id"].cat.add_categories("s2")
    marks.loc[0, "school_id"] = "s2"
    with pytest.raises(ValueError, match="1 marks and 0 grades lie outside"):
        to_input_tables(records)
    tables = to_input_tables(records, strict=False)
    assert len(tables.attendance) == len(marks) - 1


@pytest.mark.parametrize("start_after_load", [True, False])
def test_stateless_late_right_keeps_data_end(tmp_path, start_after_load):
    # A right without states whose start lies after the last mark, grade and
    # state: ahead of the load (a pupil admitted for next year) or between the
    # last activity and the load. Its start must not become the data end.
    last_mark = load_day() - pd.Timedelta(days=200)
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{last_mark:%d.%m.%Y} 08:15;1;MA;P;teacher;",
    ]
    start = (
        load_day() + pd.Timedelta(days=60)
        if start_after_load
        else last_mark + pd.Timedelta(days=30)
    )
    rights = [*EXPORT["study_rights"], f"r3;p1;s2;{start:%d.%m.%Y}"]
    without = EXPORT | {"attendance_marks": marks}
    with_right = without | {"study_rights": rights}
    plain = to_input_tables(read_records(write_export(tmp_path / "a", without)))
    late = to_input_tables(read_records(write_export(tmp_path / "b", with_right)))
    plain, late = plain.validated(), late.validated()

    assert data_end(late) == last_mark
    assert not late.enrolments["enrolment_id"].str.startswith("r3/").any()
    points = asof_points_by_offset(late.units, [30, 90, 150, 210, 270])
    rule = LabelRule(window_days=30, transfer_gap_days=0)
    frame = build_features(late, points, rule)
    expected = build_features(plain, points, rule)
    assert frame.data_end == last_mark
    assert frame.rows_past_data_end == expected.rows_past_data_end
    assert frame.rows_past_data_end > 0
    assert (frame.data["asof_date"] + pd.Timedelta(days=30) <= last_mark).all()
    pd.testing.assert_frame_equal(frame.data, expected.data)
