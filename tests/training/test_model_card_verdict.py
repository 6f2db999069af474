"""The model card's sentence on the baselines."""

from training.model_card import _baseline_verdict


def test_verdict_names_winning_baseline():
    overall = {
        "model": {"roc_auc": 0.66, "precision_at_k_share": 0.31},
        "logistic": {"roc_auc": 0.69, "precision_at_k_share": 0.35},
        "rule": {"roc_auc": 0.60, "precision_at_k_share": None},
    }
    (text,) = _baseline_verdict(overall)
    assert "does not beat logistic (ROC-AUC 0.690, model 0.660)" in text
    assert "logistic (precision at k 0.350, model 0.310)" in text
    assert "rule (" not in text


def test_verdict_when_model_wins():
    overall = {
        "model": {"roc_auc": 0.8, "precision_at_k_share": 0.4},
        "logistic": {"roc_auc": 0.7, "precision_at_k_share": 0.3},
    }
    (text,) = _baseline_verdict(overall)
    assert "higher ROC-AUC and precision at k than every baseline" in text


def test_verdict_names_lead_inside_intervals():
    overall = {
        "model": {
            "roc_auc": 0.70865,
            "roc_auc_ci": [0.702, 0.714],
            "precision_at_k_share": 0.40,
            "precision_at_k_share_ci": [0.38, 0.42],
        },
        "logistic": {
            "roc_auc": 0.70861,
            "roc_auc_ci": [0.702, 0.714],
            "precision_at_k_share": 0.30,
            "precision_at_k_share_ci": [0.28, 0.32],
        },
    }
    first, second = _baseline_verdict(overall)
    assert "higher ROC-AUC and precision at k than every baseline" in first
    assert second.startswith("Some of these leads are too small")
    assert second.endswith("in ROC-AUC over logistic (logistic 0.7086, model 0.7087).")
    assert "precision at k" not in second


def test_verdict_equal_figures_keep_three_decimals():
    overall = {
        "model": {"roc_auc": 0.7, "precision_at_k_share": 0.3},
        "logistic": {"roc_auc": 0.7, "precision_at_k_share": 0.2},
    }
    (text,) = _baseline_verdict(overall)
    assert "does not beat logistic (ROC-AUC 0.700, model 0.700)" in text
