"""Range checks of numeric values in scoring requests, without a server."""

from __future__ import annotations

import pytest

from features.bounds import feature_ranges
from serving.scoring import RecordValidationError, score_records

SHARE = "share_submitted"
COUNT = "assessments_due"
SCORE = "mean_score"


@pytest.fixture
def record(trained) -> dict[str, object]:
    return dict(trained.holdout_records[0])


def _problems(trained, records) -> list:
    with pytest.raises(RecordValidationError) as caught:
        score_records(records, trained.loaded)
    return caught.value.problems


def test_holdout_within_ranges(trained):
    ranges = feature_ranges()
    for name in trained.spec.features:
        if name not in ranges:
            continue
        values = trained.holdout[name].dropna()
        outside = [v for v in values if not ranges[name].contains(float(v))]
        assert outside == [], name


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (COUNT, -1, "a whole number of at least 0, or null"),
        (COUNT, 2.5, "a whole number of at least 0, or null"),
        (SHARE, 1.2, "a number from 0 to 1, or null"),
        (SHARE, "-0.1", "a number from 0 to 1, or null"),
        (SCORE, 101, "a number from 0 to 100, or null"),
    ],
)
def test_out_of_range_rejected(trained, record, field, value, expected):
    record[field] = value
    problems = _problems(trained, [record])
    assert len(problems) == 1
    assert problems[0].field == field
    assert problems[0].value == value
    assert problems[0].expected == expected


def test_range_message_names_value(trained, record):
    record[COUNT] = -3
    with pytest.raises(RecordValidationError, match="value -3 is invalid; expected"):
        score_records([record], trained.loaded)


def test_range_edges_accepted(trained, record):
    record[SHARE] = 1
    record[COUNT] = 0
    record[SCORE] = 100.0
    assert len(score_records([record], trained.loaded).scores) == 1


def test_range_index_after_bad_record(trained, record):
    bad = dict(record)
    del bad[SCORE]
    negative = dict(record, **{COUNT: -1})
    problems = _problems(trained, ["not a record", bad, negative])
    found = {(p.record, p.field, p.kind) for p in problems}
    assert found == {(0, "*", "invalid"), (1, SCORE, "missing"), (2, COUNT, "invalid")}


def test_unranged_feature_any_number(trained, record):
    assert "mean_days_early" not in feature_ranges()
    record["mean_days_early"] = -40
    assert len(score_records([record], trained.loaded).scores) == 1


def test_learner_ranges_follow_definitions():
    from features.definitions import LEARNER_FEATURES, FeatureDef

    ranges = feature_ranges()
    shares = [
        f.name
        for f in LEARNER_FEATURES
        if isinstance(f, FeatureDef) and f.aggregation == "share"
    ]
    assert shares
    for name in shares:
        assert ranges[name].describe() == "a number from 0 to 1", name
    assert ranges["grade_mean_year"].describe() == "a number from 4 to 10"
    assert ranges["absence_hours_year"].describe() == "a number of at least 0"


def test_huge_integer_rejected(trained, record):
    record["mean_days_early"] = 10**400
    problems = _problems(trained, [record])
    assert [(p.record, p.field) for p in problems] == [(0, "mean_days_early")]


def test_problems_sorted_by_record(trained, record):
    late = dict(record, **{COUNT: -1})
    early = dict(record, **{SHARE: "x"})
    problems = _problems(trained, [early, late])
    assert [p.record for p in problems] == [0, 1]
