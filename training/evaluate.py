"""Evaluation metrics for ranked risk scores."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

METRIC_NAMES = ("roc_auc", "pr_auc", "precision_at_10pct", "recall_at_10pct", "brier")


def top_share_mask(scores: np.ndarray, share: float) -> np.ndarray:
    """Return a mask selecting the ``ceil(share * n)`` highest scores.

    Equal scores are broken by row order (a stable sort), so the selection is
    reproducible and has exactly the requested size.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    n = len(scores)
    k = math.ceil(share * n)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


def list_scores(probability: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Return scores that order rows as the ranked list does.

    The list orders by probability and breaks equal probabilities by
    ``tiebreak`` (the booster's raw score for the model). Isotonic calibration
    maps many raw scores to one probability, so ranking metrics computed on the
    probability alone would score a list that staff never see. Rows equal in
    both values get the same score and count as ties.
    """
    p = np.asarray(probability, dtype=float)
    t = np.asarray(tiebreak, dtype=float)
    order = np.lexsort((t, p))
    changed = (np.diff(p[order]) != 0) | (np.diff(t[order]) != 0)
    scores = np.empty(len(p))
    scores[order] = np.cumsum(np.r_[True, changed])
    return scores


def evaluate_scores(
    y_true: np.ndarray,
    scores: np.ndarray,
    share: float = 0.10,
    tiebreak: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Return ROC-AUC, PR-AUC, precision and recall in the top ``share``, and Brier score.

    ``scores`` must be probabilities for the Brier score to mean anything. With
    ``tiebreak`` the ranking metrics use the order of :func:`list_scores`. A
    metric that is undefined for the data (AUCs with one class only) is ``None``.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(scores, dtype=float)
    order = p if tiebreak is None else list_scores(p, tiebreak)
    selected = top_share_mask(order, share)
    positives = int(y.sum())
    both_classes = 0 < positives < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, order)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, order)) if both_classes else None,
        "precision_at_10pct": float(y[selected].mean()) if selected.any() else None,
        "recall_at_10pct": float(y[selected].sum() / positives) if positives else None,
        "brier": float(brier_score_loss(y, p)),
    }
