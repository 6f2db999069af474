"""The model page lists a run's as-of dates by date, not by label."""

from __future__ import annotations

from serving.ui.modelcards import metric_tables
from training.run import asof_order

METRICS = {
    f"{label}.{model}.roc_auc": 0.7
    for label in ("oct_1", "dec_1", "feb_1")
    for model in ("model", "logistic")
} | {"fold.2023.model.roc_auc": 0.7, "fold.2022.model.roc_auc": 0.7}


def _sections(tables):
    return [(table.kind, table.name) for table in tables]


def test_asof_order_by_offset():
    labels = {184: "feb_1", 61: "oct_1", 122: "dec_1"}
    assert asof_order([184, 61, 122], labels) == "oct_1,dec_1,feb_1"
    assert asof_order([30, 120], {}) == "day_30,day_120"


def test_tables_follow_asof_order():
    tables = metric_tables(METRICS, ("oct_1", "dec_1", "feb_1"))
    assert _sections(tables) == [
        ("fold", "2022"),
        ("fold", "2023"),
        ("asof", "oct_1"),
        ("asof", "dec_1"),
        ("asof", "feb_1"),
    ]


def test_tables_without_order_by_name():
    tables = metric_tables(METRICS)
    names = [name for kind, name in _sections(tables) if kind == "asof"]
    assert names == ["dec_1", "feb_1", "oct_1"]
