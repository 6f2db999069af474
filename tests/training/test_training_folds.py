"""Temporal folds and stratified cross-validation on synthetic contract tables."""

import numpy as np
import pandas as pd
import pytest

from features.build import asof_points_by_offset, build_features
from training.validate import validate_stratified, validate_temporal, with_label_window


@pytest.fixture(scope="module")
def frame(synthetic_tables):
    points = asof_points_by_offset(synthetic_tables.units, [30, 60, 90])
    built = build_features(synthetic_tables, points)
    return with_label_window(built, synthetic_tables.enrolments, None)


@pytest.fixture(scope="module")
def temporal(frame, synthetic_tables):
    return validate_temporal(
        frame, synthetic_tables.units, ["2021-12-01", "2022-06-01"], trials=2, seed=0
    )


def test_temporal_has_two_folds(temporal):
    assert [f.name for f in temporal.folds] == [
        "cutoff_2021-12-01",
        "cutoff_2022-06-01",
    ]


def test_no_learner_on_both_sides(temporal, frame, synthetic_tables):
    starts = frame.data["unit_id"].map(
        synthetic_tables.units.set_index("unit_id")["start_date"]
    )
    for fold in temporal.folds:
        cutoff = np.datetime64(fold.details["cutoff"])
        train_learners = set(frame.data.loc[(starts < cutoff).to_numpy(), "learner_id"])
        test_learners = set(frame.data.iloc[fold.rows]["learner_id"])
        assert not train_learners & test_learners


def test_repeaters_are_dropped(temporal):
    assert temporal.final.details["test_rows_dropped_learner_in_training"] > 0


def test_latest_cohort_is_validation(temporal):
    assert temporal.final.details["validation_period"] == (
        "the latest training cohort 2022A"
    )


def test_calibration_on_later_cohort(temporal, frame):
    details = temporal.final.details
    cohort_rows = int((frame.data["cohort"] == "2022A").sum())
    assert details["calibrated_on"].startswith("the latest training cohort 2022A")
    assert temporal.final.calibration.rows == cohort_rows
    assert f"{cohort_rows} rows" in details["calibrated_on"]


def test_calibration_cross_fitted_option(frame, synthetic_tables):
    result = validate_temporal(
        frame,
        synthetic_tables.units,
        ["2022-06-01"],
        trials=0,
        calibration="cross_fitted",
    )
    details = result.final.details
    assert details["calibrated_on"].startswith("cross-fitted booster predictions")
    assert result.final.calibration.rows == details["train_rows"]


def test_one_cohort_calibration_cross_fitted(frame, synthetic_tables):
    result = validate_temporal(
        frame, synthetic_tables.units, ["2022-06-01"], history_days=200, trials=0
    )
    details = result.final.details
    assert details["train_cohorts"] == ["2022A"]
    assert details["calibrated_on"].startswith("cross-fitted booster predictions")
    assert result.final.calibration.rows == details["train_rows"]


def test_history_limits_training(frame, synthetic_tables):
    limited = validate_temporal(
        frame, synthetic_tables.units, ["2022-06-01"], history_days=200, trials=0
    )
    assert limited.final.details["train_cohorts"] == ["2022A"]


def test_test_window_limits_testing(frame, synthetic_tables):
    windowed = validate_temporal(
        frame, synthetic_tables.units, ["2021-06-01"], test_window_days=100, trials=0
    )
    assert windowed.final.details["test_cohorts"] == ["2021B"]


def test_cutoff_without_training_is_skipped(frame, synthetic_tables):
    result = validate_temporal(
        frame, synthetic_tables.units, ["2020-01-01", "2022-06-01"], trials=0
    )
    assert len(result.folds) == 1
    assert "2020-01-01" in result.skipped[0]


def test_no_usable_cutoff_raises(frame, synthetic_tables):
    with pytest.raises(ValueError, match="no temporal cutoff"):
        validate_temporal(frame, synthetic_tables.units, ["2030-01-01"], trials=0)


def test_stratified_is_labelled(frame):
    result = validate_stratified(frame, folds=3, trials=0)
    assert result.kind == "stratified"
    assert result.final.name == "out_of_fold"
    assert len(result.final.rows) == len(frame.data)
    assert result.final.details["calibrated_on"].endswith("(no time axis)")


def test_label_window_shortens_label(synthetic_tables):
    points = asof_points_by_offset(synthetic_tables.units, [30])
    built = build_features(synthetic_tables, points)
    short = with_label_window(built, synthetic_tables.enrolments, 30)
    full = with_label_window(built, synthetic_tables.enrolments, None)
    assert short.y.sum() < full.y.sum()
    assert (short.y <= full.y).all()
    assert np.array_equal(full.y, built.y)


def test_baselines_side_by_side(temporal):
    names = set(temporal.final.scores)
    assert {"model", "rule", "logistic", "last_grade", "school_cohort"} <= names


def test_missing_attendance_named(temporal):
    reasons = temporal.final.not_applicable
    assert reasons["abc"] == (
        "not applicable: the source has no attendance data (absence_share)"
    )
    assert "absence-hour" in reasons["absence_hours"]


def test_abc_runs_with_attendance(synthetic_tables_with_attendance):
    tables = synthetic_tables_with_attendance
    built = build_features(tables, asof_points_by_offset(tables.units, [60]))
    result = validate_temporal(built, tables.units, ["2022-06-01"], trials=0)
    assert "abc" in result.final.scores
    assert "abc" not in result.final.not_applicable


def test_tuning_is_seeded(frame, synthetic_tables):
    first = validate_temporal(frame, synthetic_tables.units, ["2022-06-01"], trials=3)
    second = validate_temporal(frame, synthetic_tables.units, ["2022-06-01"], trials=3)
    assert first.final.tuned.params == second.final.tuned.params
    assert np.array_equal(
        first.final.scores["model"].probability,
        second.final.scores["model"].probability,
    )


def test_rule_without_assessments_is_not_applicable(frame):
    silent = frame.data.assign(assessments_missed=0.0, assessments_failed=0.0)
    quiet = type(frame)(
        data=silent, feature_names=frame.feature_names, categorical=frame.categorical
    )
    validation = validate_stratified(quiet, folds=2, trials=1, seed=0)
    for fold in validation.folds:
        assert "rule" not in fold.scores
        assert "ranks no one" in fold.not_applicable["rule"]


def test_constant_baseline_on_test_named():
    from models.baselines import LAST_GRADE_COLUMN
    from training.metrics import Scored
    from training.validate import _constant_on_test

    test_rows = pd.DataFrame({LAST_GRADE_COLUMN: [np.nan, np.nan, np.nan]})
    scores = {
        "model": Scored(np.array([0.1, 0.1, 0.1]), np.array([1.0, 1.0, 1.0])),
        "last_grade": Scored(np.full(3, 0.2), np.full(3, 101.0)),
        "logistic": Scored(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.3])),
        "school_cohort": Scored(np.full(3, 0.05), np.array([0.05, 0.05, 0.04])),
    }
    constant = _constant_on_test(scores, test_rows)
    assert set(constant) == {"last_grade"}
    assert constant["last_grade"] == (
        "gives every test row the same score, so it ranks no one there. "
        f"No test row has grade data in {LAST_GRADE_COLUMN}"
    )


def test_fold_lists_constant_baselines(temporal):
    constant = temporal.final.details["baselines_constant_on_test"]
    for name, scored in temporal.final.scores.items():
        if name == "model":
            continue
        varies = np.ptp(scored.probability) > 0 or np.ptp(scored.tiebreak) > 0
        assert (name in constant) == (not varies), name


def test_purge_drops_labels_reaching_cutoff(frame, synthetic_tables):
    from training.validate import temporal_split

    data = frame.data
    starts = data["unit_id"].map(
        synthetic_tables.units.set_index("unit_id")["start_date"]
    )
    cutoff = pd.Timestamp("2022-06-01")
    plain = temporal_split(data, starts, cutoff)
    split = temporal_split(data, starts, cutoff, purge_label_days=100)
    reaches = (data["asof_date"] + pd.Timedelta(days=100) >= cutoff).to_numpy()
    assert split.purged.any()
    assert np.array_equal(split.purged, plain.train & reaches)
    assert np.array_equal(split.train, plain.train & ~reaches)
