"""The column-wise validator gives the per-record validator's batch or errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.scoring import (
    MAX_UNSEEN_WARNINGS_PER_FIELD,
    RecordValidationError,
    ValidatedBatch,
    _validate_columnwise,
    _validate_per_record,
    validate_records,
)

CATEGORICAL = "attr_module"
COUNT = "assessments_due"
"""A whole number of at least 0."""
SHARE = "share_submitted"
"""A number from 0 to 1."""

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Values that the per-record rules accept or reject for each kind of field.
NUMERIC_VALUES = [
    None,
    0,
    3,
    0.5,
    2.0,
    -1,
    1.5,
    1e400,
    -1e400,
    math.nan,
    10**400,
    2**60,
    True,
    "12",
    " 0.25 ",
    "1e3",
    "1,5",
    "NaN",
    "Infinity",
    "",
    [1],
    {"a": 1},
]
CATEGORY_VALUES = [
    None,
    math.nan,
    1e400,
    171,
    171.0,
    -0.0,
    2**60,
    1.5,
    "unseen-a",
    " unseen-a ",
    "unseen-b",
    "",
    "  ",
    False,
    [],
    {"x": 1},
]


def _same_value(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    return type(left) is type(right) and left == right


def _assert_same_batch(left: ValidatedBatch, right: ValidatedBatch) -> None:
    assert list(left.columns) == list(right.columns)
    for name in left.columns:
        assert len(left.columns[name]) == len(right.columns[name])
        for a, b in zip(left.columns[name], right.columns[name], strict=True):
            assert _same_value(a, b), (name, a, b)
    np.testing.assert_array_equal(left.matrix, right.matrix)
    assert left.warnings == right.warnings


def _outcome(validate, records, spec) -> ValidatedBatch | list[dict]:
    try:
        return validate(records, spec)
    except RecordValidationError as exc:
        return [problem.to_dict() for problem in exc.problems]


def test_holdout_takes_columnwise_path(trained):
    records = trained.holdout_records
    batch = _validate_columnwise(records, trained.spec)
    assert batch is not None
    _assert_same_batch(batch, _validate_per_record(records, trained.spec))


def test_category_forms_same_as_per_record(trained):
    records = trained.holdout_records[:40]
    seen = records[0][CATEGORICAL]
    forms = [seen, f"  {seen} ", None, math.nan, 1e400, 171, 171.0, -0.0, 2**60]
    forms += [1.5, "unseen-a", " unseen-a ", "unseen-b", "", " \t "]
    batch = [
        dict(record, **{CATEGORICAL: forms[index % len(forms)]})
        for index, record in enumerate(records)
    ]
    fast = _validate_columnwise(batch, trained.spec)
    assert fast is not None
    assert any("unseen-a" in warning for warning in fast.warnings)
    _assert_same_batch(fast, _validate_per_record(batch, trained.spec))


def test_unseen_warning_cap_same_as_per_record(trained):
    records = trained.holdout_records[: 3 * MAX_UNSEEN_WARNINGS_PER_FIELD]
    # Counts differ, and ties keep the order of first occurrence.
    batch = [
        dict(record, **{CATEGORICAL: f"unseen-{index % 30 if index % 3 else 0}"})
        for index, record in enumerate(records)
    ]
    fast = _validate_columnwise(batch, trained.spec)
    assert fast is not None
    assert "more unseen categories" in fast.warnings[-1]
    _assert_same_batch(fast, _validate_per_record(batch, trained.spec))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (COUNT, 1.5),
        (COUNT, -1),
        (SHARE, 2.0),
        (SHARE, 1e400),
        (SHARE, 10**400),
        (SHARE, True),
        (SHARE, "0.5"),
        (CATEGORICAL, True),
        (CATEGORICAL, ["x"]),
    ],
)
def test_values_needing_rules_leave_columnwise_path(trained, field, value):
    records = [dict(record) for record in trained.holdout_records[:5]]
    records[3][field] = value
    assert _validate_columnwise(records, trained.spec) is None


@pytest.mark.parametrize(
    "change",
    ["extra key", "missing key", "not an object"],
)
def test_record_shapes_leave_columnwise_path(trained, change):
    records = [dict(record) for record in trained.holdout_records[:5]]
    if change == "extra key":
        records[2]["extra"] = 1
    elif change == "missing key":
        del records[2][SHARE]
    else:
        records[2] = [1, 2]
    assert _validate_columnwise(records, trained.spec) is None
    with pytest.raises(RecordValidationError) as raised:
        validate_records(records, trained.spec)
    assert {problem.record for problem in raised.value.problems} == {2}


def test_swapped_key_same_count_leaves_columnwise_path(trained):
    # As many keys as features, but one is not a feature.
    records = [dict(record) for record in trained.holdout_records[:3]]
    records[1]["extra"] = records[1].pop(SHARE)
    assert _validate_columnwise(records, trained.spec) is None
    with pytest.raises(RecordValidationError) as raised:
        validate_records(records, trained.spec)
    kinds = {(p.record, p.field, p.kind) for p in raised.value.problems}
    assert kinds == {(1, "extra", "unknown"), (1, SHARE, "missing")}


@SETTINGS
@given(data=st.data())
def test_validate_records_same_as_per_record(trained, data):
    pool = trained.holdout_records[:30]
    numeric = sorted(
        name for name in trained.spec.features if name not in trained.spec.categorical
    )
    categorical = sorted(trained.spec.categorical)
    chosen = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=12))
    batch = []
    for index in chosen:
        record = dict(pool[index])
        changes = data.draw(st.integers(0, 3), label="changes")
        for _ in range(changes):
            if data.draw(st.booleans(), label="categorical"):
                name = data.draw(st.sampled_from(categorical))
                record[name] = data.draw(st.sampled_from(CATEGORY_VALUES))
            else:
                name = data.draw(st.sampled_from(numeric))
                record[name] = data.draw(st.sampled_from(NUMERIC_VALUES))
        batch.append(record)

    expected = _outcome(_validate_per_record, batch, trained.spec)
    actual = _outcome(validate_records, batch, trained.spec)
    if isinstance(expected, list):
        assert actual == expected
        assert _validate_columnwise(batch, trained.spec) is None
    else:
        assert isinstance(actual, ValidatedBatch)
        _assert_same_batch(actual, expected)
