import numpy as np
import pytest

from training.evaluate import evaluate_scores, top_share_mask


def test_top_share_size_rounds_up():
    mask = top_share_mask(np.linspace(0, 1, 25), 0.10)
    assert mask.sum() == 3
    assert mask[-3:].all()


def test_top_share_ties_follow_row_order():
    mask = top_share_mask(np.array([0.5, 0.9, 0.9, 0.9, 0.1]), 0.4)
    assert mask.tolist() == [False, True, True, False, False]


def test_top_share_rejects_zero():
    with pytest.raises(ValueError, match="share must be in"):
        top_share_mask(np.array([0.1, 0.2]), 0.0)


def test_metrics_on_known_ranking():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    metrics = evaluate_scores(y, scores, share=0.10)
    assert metrics["precision_at_10pct"] == 1.0
    assert metrics["recall_at_10pct"] == 0.5
    assert metrics["brier"] == pytest.approx(np.mean((scores - y) ** 2))
    # One positive outranks all eight negatives, the other none: AUC = 8 / 16.
    assert metrics["roc_auc"] == pytest.approx(0.5)


def test_precision_counts_tied_edge_rows_in_part():
    # The top 20 % is 2 places: 0.9 takes one, and the four rows at 0.5 (two
    # of them positive) share the other, so it contains half a positive.
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    for order in (np.arange(10), np.array([0, 4, 3, 2, 1, 5, 6, 7, 8, 9])):
        metrics = evaluate_scores(y[order], scores[order], share=0.2)
        assert metrics["precision_at_10pct"] == pytest.approx(0.75)
        assert metrics["recall_at_10pct"] == pytest.approx(0.5)


def test_metrics_single_class_undefined():
    metrics = evaluate_scores(np.zeros(20, dtype=int), np.linspace(0, 1, 20))
    assert metrics["roc_auc"] is None
    assert metrics["pr_auc"] is None
    assert metrics["recall_at_10pct"] is None
    assert metrics["precision_at_10pct"] == 0.0


def test_cli_names_precision_shortfall():
    from ajoissa.cli import _print_baseline_shortfalls, console

    evaluation = {
        "latest_fold": "stratified",
        "promotion": {
            "model": {"roc_auc": 0.93, "precision_at_k_share": 0.980},
            "logistic": {"roc_auc": 0.92, "precision_at_k_share": 0.984},
            "rule": {"roc_auc": 0.60, "precision_at_k_share": 0.5},
        },
    }
    with console.capture() as captured:
        _print_baseline_shortfalls(evaluation)
    output = " ".join(captured.get().split())
    assert "precision_at_k_share: model 0.9800 does not beat logistic 0.9840" in output
    assert "roc_auc" not in output
    assert "rule" not in output


def test_cli_quiet_when_model_wins():
    from ajoissa.cli import _print_baseline_shortfalls, console

    evaluation = {
        "latest_fold": "cutoff_2014-01-01",
        "promotion": {
            "model": {"roc_auc": 0.80, "precision_at_k_share": 0.5},
            "logistic": {"roc_auc": 0.70, "precision_at_k_share": 0.4},
        },
    }
    with console.capture() as captured:
        _print_baseline_shortfalls(evaluation)
    assert captured.get() == ""


def test_list_scores_break_ties():
    from training.evaluate import list_scores

    p = np.array([0.2, 0.2, 0.5, 0.2])
    raw = np.array([0.1, 0.3, 0.9, 0.3])
    assert list_scores(p, raw).tolist() == [1.0, 2.0, 3.0, 2.0]


def test_auc_follows_tiebreak():
    rng = np.random.default_rng(4)
    raw = rng.random(400)
    y = (rng.random(400) < raw).astype(int)
    stepped = np.floor(raw * 4) / 4
    with_ties = evaluate_scores(y, stepped)
    listed = evaluate_scores(y, stepped, tiebreak=raw)
    assert listed["roc_auc"] == pytest.approx(evaluate_scores(y, raw)["roc_auc"])
    assert listed["roc_auc"] > with_ties["roc_auc"]
