"""Fold metrics with bootstrap confidence intervals, list stability and lead time.

Every ranked list is built within one as-of date, because welfare staff review
one list per date. Top-k is either a share of the learners at that date
(``top_share``) or a number per unit at that date (``k_per_unit``, the welfare
team's capacity per school). Equal probabilities are ordered by a tie-break
score (the booster's raw score for the model, the rule's own score for rules).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from training.evaluate import list_scores, top_weights_of

logger = logging.getLogger(__name__)

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Scored:
    """Probabilities of one model on the evaluation rows, and their tie-break."""

    probability: np.ndarray
    tiebreak: np.ndarray


def ranked(probability: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Return positions from highest to lowest risk; ties go to the higher tie-break."""
    positions = np.arange(len(probability))
    return np.lexsort((positions, -np.asarray(tiebreak), -np.asarray(probability)))


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Return ROC-AUC from mid-ranks (ties count one half), or None with one class."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(p)
    return float(
        (ranks[y == 1].sum() - positives * (positives + 1) / 2)
        / (positives * negatives)
    )


def average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Return average precision (PR-AUC) of ``scores``, or None without positives.

    Rows with equal scores form one threshold, as in scikit-learn's
    ``average_precision_score``: the sum over distinct thresholds, from the
    highest, of the precision at that threshold times the recall it adds. So
    the result does not depend on the order of tied rows. Pass
    :func:`training.evaluate.list_scores` to rank as the list does.
    """
    y = np.asarray(y)
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    ordered_scores = np.asarray(scores, dtype=float)[order]
    # The last row of each group of equal scores closes a threshold.
    closes = np.r_[np.flatnonzero(np.diff(ordered_scores) != 0), len(order) - 1]
    hits = np.cumsum(y[order])[closes]
    precision = hits / (closes + 1)
    recall_added = np.diff(np.r_[0, hits]) / positives
    return float((precision * recall_added).sum())


def calibration_error(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Return the expected calibration error over ``bins`` equal-width bins."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=p, minlength=bins)
    mean_y = np.bincount(index, weights=y, minlength=bins)
    filled = counts > 0
    gap = np.abs(mean_p[filled] - mean_y[filled]) / counts[filled]
    return float((gap * counts[filled]).sum() / len(y))


def calibration_curve(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Return mean predicted and observed rate per non-empty equal-width bin."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    curve = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            curve.append(
                {
                    "bin_low": b / bins,
                    "mean_predicted": float(p[inside].mean()),
                    "observed_rate": float(y[inside].mean()),
                    "rows": int(inside.sum()),
                }
            )
    return curve


def _group_list_sizes(
    groups: np.ndarray, share: float | None, k: int | None
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield each group's row positions and the size of its top list: ``share``
    of its rows (rounded up) or ``k`` rows."""
    if (share is None) == (k is None):
        raise ValueError("give exactly one of share and k")
    if share is not None and not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1]; got {share}")
    for positions in pd.Series(np.arange(len(groups))).groupby(groups).indices.values():
        yield positions, math.ceil(share * len(positions)) if share is not None else k


def select_top(
    groups: np.ndarray,
    probability: np.ndarray,
    tiebreak: np.ndarray,
    share: float | None = None,
    k: int | None = None,
) -> np.ndarray:
    """Return a mask of the top ``share`` (rounded up) or top ``k`` rows of each group."""
    selected = np.zeros(len(probability), dtype=bool)
    for positions, size in _group_list_sizes(groups, share, k):
        order = positions[ranked(probability[positions], tiebreak[positions])]
        selected[order[:size]] = True
    return selected


def top_weights(
    groups: np.ndarray,
    probability: np.ndarray,
    tiebreak: np.ndarray,
    share: float | None = None,
    k: int | None = None,
) -> np.ndarray:
    """Return each row's expected share of a top-``share`` or top-``k`` place.

    Like :func:`select_top`, but rows that tie on both the probability and the
    tie-break at the edge of a group's list share its last places
    (:func:`training.evaluate.top_weights_of`).
    """
    probability = np.asarray(probability, dtype=float)
    tiebreak = np.asarray(tiebreak, dtype=float)
    weights = np.zeros(len(probability))
    for positions, size in _group_list_sizes(groups, share, k):
        scores = list_scores(probability[positions], tiebreak[positions])
        weights[positions] = top_weights_of(scores, size)
    return weights


def _point_metrics(
    y: np.ndarray,
    scored: Scored,
    weight_share: np.ndarray,
    weight_unit: np.ndarray | None,
) -> dict[str, float | None]:
    p = scored.probability
    positives = int(y.sum())
    scores = list_scores(p, scored.tiebreak)

    def precision(weights: np.ndarray) -> float | None:
        total = float(weights.sum())
        return float(weights @ y) / total if total > 0 else None

    def recall(weights: np.ndarray) -> float | None:
        return float(weights @ y) / positives if positives else None

    values: dict[str, float | None] = {
        "roc_auc": roc_auc(y, scores),
        "pr_auc": average_precision(y, scores),
        "precision_at_k_share": precision(weight_share),
        "recall_at_k_share": recall(weight_share),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": calibration_error(y, p),
    }
    if weight_unit is not None:
        values["precision_at_k_per_unit"] = precision(weight_unit)
        values["recall_at_k_per_unit"] = recall(weight_unit)
    return values


class _Resampled:
    """The metrics of :func:`_point_metrics` for bootstrap resamples, without sorting.

    A resample is given by how many times it draws each row. The full data
    fixes the rows' order on the list, so each metric is a weighted sum over
    the rows or over the groups of tied rows. That takes a few ``bincount``
    calls per resample in place of a sort for each ranking metric.
    """

    def __init__(
        self,
        y: np.ndarray,
        scored: Scored,
        weight_share: np.ndarray,
        weight_unit: np.ndarray | None,
    ) -> None:
        self.y = y.astype(float)
        self.p = scored.probability
        # Groups of tied rows numbered from the lowest list score up.
        self.group = list_scores(scored.probability, scored.tiebreak).astype(int) - 1
        self.groups = int(self.group.max()) + 1 if len(self.group) else 0
        self.weight_share = weight_share
        self.weight_unit = weight_unit
        self.squared_error = (self.p - self.y) ** 2
        self.bin = np.minimum(
            (self.p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1
        )

    def metrics(self, counts: np.ndarray) -> dict[str, float | None]:
        """Return the metrics of the resample that draws row i ``counts[i]`` times."""
        counts = counts.astype(float)
        hits = counts * self.y
        positives = float(hits.sum())
        drawn = float(counts.sum())
        pos_by_group = np.bincount(self.group, weights=hits, minlength=self.groups)
        all_by_group = np.bincount(self.group, weights=counts, minlength=self.groups)

        def precision(weights: np.ndarray) -> float | None:
            total = float(weights @ counts)
            return float(weights @ hits) / total if total > 0 else None

        def recall(weights: np.ndarray) -> float | None:
            return float(weights @ hits) / positives if positives else None

        values: dict[str, float | None] = {
            "roc_auc": _grouped_roc_auc(pos_by_group, all_by_group),
            "pr_auc": _grouped_average_precision(pos_by_group, all_by_group),
            "precision_at_k_share": precision(self.weight_share),
            "recall_at_k_share": recall(self.weight_share),
            "brier": float(self.squared_error @ counts) / drawn,
            "ece": self._calibration_error(counts, hits, drawn),
        }
        if self.weight_unit is not None:
            values["precision_at_k_per_unit"] = precision(self.weight_unit)
            values["recall_at_k_per_unit"] = recall(self.weight_unit)
        return values

    def _calibration_error(
        self, counts: np.ndarray, hits: np.ndarray, drawn: float
    ) -> float:
        rows = np.bincount(self.bin, weights=counts, minlength=CALIBRATION_BINS)
        mean_p = np.bincount(
            self.bin, weights=counts * self.p, minlength=CALIBRATION_BINS
        )
        mean_y = np.bincount(self.bin, weights=hits, minlength=CALIBRATION_BINS)
        filled = rows > 0
        return float(np.abs(mean_p[filled] - mean_y[filled]).sum() / drawn)


def _grouped_roc_auc(positives: np.ndarray, rows: np.ndarray) -> float | None:
    """Return ROC-AUC from positive and row counts per tie group, lowest group first.

    A positive beats every negative in a lower group and half of those in its
    own group, as with mid-ranks in :func:`roc_auc`.
    """
    negatives = rows - positives
    total_positive, total_negative = positives.sum(), negatives.sum()
    if total_positive == 0 or total_negative == 0:
        return None
    below = np.cumsum(negatives) - negatives
    beaten = positives @ (below + 0.5 * negatives)
    return float(beaten / (total_positive * total_negative))


def _grouped_average_precision(positives: np.ndarray, rows: np.ndarray) -> float | None:
    """Return average precision from counts per tie group, lowest group first.

    Each group with rows is one threshold, taken from the highest group down,
    as in :func:`average_precision`.
    """
    total_positive = positives.sum()
    if total_positive == 0:
        return None
    hits = np.cumsum(positives[::-1])
    listed = np.cumsum(rows[::-1])
    added = positives[::-1]
    counted = added > 0
    return float((hits[counted] / listed[counted]) @ added[counted] / total_positive)


def metrics_with_intervals(
    y: np.ndarray,
    scored: Scored,
    groups: np.ndarray,
    units: np.ndarray,
    top_share: float,
    k_per_unit: int | None,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Return each metric with a 95 % bootstrap interval.

    Intervals are percentile intervals, except for the expected calibration
    error, whose interval is bias-corrected (see :func:`_interval`).

    The top-k selection is made once on all rows, with rows tied at its edge
    sharing the last places (:func:`top_weights`). Each resample draws rows with
    replacement and recomputes the metrics on the drawn rows and their
    selection, so the intervals show sampling noise in the evaluation set, not
    in training.
    """
    y = np.asarray(y, dtype=int)
    by_share = top_weights(groups, scored.probability, scored.tiebreak, share=top_share)
    by_unit = None
    if k_per_unit is not None:
        unit_groups = pd.Series(units).astype(str) + "|" + pd.Series(groups).astype(str)
        by_unit = top_weights(
            unit_groups.to_numpy(), scored.probability, scored.tiebreak, k=k_per_unit
        )
    point = _point_metrics(y, scored, by_share, by_unit)
    resampled = _Resampled(y, scored, by_share, by_unit)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    # No rows, no resamples: every interval is then None.
    for _ in range(resamples if len(y) else 0):
        rows = rng.integers(0, len(y), len(y))
        values = resampled.metrics(np.bincount(rows, minlength=len(y)))
        for name, value in values.items():
            if value is not None:
                draws[name].append(value)
    result: dict[str, Any] = {"rows": len(y), "positives": int(y.sum())}
    for name, value in point.items():
        result[name] = value
        if value is not None and len(draws[name]) >= max(10, resamples // 2):
            result[f"{name}_ci"] = _interval(name, value, np.asarray(draws[name]))
        else:
            result[f"{name}_ci"] = None
    return result


BIAS_CORRECTED_METRICS = ("ece",)
"""Metrics whose interval is shifted by the bootstrap's bias estimate."""


def _interval(name: str, value: float, draws: np.ndarray) -> list[float]:
    """Return the 95 % bootstrap interval of one metric.

    The expected calibration error of a resample is biased upwards, because
    duplicated rows make the bins noisier, so its percentile interval can lie
    wholly above the point value. For such metrics the percentile interval is
    shifted down by the bootstrap's bias estimate (the mean of the draws minus
    the point value), which centres the spread of the draws on the point value.
    The point value is then inside unless the mean of the draws lies outside
    their own 2.5-97.5 % range. The lower end is clipped at 0, the smallest
    possible error.
    """
    low, high = np.percentile(draws, [2.5, 97.5])
    if name in BIAS_CORRECTED_METRICS:
        bias = float(draws.mean()) - value
        low, high = max(low - bias, 0.0), high - bias
    return [float(low), float(high)]


def list_stability(
    rows: pd.DataFrame, scored: Scored, top_share: float
) -> dict[str, Any]:
    """Return the overlap of top-k lists between consecutive as-of dates of each unit.

    Overlap is the Jaccard index of the two lists, counting only enrolments that
    are active on both dates, so that learners who left do not count as churn.
    """
    selected = select_top(
        rows["asof_date"].astype(str).to_numpy(),
        scored.probability,
        scored.tiebreak,
        share=top_share,
    )
    frame = rows[["enrolment_id", "asof_date"]].assign(selected=selected)
    dates = sorted(frame["asof_date"].unique())
    pairs = []
    for earlier, later in itertools.pairwise(dates):
        a = frame[frame["asof_date"] == earlier].set_index("enrolment_id")["selected"]
        b = frame[frame["asof_date"] == later].set_index("enrolment_id")["selected"]
        common = a.index.intersection(b.index)
        in_a = set(common[a.loc[common].to_numpy()])
        in_b = set(common[b.loc[common].to_numpy()])
        union = in_a | in_b
        if union:
            pairs.append(
                {
                    "from": str(pd.Timestamp(earlier).date()),
                    "to": str(pd.Timestamp(later).date()),
                    "jaccard": len(in_a & in_b) / len(union),
                }
            )
    mean = float(np.mean([p["jaccard"] for p in pairs])) if pairs else None
    return {"mean_jaccard": mean, "pairs": len(pairs)}


def lead_time(rows: pd.DataFrame, scored: Scored, top_share: float) -> dict[str, Any]:
    """Return how long before leaving the learners who left were first in the top k.

    ``rows`` needs ``enrolment_id``, ``asof_date``, ``withdrawal_date`` (missing
    for learners who did not leave in the label window) and the label ``y``.
    """
    selected = select_top(
        rows["asof_date"].astype(str).to_numpy(),
        scored.probability,
        scored.tiebreak,
        share=top_share,
    )
    leavers = rows.assign(selected=selected)
    leavers = leavers[leavers["y"] == 1]
    count = int(leavers["enrolment_id"].nunique())
    if count == 0:
        return {"leavers": 0, "flagged_share": None, "median_days": None}
    first = (
        leavers[leavers["selected"]]
        .groupby("enrolment_id")
        .agg(first_flagged=("asof_date", "min"), left=("withdrawal_date", "first"))
    )
    days = (first["left"] - first["first_flagged"]).dt.days.dropna()
    return {
        "leavers": count,
        "flagged_share": float(len(first) / count),
        "median_days": float(days.median()) if len(days) else None,
        "mean_days": float(days.mean()) if len(days) else None,
    }
