"""Fold metrics: intervals, top-k per unit, list stability and lead time."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from training.metrics import (
    Scored,
    _point_metrics,
    _Resampled,
    average_precision,
    calibration_error,
    lead_time,
    list_stability,
    metrics_with_intervals,
    roc_auc,
    select_top,
    top_weights,
)


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.15, 2000), 0.001, 0.999)
    return y, p


def test_auc_matches_sklearn(sample):
    y, p = sample
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_average_precision_matches_sklearn(sample):
    y, p = sample
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p))


def tied_sample():
    """Two tied scores; within each tie, the positives come first in row order."""
    high = np.r_[np.ones(100, dtype=int), np.zeros(400, dtype=int)]
    low = np.r_[np.ones(75, dtype=int), np.zeros(1425, dtype=int)]
    y = np.r_[high, low]
    p = np.r_[np.full(500, 0.3), np.full(1500, 0.1)]
    return y, p


def test_average_precision_ties_match_sklearn():
    y, p = tied_sample()
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p))


def test_average_precision_ignores_row_order():
    y, p = tied_sample()
    shuffled = np.random.default_rng(2).permutation(len(y))
    assert average_precision(y[shuffled], p[shuffled]) == average_precision(y, p)


def test_tied_pr_auc_inside_interval():
    y, p = tied_sample()
    scored = Scored(p, np.zeros(len(p)))
    groups = np.array(["d"] * len(y))
    result = metrics_with_intervals(y, scored, groups, groups, 0.1, None, 200, 0)
    low, high = result["pr_auc_ci"]
    assert low <= result["pr_auc"]
    assert result["pr_auc"] <= high


def test_ece_inside_its_interval():
    # Each score level's dropout rate is 0.2 points above its score, so the
    # point ECE is 0.002. Resampling noise pushes the resampled ECEs up, so a
    # percentile interval here is about [0.005, 0.024] and misses 0.002.
    levels = [0.05, 0.15, 0.25, 0.35]
    p = np.repeat(levels, 500)
    y = np.zeros(len(p), dtype=int)
    for index, level in enumerate(levels):
        y[index * 500 : index * 500 + round(level * 500) + 1] = 1
    groups = np.array(["d"] * len(y))
    result = metrics_with_intervals(y, Scored(p, p), groups, groups, 0.1, None, 200, 0)
    low, high = result["ece_ci"]
    assert result["ece"] == pytest.approx(0.002)
    assert low <= result["ece"]
    assert result["ece"] <= high
    assert low >= 0.0


def test_auc_one_class_is_none():
    assert roc_auc(np.zeros(5, dtype=int), np.arange(5.0)) is None


def test_ece_zero_when_calibrated():
    y = np.array([0, 0, 0, 1] * 25)
    p = np.full(100, 0.25)
    assert calibration_error(y, p) == pytest.approx(0.0)


def test_ece_of_overconfident_scores():
    y = np.array([0, 1] * 50)
    p = np.full(100, 0.95)
    assert calibration_error(y, p) == pytest.approx(0.45)


def test_intervals_contain_point(sample):
    y, p = sample
    groups = np.array(["d"] * len(y))
    units = np.array(["u1", "u2"] * (len(y) // 2))
    result = metrics_with_intervals(y, Scored(p, p), groups, units, 0.1, 5, 100, 0)
    for name in ("roc_auc", "pr_auc", "precision_at_k_share", "brier", "ece"):
        low, high = result[f"{name}_ci"]
        assert low <= result[name] <= high


def test_k_per_unit_selects_capacity():
    groups = np.array(["d"] * 6)
    units = np.array(["a", "a", "a", "b", "b", "b"])
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    combined = pd.Series(units) + "|" + pd.Series(groups)
    mask = select_top(combined.to_numpy(), p, p, k=1)
    assert mask.tolist() == [True, False, False, True, False, False]


def test_ties_go_to_higher_tiebreak():
    p = np.array([0.5, 0.5, 0.5])
    raw = np.array([0.1, 0.3, 0.2])
    mask = select_top(np.array(["d"] * 3), p, raw, k=1)
    assert mask.tolist() == [False, True, False]


def test_tied_rows_share_the_last_places():
    p = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    weights = top_weights(np.array(["d"] * 5), p, p, k=2)
    assert weights.tolist() == pytest.approx([1, 1 / 3, 1 / 3, 1 / 3, 0])


def test_weights_follow_the_tiebreak():
    p = np.array([0.5, 0.5, 0.5])
    raw = np.array([0.1, 0.3, 0.2])
    weights = top_weights(np.array(["d"] * 3), p, raw, k=1)
    assert weights.tolist() == [0, 1, 0]


def test_constant_score_precision_is_base_rate():
    # 3 of 10 rows are positive. A score that is the same for every row cannot
    # rank, so its precision in the top 20 % is the base rate in any row order.
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    constant = np.full(10, 0.3)
    groups = np.array(["d"] * 10)
    for order in (np.arange(10), np.arange(10)[::-1]):
        result = metrics_with_intervals(
            y[order], Scored(constant, constant), groups, groups, 0.2, None, 20, 0
        )
        assert result["precision_at_k_share"] == pytest.approx(0.3)
        assert result["recall_at_k_share"] == pytest.approx(0.2)


def test_untied_precision_unchanged(sample):
    y, p = sample
    groups = np.array(["d"] * len(y))
    result = metrics_with_intervals(y, Scored(p, p), groups, groups, 0.1, None, 20, 0)
    mask = select_top(groups, p, p, share=0.1)
    assert result["precision_at_k_share"] == pytest.approx(y[mask].mean())


def _rows():
    dates = pd.to_datetime(["2024-01-01"] * 4 + ["2024-02-01"] * 4)
    return pd.DataFrame(
        {
            "enrolment_id": ["e1", "e2", "e3", "e4"] * 2,
            "asof_date": dates,
            "y": [1, 0, 1, 0, 1, 0, 1, 0],
            "withdrawal_date": pd.to_datetime(
                ["2024-03-01", None, "2024-03-11", None] * 2
            ),
        }
    )


def test_stability_of_same_list():
    rows = _rows()
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.9, 0.1, 0.2, 0.3])
    assert list_stability(rows, Scored(p, p), 0.25)["mean_jaccard"] == 1.0


def test_stability_of_changed_list():
    rows = _rows()
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.9, 0.2, 0.3])
    assert list_stability(rows, Scored(p, p), 0.25)["mean_jaccard"] == 0.0


def test_lead_time_from_first_flag():
    rows = _rows()
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.2, 0.9, 0.3])
    result = lead_time(rows, Scored(p, p), 0.25)
    assert result["leavers"] == 2
    assert result["flagged_share"] == 1.0
    # e1 flagged 2024-01-01, left 2024-03-01 (60 days); e3 flagged 2024-02-01,
    # left 2024-03-11 (39 days).
    assert result["median_days"] == pytest.approx(49.5)


@pytest.mark.parametrize("seed", range(4))
def test_resample_metrics_match_drawn_rows(seed):
    # The counts-based resample gives the metrics of the drawn rows themselves,
    # with tied probabilities, tie-breaks and one-class resamples included.
    rng = np.random.default_rng(seed)
    n = 60 if seed < 2 else 600
    y = (rng.random(n) < 0.15).astype(int)
    p = rng.choice([0.05, 0.1, 0.2, 0.35, 0.6], n)
    tiebreak = rng.choice([0.0, 1.0, 2.0], n)
    share = top_weights(np.zeros(n), p, tiebreak, share=0.1)
    unit = top_weights(rng.choice(["a", "b"], n), p, tiebreak, k=3)
    resampled = _Resampled(y, Scored(p, tiebreak), share, unit)
    for _ in range(30):
        rows = rng.integers(0, n, n)
        drawn = _point_metrics(
            y[rows], Scored(p[rows], tiebreak[rows]), share[rows], unit[rows]
        )
        fast = resampled.metrics(np.bincount(rows, minlength=n))
        assert fast.keys() == drawn.keys()
        for name, value in drawn.items():
            if value is None:
                assert fast[name] is None, name
            else:
                assert fast[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
