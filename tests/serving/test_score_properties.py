"""Property tests: a record's score does not depend on how it is sent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.scoring import score_records

POOL = 40
"""Holdout records the properties draw from."""

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _as_text(record: dict, numeric: set[str], fields: set[str]) -> dict:
    """Send the chosen numeric fields as decimal strings, the documented rule."""
    return {
        key: repr(value)
        if key in fields and key in numeric and value is not None
        else value
        for key, value in record.items()
    }


@SETTINGS
@given(data=st.data())
def test_score_independent_of_sending(trained, data):
    records = trained.holdout_records[:POOL]
    numeric = {
        name for name in trained.spec.features if name not in trained.spec.categorical
    }
    reference = score_records(records, trained.loaded).scores

    chosen = data.draw(
        st.lists(st.integers(0, POOL - 1), min_size=1, max_size=15), label="records"
    )
    batch = []
    for index in chosen:
        keys = data.draw(st.permutations(list(records[index])), label="key order")
        as_text = data.draw(st.sets(st.sampled_from(sorted(numeric))), label="as text")
        record = _as_text(records[index], numeric, as_text)
        batch.append({key: record[key] for key in keys})

    scores = score_records(batch, trained.loaded).scores
    for index, score in zip(chosen, scores, strict=True):
        assert score["probability"] == reference[index]["probability"]
        assert score["reasons"] == reference[index]["reasons"]


@SETTINGS
@given(
    number=st.one_of(st.integers(-5, 5), st.sampled_from([1.0, 2.5])),
    index=st.integers(0, POOL - 1),
)
def test_category_number_is_text(trained, number, index):
    # A number sent for a categorical field scores as its str() text does.
    record = trained.holdout_records[index]
    as_number = score_records([dict(record, attr_module=number)], trained.loaded)
    as_text = score_records([dict(record, attr_module=str(number))], trained.loaded)
    assert as_number.scores[0]["probability"] == as_text.scores[0]["probability"]
    assert as_number.warnings == as_text.warnings
