"""The include_reasons option of score_records, without a server."""

from __future__ import annotations

from serving.scoring import score_records


def test_without_reasons_null(trained):
    records = trained.holdout_records[:20]
    scores = score_records(records, trained.loaded, include_reasons=False).scores
    assert all(score["reasons"] is None for score in scores)


def test_without_reasons_same_scores(trained):
    records = trained.holdout_records[:20]
    with_reasons = score_records(records, trained.loaded).scores
    without = score_records(records, trained.loaded, include_reasons=False).scores
    for full, bare in zip(with_reasons, without, strict=True):
        assert bare == full | {"reasons": None}


def test_large_batch_matches_small(trained):
    # Above SINGLE_THREAD_MAX_ROWS the model's own thread count is used.
    records = trained.holdout_records[:200]
    batch = score_records(records, trained.loaded).scores
    alone = score_records(records[150:151], trained.loaded).scores[0]
    assert batch[150]["probability"] == alone["probability"]
    assert batch[150]["reasons"] == alone["reasons"]
