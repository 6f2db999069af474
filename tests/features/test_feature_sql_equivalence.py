"""The compiled feature SQL gives the same features as the row-by-row reference."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from reference_feature_sql import compile_reference_sql

from features.definitions import (
    ABSENT,
    LEARNER_FEATURES,
    DerivedDef,
    FeatureDef,
    compile_sql,
)

ALL_SOURCES = {"attendance", "grades", "study_rights", "support"}
MARKS = ("present", "late", "excused", "unexcused")
SUBJECTS = ("AI", "MA", "EN", "RU", "BI", "HI", "KE", "LI")


def run(sql: str, tables: dict[str, pd.DataFrame], keys: pd.DataFrame, finish=None):
    with duckdb.connect() as con:
        for name, frame in tables.items():
            con.register(name, frame)
        con.register("asof_keys", keys)
        frame = con.execute(sql).df()
    if finish is not None:
        frame = finish(frame)
    return frame.set_index(["learner_id", "asof_date"]).sort_index()


def both(tables, keys, features=LEARNER_FEATURES, sources=ALL_SOURCES):
    compiled = compile_sql(features, sources)
    old_sql, old_names = compile_reference_sql(features, sources)
    assert compiled.names == old_names
    new = run(compiled.sql, tables, keys, compiled.finish)
    return new, run(old_sql, tables, keys), compiled.names


def assert_same(new: pd.DataFrame, old: pd.DataFrame, names: list[str]) -> None:
    assert list(new.index) == list(old.index)
    for name in names:
        np.testing.assert_allclose(
            new[name].to_numpy(float),
            old[name].to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
            equal_nan=True,
            err_msg=name,
        )


def contract(enrolments, marks, grades=(), states=(), support=()):
    """Build the contract tables the feature SQL reads from tuples."""
    return {
        "enrolments": pd.DataFrame(enrolments, columns=["enrolment_id", "learner_id"]),
        "attendance": pd.DataFrame(
            [(e, pd.Timestamp(d), m) for e, d, m in marks],
            columns=["enrolment_id", "date", "mark"],
        ),
        "assessments": pd.DataFrame(
            [
                (e, pd.Timestamp(d), s, (g - 4) / 6 * 100, g >= 5)
                for e, d, s, g in grades
            ],
            columns=["enrolment_id", "submitted_date", "subject", "score", "passed"],
        ),
        "study_right_states": pd.DataFrame(
            [(lr, r, pd.Timestamp(d)) for lr, r, d in states],
            columns=["learner_id", "study_right_id", "state_from"],
        ),
        "attributes": pd.DataFrame(
            [(e, pd.Timestamp(d), level) for e, d, level in support],
            columns=["enrolment_id", "known_from", "attr_support_level"],
        ),
    }


def keys(learners, dates):
    return pd.DataFrame(
        [(lr, pd.Timestamp(d)) for lr in learners for d in dates],
        columns=["learner_id", "asof_date"],
    )


def test_hand_made_records():
    # L changes school on 13 September and has marks at both schools that day;
    # M has no records at all.
    marks = [
        ("e1", "2024-09-11", "present"),
        ("e1", "2024-09-12", "unexcused"),
        ("e1", "2024-09-12", "excused"),
        ("e1", "2024-09-13", "excused"),
        ("e2", "2024-09-13", "unexcused"),
        ("e2", "2024-09-16", "unexcused"),
        ("e2", "2024-09-17", "late"),
        ("e2", "2024-09-17", "unexcused"),
        ("e2", "2024-09-18", "present"),
        ("e2", "2024-12-19", "excused"),
        ("e2", "2025-01-08", "unexcused"),
    ]
    grades = [
        ("e1", "2024-05-31", "MA", 9),
        ("e1", "2024-05-31", "AI", 8),
        ("e2", "2024-12-20", "MA", 4),
        ("e2", "2024-12-20", "HI", 7),
    ]
    states = [
        ("L", "r1", "2018-08-01"),
        ("L", "r1", "2024-09-13"),
        ("L", "r2", "2024-09-13"),
    ]
    support = [("e1", "2024-08-01", 0.0), ("e2", "2024-10-01", 2.0)]
    tables = contract(
        [("e1", "L"), ("e2", "L"), ("e3", "M")], marks, grades, states, support
    )
    new, old, names = both(
        tables, keys(["L", "M"], ["2024-09-17", "2024-12-20", "2025-02-03"])
    )
    assert_same(new, old, names)


def test_streak_hand_made():
    marks = [
        ("e1", "2024-09-12", "unexcused"),
        ("e1", "2024-09-13", "excused"),
        ("e2", "2024-09-13", "unexcused"),
        ("e2", "2024-09-16", "unexcused"),
        ("e2", "2024-09-17", "present"),
    ]
    tables = contract([("e1", "L"), ("e2", "L")], marks)
    new, _, _ = both(tables, keys(["L"], ["2024-09-20"]))
    assert new["absence_streak_year"].iloc[0] == 3


def test_streak_ends_at_day_with_presence():
    # A day with one absent and one present mark is not an absent day.
    marks = [
        ("e1", "2024-09-12", "unexcused"),
        ("e1", "2024-09-13", "unexcused"),
        ("e1", "2024-09-13", "present"),
        ("e1", "2024-09-16", "unexcused"),
    ]
    tables = contract([("e1", "L")], marks)
    new, old, names = both(tables, keys(["L"], ["2024-09-20"]))
    assert new["absence_streak_year"].iloc[0] == 1
    assert_same(new, old, names)


def test_streak_clipped_by_window_start():
    # Absent from 30 July across the school-year start on 1 August.
    marks = [("e1", d, "excused") for d in ("2024-07-30", "2024-07-31")]
    marks += [("e1", d, "excused") for d in ("2024-08-01", "2024-08-02")]
    tables = contract([("e1", "L")], marks)
    new, old, names = both(tables, keys(["L"], ["2024-08-05"]))
    assert new["absence_streak_year"].iloc[0] == 2
    assert_same(new, old, names)


def test_slope_of_single_day_is_missing():
    marks = [("e1", "2024-09-30", "present"), ("e1", "2024-09-30", "unexcused")]
    tables = contract([("e1", "L")], marks)
    new, old, names = both(tables, keys(["L"], ["2024-10-01"]))
    assert np.isnan(new["absence_slope_8w"].iloc[0])
    assert_same(new, old, names)


def synthetic(seed: int, learners: int = 60) -> dict[str, pd.DataFrame]:
    """Random records: marks on school days, school changes, grades, support."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-08", "2025-05-30")
    enrolments, marks, grades, states, support = [], [], [], [], []
    for i in range(learners):
        learner = f"L{i}"
        change = days[rng.integers(0, len(days))] if rng.random() < 0.4 else None
        first, second = f"{learner}a", f"{learner}b"
        enrolments += [(first, learner), (second, learner)]
        absence = rng.uniform(0.0, 0.4)
        for day in days:
            if rng.random() < 0.05:
                continue  # a day without marks, which streaks skip
            enrolment = first if change is None or day < change else second
            lessons = rng.integers(1, 5)
            if rng.random() < absence / 3:  # a sick day: absent from every lesson
                drawn = ["excused"] * lessons
            else:
                p = [0.95 - absence, 0.05, absence * 0.7, absence * 0.3]
                drawn = rng.choice(MARKS, size=lessons, p=p)
            marks += [(enrolment, day, str(mark)) for mark in drawn]
            if change is not None and day == change:
                marks.append((first, day, "unexcused"))  # both schools mark that day
        for term_end in ("2024-05-31", "2024-12-20", "2025-05-30"):
            for subject in rng.choice(SUBJECTS, size=rng.integers(2, 6), replace=False):
                grades.append((first, term_end, str(subject), int(rng.integers(4, 11))))
        states.append((learner, "r1", "2018-08-01"))
        if change is not None:
            states.append((learner, "r2", change))
        for day in rng.choice(days, size=rng.integers(0, 3)):
            support.append((first, day, float(rng.integers(0, 3))))
    return contract(enrolments, marks, grades, states, support)


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_records(seed):
    tables = synthetic(seed)
    dates = ["2024-03-15", "2024-09-30", "2024-12-31", "2025-02-03", "2025-06-01"]
    new, old, names = both(tables, keys([f"L{i}" for i in range(60)], dates))
    assert_same(new, old, names)


def test_attendance_only_sources():
    tables = synthetic(3, learners=20)
    new, old, names = both(
        tables,
        keys([f"L{i}" for i in range(20)], ["2025-02-03"]),
        sources={"attendance"},
    )
    assert_same(new, old, names)


def test_several_streaks_and_windows():
    features = [
        FeatureDef("absent_streak_term", "attendance", "term", "max_streak", ABSENT),
        FeatureDef(
            "late_streak_4w", "attendance", "4w", "max_streak", "e.mark = 'late'"
        ),
        FeatureDef("absent_days_all", "attendance", "all", "count", ABSENT),
        FeatureDef(
            "late_slope_previous_term",
            "attendance",
            "previous_term",
            "slope",
            "e.mark = 'late'",
        ),
    ]
    tables = synthetic(4, learners=20)
    new, old, names = both(
        tables,
        keys([f"L{i}" for i in range(20)], ["2024-11-15", "2025-03-01"]),
        features=features,
        sources={"attendance"},
    )
    assert_same(new, old, names)


def test_sums_of_constants_and_columns():
    # A constant value moves out of the sum, but a column value stays inside.
    features = [
        FeatureDef(
            "late_hours_term", "attendance", "term", "sum", "e.mark = 'late'", "0.75"
        ),
        FeatureDef("absent_tenths_4w", "attendance", "4w", "sum", ABSENT, "0.1e0"),
        FeatureDef(
            "late_minus_all", "attendance", "all", "sum", "e.mark = 'late'", "-2"
        ),
        FeatureDef("grade_sum_year", "grades", "year", "sum", "e.grade > 6", "e.grade"),
    ]
    tables = synthetic(5, learners=20)
    new, old, names = both(
        tables,
        keys([f"L{i}" for i in range(20)], ["2024-09-30", "2025-02-03"]),
        features=features,
        sources={"attendance", "grades"},
    )
    assert_same(new, old, names)
    assert (new["late_hours_term"] > 0).any()
    assert (new["late_minus_all"] < 0).any()
    assert (new["grade_sum_year"] > 0).any()


def test_sql_avoids_duckdb_only_syntax():
    sql = compile_sql(LEARNER_FEATURES, ALL_SOURCES).sql
    for construct in ("::", "ASOF", "QUALIFY", "GROUP BY ALL", "arg_max", "list_"):
        assert construct not in sql, construct


def test_streak_across_mask_words():
    # Absent on the 9 school days from 60 to 71 days before the as-of date,
    # across the first mask word's last day (61 days before).
    asof = pd.Timestamp("2025-03-03")
    days = pd.bdate_range(asof - pd.Timedelta(days=90), asof)
    absent = {d for d in days if 60 <= (asof - d).days <= 71}
    marks = [("e1", d, "excused" if d in absent else "present") for d in days]
    tables = contract([("e1", "L")], marks)
    new, old, names = both(tables, keys(["L"], [asof]))
    assert new["absence_streak_year"].iloc[0] == len(absent) == 9
    assert_same(new, old, names)


def test_streak_days_with_unknown_condition():
    # A day whose only mark is NULL is a miss. A NULL beside an absence is
    # ignored, as bool_and ignores it.
    marks = [
        ("e1", "2024-09-09", "excused"),
        ("e1", "2024-09-10", None),
        ("e1", "2024-09-11", "excused"),
        ("e1", "2024-09-12", "excused"),
        ("e1", "2024-09-12", None),
        ("e1", "2024-09-13", "unexcused"),
    ]
    tables = contract([("e1", "L")], marks)
    new, old, names = both(tables, keys(["L"], ["2024-09-20"]))
    assert new["absence_streak_year"].iloc[0] == 3
    assert_same(new, old, names)


def test_streaks_outside_masks_use_sql_pass():
    features = [
        FeatureDef("absent_streak_all", "attendance", "all", "max_streak", ABSENT),
        FeatureDef("absent_streak_8w", "attendance", "8w", "max_streak", ABSENT),
        FeatureDef(
            "late_streak_year", "attendance", "year", "max_streak", "e.mark = 'late'"
        ),
        DerivedDef("late_streak_over_one", "greatest(late_streak_year - 1, 0)"),
    ]
    compiled = compile_sql(features, {"attendance"})
    # Unbounded windows and streaks read by a derived feature keep the SQL pass.
    assert compiled.mask_streaks == ("absent_streak_8w",)
    tables = synthetic(5, learners=20)
    dates = ["2024-03-15", "2024-12-31", "2025-06-01"]
    new, old, names = both(
        tables,
        keys([f"L{i}" for i in range(20)], dates),
        features=features,
        sources={"attendance"},
    )
    assert_same(new, old, names)
    assert (new["absent_streak_all"] >= new["absent_streak_8w"]).all()
    assert new["absent_streak_all"].max() > 0
