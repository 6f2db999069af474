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


def top_weights_of(scores: np.ndarray, size: int) -> np.ndarray:
    """Return each row's expected share of the ``size`` places at the top of ``scores``.

    Rows above the edge of the list get 1 and rows below it 0. Rows whose score
    equals the last place's share the places left equally: 3 places for 6 tied
    rows give each 0.5. Precision and recall computed with these weights are
    their expected values over a random order of the tied rows. So they do not
    depend on the order of the rows in the data, and a score that is the same
    for every row gets the base rate as its precision.
    """
    scores = np.asarray(scores, dtype=float)
    if size >= len(scores):
        return np.ones(len(scores))
    if size <= 0:
        return np.zeros(len(scores))
    edge = np.sort(scores)[::-1][size - 1]
    above, tied = scores > edge, scores == edge
    weights = above.astype(float)
    weights[tied] = (size - int(above.sum())) / int(tied.sum())
    return weights


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
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    # Rows tied at the edge of the top share split its last places.
    weights = top_weights_of(order, math.ceil(share * len(order)))
    hits = float(weights @ y)
    positives = int(y.sum())
    both_classes = 0 < positives < len(y)
    return {
        "roc_auc": float(roc_auc_score(y, order)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, order)) if both_classes else None,
        "precision_at_10pct": hits / float(weights.sum()) if weights.any() else None,
        "recall_at_10pct": hits / positives if positives else None,
        "brier": float(brier_score_loss(y, p)),
    }
