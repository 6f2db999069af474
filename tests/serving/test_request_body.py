"""decode_plain_request gives the batch of from_json and validate_records, or None."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import from_json

from serving.request_body import decode_plain_request
from serving.scoring import (
    MAX_BATCH_RECORDS,
    RecordValidationError,
    ValidatedBatch,
    validate_records,
)

CATEGORICAL = "attr_module"
COUNT = "assessments_due"
"""A whole number of at least 0."""
SHARE = "share_submitted"
"""A number from 0 to 1."""

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# JSON text of numbers: ints beyond 2**53 and 2**64 round when they become
# floats, and both paths must round them alike.
NUMBER_TEXTS = [
    "0",
    "-0",
    "-0.0",
    "3",
    "0.5",
    "1E2",
    "2.5e-3",
    "0.1000000000000000055511151231257827",
    "9007199254740993",
    "18446744073709551617",
    "123456789012345678901234567890",
    "4.9e-324",
    "1e400",
    "-1",
    "1.5",
    "null",
    "true",
    '"12"',
    "NaN",
]
CATEGORY_TEXTS = [
    "null",
    "171",
    "171.0",
    "-0.0",
    "1.5",
    "123456789012345678901234567890",
    '" 171 "',
    '"unseen-a"',
    '""',
    '" \\t "',
    '"\\u00e4"',
    "1e400",
    "false",
    "[]",
]


def _body(records: list[dict[str, str]], extra: str = "") -> bytes:
    """Return a body whose records map feature names to JSON text."""
    texts = [
        "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in r.items()) + "}"
        for r in records
    ]
    return ('{"records":[' + ",".join(texts) + "]" + extra + "}").encode()


def _texts(record: dict[str, object]) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in record.items()}


def _reference(body: bytes, spec) -> ValidatedBatch | None:
    """Return the batch of the general path, or None if it rejects the body."""
    try:
        parsed = from_json(body)
        return validate_records(parsed["records"], spec)
    except RecordValidationError:
        return None


def _same_value(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) and math.isnan(right):
            return True
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return type(left) is type(right) and left == right


def _assert_same_batch(left: ValidatedBatch, right: ValidatedBatch) -> None:
    assert list(left.columns) == list(right.columns)
    for name in left.columns:
        pairs = zip(left.columns[name], right.columns[name], strict=True)
        for a, b in pairs:
            assert _same_value(a, b), (name, a, b)
    np.testing.assert_array_equal(left.matrix, right.matrix)
    assert left.warnings == right.warnings


def test_holdout_decoded_as_general_path(trained):
    body = json.dumps({"records": trained.holdout_records}).encode()
    plain = decode_plain_request(body, trained.spec)
    assert plain is not None
    assert plain.as_of is None
    assert plain.include_reasons is True
    _assert_same_batch(plain.batch, _reference(body, trained.spec))


def test_options_returned_as_decoded(trained):
    records = [_texts(r) for r in trained.holdout_records[:2]]
    body = _body(records, ', "as_of": "2024-01-31", "include_reasons": "no"')
    plain = decode_plain_request(body, trained.spec)
    assert plain is not None
    assert plain.as_of == "2024-01-31"
    assert plain.include_reasons == "no"


@pytest.mark.parametrize(
    ("field", "text"),
    [
        (COUNT, "1.5"),
        (COUNT, "-1"),
        (SHARE, "2.0"),
        (SHARE, "1e400"),
        (SHARE, "true"),
        (SHARE, '"0.5"'),
        (SHARE, "NaN"),
        (CATEGORICAL, "true"),
        (CATEGORICAL, '["x"]'),
        (CATEGORICAL, "1e400"),
    ],
)
def test_values_needing_rules_give_none(trained, field, text):
    records = [_texts(r) for r in trained.holdout_records[:3]]
    records[1][field] = text
    assert decode_plain_request(_body(records), trained.spec) is None


@pytest.mark.parametrize(
    "change", ["extra key", "missing key", "not an object", "unknown option"]
)
def test_request_shapes_give_none(trained, change):
    records = [_texts(r) for r in trained.holdout_records[:3]]
    extra = ""
    if change == "extra key":
        records[2]["extra"] = "1"
    elif change == "missing key":
        del records[2][SHARE]
    elif change == "unknown option":
        extra = ', "include_reason": false'
    body = _body(records, extra)
    if change == "not an object":
        body = body.replace(b"[{", b"[[1],{", 1)
    assert decode_plain_request(body, trained.spec) is None


def test_batch_sizes_outside_limit_give_none(trained):
    record = _texts(trained.holdout_records[0])
    assert decode_plain_request(_body([]), trained.spec) is None
    too_many = _body([record] * (MAX_BATCH_RECORDS + 1))
    assert decode_plain_request(too_many, trained.spec) is None


@SETTINGS
@given(data=st.data())
def test_plain_batches_same_as_general_path(trained, data):
    pool = trained.holdout_records[:30]
    spec = trained.spec
    numeric = sorted(name for name in spec.features if name not in spec.categorical)
    categorical = sorted(spec.categorical)
    chosen = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=8))
    records = []
    for index in chosen:
        record = _texts(pool[index])
        for _ in range(data.draw(st.integers(0, 3), label="changes")):
            if data.draw(st.booleans(), label="categorical"):
                name = data.draw(st.sampled_from(categorical))
                record[name] = data.draw(st.sampled_from(CATEGORY_TEXTS))
            else:
                name = data.draw(st.sampled_from(numeric))
                record[name] = data.draw(st.sampled_from(NUMBER_TEXTS))
        records.append(record)
    body = _body(records)

    plain = decode_plain_request(body, spec)
    if plain is None:
        return
    expected = _reference(body, spec)
    assert expected is not None
    _assert_same_batch(plain.batch, expected)


@SETTINGS
@given(
    value=st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**80), 2**80)
)
def test_number_texts_decoded_as_from_json(trained, value):
    # The feature has no known range, so every finite number is valid.
    name = "mean_days_early"
    record = _texts(trained.holdout_records[0])
    record[name] = json.dumps(value)
    body = _body([record])
    plain = decode_plain_request(body, trained.spec)
    assert plain is not None
    _assert_same_batch(plain.batch, _reference(body, trained.spec))
