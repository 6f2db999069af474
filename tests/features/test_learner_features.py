import pandas as pd
import pytest

from features.build import learner_features
from features.definitions import DerivedDef, FeatureDef, compile_sql
from sources.contract import InputTables, empty_table

ASOF = pd.Timestamp("2024-10-01")


def school_days(start: str, count: int) -> pd.DatetimeIndex:
    return pd.bdate_range(start, periods=count)


def tables(marks: list[tuple[str, str, str]], grades=(), states=()) -> InputTables:
    """Build contract tables for learner L with two enrolments (a school change)."""
    enrolments = pd.DataFrame(
        {
            "enrolment_id": ["e1", "e2"],
            "learner_id": ["L", "L"],
            "unit_id": ["u1", "u2"],
            "start_date": pd.to_datetime(["2024-08-01", "2024-09-16"]),
            "end_date": pd.to_datetime(["2024-09-13", None]),
            "end_reason": ["transferred", None],
        }
    )
    attendance = pd.DataFrame(
        {
            "enrolment_id": [m[0] for m in marks],
            "date": pd.to_datetime([m[1] for m in marks]),
            "mark": [m[2] for m in marks],
        }
    )
    assessments = pd.DataFrame(
        {
            "enrolment_id": [g[0] for g in grades],
            "assessment_id": [f"a{i}" for i in range(len(grades))],
            "due_date": pd.to_datetime([g[1] for g in grades]),
            "submitted_date": pd.to_datetime([g[1] for g in grades]),
            "score": [(g[3] - 4) / 6 * 100 for g in grades],
            "passed": [g[3] >= 5 for g in grades],
            "weight": 1.0,
            "subject": [g[2] for g in grades],
            "grade_token": [str(g[3]) for g in grades],
        }
    )
    return InputTables(
        learners=pd.DataFrame({"learner_id": ["L"]}),
        units=empty_table("units"),
        enrolments=enrolments,
        attributes=empty_table("attributes"),
        assessments=assessments if len(grades) else empty_table("assessments"),
        attendance=attendance,
        study_right_states=pd.DataFrame(
            list(states),
            columns=["learner_id", "study_right_id", "level", "state_from", "state"],
        ),
    )


def features(t: InputTables) -> pd.Series:
    keys = pd.DataFrame({"learner_id": ["L"], "asof_date": [ASOF]})
    frame, _ = learner_features(t, keys)
    return frame.iloc[0]


def test_streak_crosses_school_change():
    # Absent on the last two days at the first school and the first three at the
    # next: one streak of five recorded days.
    marks = [
        ("e1", "2024-09-11", "present"),
        ("e1", "2024-09-12", "unexcused"),
        ("e1", "2024-09-13", "excused"),
        ("e2", "2024-09-16", "unexcused"),
        ("e2", "2024-09-17", "unexcused"),
        ("e2", "2024-09-18", "unexcused"),
        ("e2", "2024-09-19", "present"),
    ]
    assert features(tables(marks))["absence_streak_year"] == 5


def test_recent_window_shares():
    marks = [
        ("e1", "2024-08-20", "unexcused"),
        ("e2", "2024-09-20", "present"),
        ("e2", "2024-09-25", "late"),
        ("e2", "2024-09-30", "unexcused"),
    ]
    row = features(tables(marks))
    assert row["absence_share_2w"] == pytest.approx(1 / 3)
    assert row["late_share_2w"] == pytest.approx(1 / 3)
    assert row["absence_share_year"] == pytest.approx(2 / 4)


def test_future_marks_ignored():
    marks = [("e2", "2024-09-30", "present"), ("e2", "2024-10-02", "unexcused")]
    assert features(tables(marks))["absence_share_year"] == 0


def test_absence_hours():
    marks = [
        ("e2", "2024-09-30", "unexcused"),
        ("e2", "2024-09-30", "unexcused"),
        ("e2", "2024-09-27", "excused"),
    ]
    row = features(tables(marks))
    assert row["absence_hours_year"] == pytest.approx(3 * 0.75)
    assert row["unexcused_hours_year"] == pytest.approx(2 * 0.75)


def test_slope_rises_with_absence():
    days = school_days("2024-08-12", 35)
    marks = [
        (
            "e1" if d < pd.Timestamp("2024-09-16") else "e2",
            str(d.date()),
            "unexcused" if i >= 20 else "present",
        )
        for i, d in enumerate(days)
    ]
    assert features(tables(marks))["absence_slope_8w"] > 0


def test_grade_change_between_terms():
    grades = [
        ("e1", "2024-05-31", "MA", 9),
        ("e1", "2024-05-31", "AI", 8),
        ("e2", "2024-09-30", "MA", 6),
        ("e2", "2024-09-30", "AI", 4),
    ]
    row = features(tables([("e2", "2024-09-30", "present")], grades))
    assert row["grade_mean_term"] == pytest.approx(5.0)
    assert row["grade_change_term"] == pytest.approx(-3.5)
    assert row["grades_failed_year"] == 1


def test_school_changes_counted():
    states = [
        ("L", "r1", "basic", pd.Timestamp("2018-08-01"), "present"),
        ("L", "r1", "basic", pd.Timestamp("2024-09-13"), "resigned"),
        ("L", "r2", "basic", pd.Timestamp("2024-09-16"), "present"),
    ]
    row = features(tables([("e2", "2024-09-30", "present")], states=states))
    assert row["school_changes_365d"] == 1


def test_unknown_window_rejected():
    with pytest.raises(ValueError, match="unknown window"):
        FeatureDef("x", "attendance", "fortnight", "share")


def test_compile_skips_missing_source():
    compiled = compile_sql(
        [
            FeatureDef("a", "attendance", "2w", "share", "TRUE"),
            FeatureDef("g", "grades", "year", "mean", value="e.grade"),
        ],
        {"attendance"},
    )
    assert compiled.names == ["a"]
    assert "src_grades" not in compiled.sql


def test_support_level_changes():
    t = tables([("e2", "2024-09-30", "present")])
    t.attributes = pd.DataFrame(
        {
            "enrolment_id": ["e1", "e2", "e2"],
            "known_from": pd.to_datetime(["2024-08-01", "2024-09-16", "2024-09-20"]),
            "support_level": [0.0, 0.0, 1.0],
        }
    )
    row = features(t)
    assert row["support_level_max_365d"] == 1
    assert row["support_level_changes_365d"] == 1


def test_derived_skips_function_names():
    names = compile_sql(
        [
            FeatureDef("a", "attendance", "2w", "count"),
            DerivedDef("b", "greatest(a - 1, 0)"),
        ],
        {"attendance"},
    ).names
    assert names == ["a", "b"]
