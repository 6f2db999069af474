"""The model card reads each group's metrics from the overall top k."""

import numpy as np
import pandas as pd

from training.metrics import Scored, select_top
from training.model_card import group_metrics


def _rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, Scored]:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "learner_id": [f"L{i % (n // 2)}" for i in range(n)],
            "asof_date": np.where(np.arange(n) < n // 2, "2024-10-01", "2024-12-01"),
            # Group b scores higher, so the overall top k contains more of it.
            "gender": np.where(rng.random(n) < 0.3, "b", "a"),
        }
    )
    probability = rng.random(n) * 0.8 + (rows["gender"] == "b") * 0.15
    y = (rng.random(n) < probability).astype(int)
    return rows, y, Scored(probability.to_numpy(), np.zeros(n))


def test_group_precision_reads_overall_top_k():
    rows, y, scored = _rows(2000, 0)
    groups = group_metrics(rows, y, scored, ["gender"], 0.1, 10, 50, 0)["gender"]
    dates = rows["asof_date"].astype(str).to_numpy()
    selected = select_top(dates, scored.probability, scored.tiebreak, share=0.1)
    for entry in groups:
        inside = (rows["gender"] == entry["group"]).to_numpy()
        expected = y[inside & selected].mean()
        assert entry["precision_at_k_share"] == expected
        assert (
            entry["recall_at_k_share"] == y[inside & selected].sum() / y[inside].sum()
        )
        assert entry["selected_share"] == selected[inside].mean()
        low, high = entry["precision_at_k_share_ci"]
        assert low <= expected <= high


def test_small_groups_counted_by_learner():
    rows, y, scored = _rows(400, 1)
    # Three learners with many rows each: more rows than the minimum, too few
    # learners.
    rows.loc[rows.index[:60], "learner_id"] = ["X1", "X2", "X3"] * 20
    rows.loc[rows.index[:60], "gender"] = "c"
    groups = group_metrics(rows, y, scored, ["gender"], 0.1, 10, 20, 0)["gender"]
    assert "c" not in {entry["group"] for entry in groups}
    assert {"a", "b"} <= {entry["group"] for entry in groups}
