"""The hyperparameter search: its leaf-size range and the cross-validated search."""

import pytest

import training.validate as validate
from features.build import asof_points_by_offset, build_features
from models.risk import MAX_LEAF_SHARE, MIN_LEAF_ROWS
from training.tuning import LEAF_ROWS_RANGE, leaf_rows_range, tune_cross_validated
from training.validate import validate_stratified, with_label_window


@pytest.fixture(scope="module")
def frame(synthetic_tables):
    points = asof_points_by_offset(synthetic_tables.units, [30, 60, 90])
    built = build_features(synthetic_tables, points)
    return with_label_window(built, synthetic_tables.enrolments, None)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (100_000, LEAF_ROWS_RANGE),
        (4_000, (20, 200)),
        (400, (5, 20)),
        (50, (MIN_LEAF_ROWS, MIN_LEAF_ROWS)),
    ],
)
def test_leaf_rows_range(rows, expected):
    assert leaf_rows_range(rows) == expected


def test_leaf_rows_range_stops_at_cap():
    for rows in (50, 400, 4_000, 16_000, 100_000):
        low, high = leaf_rows_range(rows)
        assert low <= high
        assert high <= max(MIN_LEAF_ROWS, int(rows * MAX_LEAF_SHARE))


def test_cross_validated_search_is_seeded(frame):
    groups = frame.data["learner_id"].to_numpy()
    first = tune_cross_validated(frame.X, frame.y, groups, trials=3, seed=0, folds=3)
    second = tune_cross_validated(frame.X, frame.y, groups, trials=3, seed=0, folds=3)
    assert first.params == second.params
    assert first.rounds == second.rounds
    assert first.trials == 3
    assert 0.5 < first.best_validation_roc_auc <= 1.0


def test_cross_validated_search_in_range(frame):
    groups = frame.data["learner_id"].to_numpy()
    tuned = tune_cross_validated(frame.X, frame.y, groups, trials=4, seed=1, folds=3)
    low, high = leaf_rows_range(len(frame.X) - len(frame.X) // 3)
    assert low <= tuned.params["min_child_samples"] <= high
    assert tuned.rounds >= 1


def test_defaults_without_trials(frame):
    groups = frame.data["learner_id"].to_numpy()
    tuned = tune_cross_validated(frame.X, frame.y, groups, trials=0, seed=0, folds=3)
    assert tuned.params == {}
    assert tuned.trials == 0
    assert tuned.rounds >= 1


def test_stratified_tunes_without_test_rows(frame, monkeypatch):
    seen: list[set[str]] = []
    original = validate.tune_cross_validated

    def recording(X, y, groups, trials, seed):
        seen.append(set(groups))
        return original(X, y, groups, trials, seed)

    monkeypatch.setattr(validate, "tune_cross_validated", recording)
    result = validate_stratified(frame, folds=3, trials=0)
    learners = frame.data["learner_id"].to_numpy()
    assert len(seen) == 4
    for fold, tuned_on in zip(result.folds[:3], seen, strict=False):
        tested = set(learners[fold.rows])
        assert tested
        assert not tested & tuned_on
    assert seen[3] == set(learners)
