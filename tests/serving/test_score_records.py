"""Unit tests of record validation and scoring, without a server."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from models.reasons import contributions, reason_codes
from models.risk import predict_risk
from models.spec import FeatureSpec
from serving.scoring import (
    MAX_BATCH_RECORDS,
    BatchTooLargeError,
    RecordProblem,
    RecordValidationError,
    rank_percentiles,
    request_ranks,
    score_records,
    validate_records,
)

NUMERIC = "mean_score"
CATEGORICAL = "attr_module"


@pytest.fixture
def records(trained) -> list[dict[str, object]]:
    return trained.holdout_records[:50]


def test_scores_match_predict_risk(trained, records):
    result = score_records(records, trained.loaded)
    expected = predict_risk(
        trained.loaded.model,
        trained.spec,
        trained.holdout.head(50),
        trained.loaded.calibration,
    )
    got = np.array([score["probability"] for score in result.scores])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_scores_are_calibrated(trained, records):
    # The test model carries a calibration, as models from ajoissa run do.
    assert trained.loaded.calibration is not None
    result = score_records(records, trained.loaded)
    raw = predict_risk(trained.loaded.model, trained.spec, trained.holdout.head(50))
    got = np.array([score["probability"] for score in result.scores])
    assert np.abs(got - raw).max() > 1e-6


def test_scores_carry_model_identity(trained, records):
    result = score_records(records, trained.loaded)
    first = result.scores[0]
    assert first["model_name"] == trained.loaded.name
    assert first["model_version"] == trained.loaded.version
    assert result.to_dict()["model"] == {
        "name": trained.loaded.name,
        "version": trained.loaded.version,
    }


def test_reasons_match_reason_codes(trained, records):
    result = score_records(records, trained.loaded)
    frame = trained.spec.conform(trained.holdout.head(50))
    values, _ = contributions(trained.loaded.model, trained.spec, frame)
    expected = reason_codes(
        values, frame, trained.spec.features, top_n=3, sentences=True
    )
    assert [score["reasons"] for score in result.scores] == expected
    assert all(len(score["reasons"]) <= 3 for score in result.scores)


def test_key_order_ignored(trained, records):
    shuffled = []
    rng = random.Random(0)
    for record in records:
        keys = list(record)
        rng.shuffle(keys)
        shuffled.append({key: record[key] for key in keys})
    assert list(shuffled[0]) != list(records[0])
    assert score_records(shuffled, trained.loaded) == score_records(
        records, trained.loaded
    )


def test_batch_membership_ignored(trained, records):
    whole = score_records(records, trained.loaded).scores
    alone = [score_records([r], trained.loaded).scores[0] for r in records[:10]]
    second_half = score_records(records[25:], trained.loaded).scores
    for single, full in zip(alone, whole[:10], strict=True):
        assert single["probability"] == full["probability"]
        assert single["reasons"] == full["reasons"]
    for part, full in zip(second_half, whole[25:], strict=True):
        assert part["probability"] == full["probability"]
        assert part["reasons"] == full["reasons"]


def test_request_rank_formula():
    got = request_ranks([0.2, 0.9, 0.2, 0.5])
    np.testing.assert_array_equal(got, [3, 1, 3, 2])


def test_rank_percentile_formula():
    got = rank_percentiles([0.2, 0.9, 0.2, 0.5])
    np.testing.assert_allclose(got, [50.0, 100.0, 50.0, 75.0])


def test_rank_percentile_in_response(trained, records):
    scores = score_records(records, trained.loaded).scores
    top = max(scores, key=lambda score: score["probability"])
    assert top["rank_percentile"] == 100.0
    assert min(score["rank_percentile"] for score in scores) >= 100.0 / len(scores)
    single = score_records(records[:1], trained.loaded).scores[0]
    assert single["rank_percentile"] == 100.0


def test_ties_share_percentile(trained, records):
    scores = score_records([records[0], records[0]], trained.loaded).scores
    assert scores[0]["rank_percentile"] == 100.0
    assert scores[1]["rank_percentile"] == 100.0


def test_numeric_string_parsed(trained, records):
    record = dict(records[0])
    record[NUMERIC] = " 12.5 "
    as_string = score_records([record], trained.loaded).scores[0]
    record[NUMERIC] = 12.5
    as_number = score_records([record], trained.loaded).scores[0]
    assert as_string == as_number


@pytest.mark.parametrize(
    "value",
    # Arabic-Indic and full-width digits are digits to Python's float(), not
    # the plain decimal numbers that the rule allows.
    [True, "abc", "12,5", "NaN", "1e999", "", [1], "\u0667\u0663", "\uff17\uff13"],
)
def test_numeric_invalid_rejected(trained, records, value):
    record = dict(records[0])
    record[NUMERIC] = value
    with pytest.raises(RecordValidationError, match=f"record 0, field '{NUMERIC}'"):
        score_records([record], trained.loaded)


def test_null_accepted(trained, records):
    record = {name: None for name in trained.spec.features}
    score = score_records([record], trained.loaded).scores[0]
    assert 0.0 < score["probability"] < 1.0


def test_every_problem_listed(trained, records):
    bad = dict(records[1])
    del bad[NUMERIC]
    bad["shoe_size"] = 42
    bad["days_enrolled"] = "soon"
    bad[CATEGORICAL] = {"code": "AAA"}
    batch = [records[0], bad, "not a record"]
    with pytest.raises(RecordValidationError) as caught:
        score_records(batch, trained.loaded)
    found = {(p.record, p.field, p.kind) for p in caught.value.problems}
    assert (1, NUMERIC, "missing") in found
    assert (1, "shoe_size", "unknown") in found
    assert (1, "days_enrolled", "invalid") in found
    assert (1, CATEGORICAL, "invalid") in found
    assert (2, "*", "invalid") in found
    assert len(caught.value.problems) == 5


def test_message_names_fields(trained, records):
    bad = dict(records[0])
    bad["days_enrolled"] = "soon"
    del bad[NUMERIC]
    with pytest.raises(RecordValidationError) as caught:
        score_records([bad], trained.loaded)
    message = str(caught.value)
    assert "record 0, field 'days_enrolled': value 'soon' is invalid" in message
    assert f"record 0, field '{NUMERIC}': missing" in message
    assert "Expected fields: " in message


def test_message_uses_json_names(trained, records):
    bad = dict(records[0])
    bad["days_enrolled"] = True
    with pytest.raises(RecordValidationError) as caught:
        score_records([bad], trained.loaded)
    assert "field 'days_enrolled': value true is invalid" in str(caught.value)


def test_empty_batch_rejected(trained):
    with pytest.raises(RecordValidationError, match="non-empty JSON array"):
        score_records([], trained.loaded)


def test_non_list_rejected(trained, records):
    with pytest.raises(RecordValidationError, match="field 'records'"):
        score_records(records[0], trained.loaded)


def test_batch_limit(trained):
    too_many = [{}] * (MAX_BATCH_RECORDS + 1)
    with pytest.raises(BatchTooLargeError, match=f"maximum is {MAX_BATCH_RECORDS}"):
        score_records(too_many, trained.loaded)


def test_batch_limit_says_split(trained):
    expected = "split the records into batches of at most 2"
    with pytest.raises(BatchTooLargeError, match=expected):
        validate_records([{}] * 3, trained.spec, max_records=2)


def test_unseen_category_warned(trained, records):
    batch = [dict(record) for record in records[:3]]
    batch[0][CATEGORICAL] = "ZZZ"
    batch[2][CATEGORICAL] = "ZZZ"
    result = score_records(batch, trained.loaded)
    assert result.warnings == [
        f"unseen category 'ZZZ' for field {CATEGORICAL} in 2 record(s); "
        "scored as missing"
    ]


def test_long_unseen_category_shortened(trained, records):
    record = dict(records[0])
    record[CATEGORICAL] = "A" * 100_000
    warnings = score_records([record], trained.loaded).warnings
    assert len(warnings) == 1
    assert warnings[0].startswith("unseen category 'AAAA")
    assert "...' for field" not in warnings[0]
    assert "... for field" in warnings[0]
    assert len(warnings[0]) < 200


def test_unseen_category_scored_missing(trained, records):
    record = dict(records[0])
    record[CATEGORICAL] = "ZZZ"
    unseen = score_records([record], trained.loaded).scores[0]
    record[CATEGORICAL] = None
    missing = score_records([record], trained.loaded).scores[0]
    assert unseen["probability"] == missing["probability"]


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_category_scored_missing(trained, records, blank):
    record = dict(records[0])
    record[CATEGORICAL] = blank
    result = score_records([record], trained.loaded)
    record[CATEGORICAL] = None
    missing = score_records([record], trained.loaded).scores[0]

    assert result.warnings == []
    assert result.scores[0]["probability"] == missing["probability"]


def test_blank_category_offline_missing(trained, records):
    frame = pd.DataFrame([dict(records[0], **{CATEGORICAL: ""})])
    conformed = trained.spec.conform(frame)
    assert conformed[CATEGORICAL].isna().all()


def test_unseen_warnings_capped(trained, records):
    batch = []
    for index in range(30):
        record = dict(records[0])
        record[CATEGORICAL] = f"X{index}"
        batch.append(record)
    warnings = score_records(batch, trained.loaded).warnings
    assert len(warnings) == 21
    assert warnings[-1].startswith("10 more unseen categories for field")


def test_number_as_category(trained, records):
    record = dict(records[0])
    record[CATEGORICAL] = 3
    result = score_records([record], trained.loaded)
    assert result.warnings[0].startswith("unseen category '3'")


def test_reasons_have_sentences(trained, records):
    result = score_records(records[:5], trained.loaded)
    reason = next(r for score in result.scores for r in score["reasons"])
    assert set(reason["sentences"]) == {"fi", "sv", "en"}
    assert reason["sentences"]["en"].startswith(("Raises", "Lowers"))


def test_category_whitespace_same_score(trained, records):
    record = next(r for r in records if r[CATEGORICAL] is not None)
    expected = score_records([record], trained.loaded).scores[0]["probability"]
    for variant in (f"{record[CATEGORICAL]} ", f"\t{record[CATEGORICAL]}\n"):
        result = score_records([{**record, CATEGORICAL: variant}], trained.loaded)
        assert result.scores[0]["probability"] == expected
        assert result.warnings == []


NUMBERED = FeatureSpec(features=["course"], categorical={"course": ["171", "9003"]})
"""A spec whose category labels are integer text, as in the UCI course codes."""


@pytest.mark.parametrize("value", ["171", " 171 ", 171, 171.0, "171.0"])
def test_category_number_matches(value):
    batch = validate_records([{"course": value}], NUMBERED)
    assert batch.columns["course"] == ["171"]
    assert batch.warnings == []


def test_category_fraction_unseen():
    batch = validate_records([{"course": 171.5}], NUMBERED)
    assert batch.columns["course"] == [None]
    assert "'171.5'" in batch.warnings[0]


def test_conform_same_rule():
    frame = pd.DataFrame({"course": [" 171", 171.0, 9003]}, dtype=object)
    conformed = NUMBERED.conform(frame)["course"]
    assert list(conformed) == ["171", "171", "9003"]


def test_float_training_category_matches():
    spec = FeatureSpec(features=["course"], categorical={"course": ["171.0"]})
    batch = validate_records([{"course": 171}], spec)
    assert batch.columns["course"] == ["171.0"]


@pytest.mark.parametrize(
    ("value", "token"),
    [(float("inf"), "Infinity"), (float("-inf"), "-Infinity"), (float("nan"), "NaN")],
)
def test_non_finite_value_named_alike(value, token):
    problem = RecordProblem(0, NUMERIC, value, "a finite number").to_dict()
    assert problem["value"] == token
    assert f"value {token} is invalid" in problem["message"]
