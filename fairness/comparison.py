"""Differences and ratios against a reference group, with bootstrap intervals.

Rows of one learner (one per as-of date) are not independent, so the bootstrap
resamples learners, not rows. Each replicate draws as many learners as there are,
with replacement. Every row of a drawn learner then enters with the learner's
multiplicity as its weight. The selections stay as they were at the operating
point, so the intervals cover the uncertainty of the rates for a fixed model and
threshold, not of the threshold itself. Intervals are percentile intervals.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

COMPARED_METRICS = (
    "prevalence",
    "selection_rate",
    "recall",
    "false_negative_rate",
    "false_positive_rate",
    "precision",
    "calibration_gap",
)
"""Metrics compared with the reference group. ROC-AUC is not among them (see the
note in :func:`compare_with_reference`)."""

_NO_RATIO = {"calibration_gap"}
"""Metrics that can be negative, so only their difference is meaningful."""

MIN_DEFINED_SHARE = 0.9
"""Share of bootstrap replicates in which the metric must be defined for an
interval to be given, because an interval over fewer would describe a biased
subset of the replicates."""

LARGEST = "largest"
"""Reference rule: the shown group with the most distinct learners, other than
``unknown``."""


@dataclass(frozen=True)
class BootstrapSettings:
    """Settings of the bootstrap confidence intervals."""

    replicates: int = 200
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replicates < 0:
            raise ValueError(f"replicates must be 0 or more, got {self.replicates}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_reference(
    table: pd.DataFrame, rule: str, unknown: str
) -> tuple[str | None, str]:
    """Pick the reference group among the shown groups of ``table``.

    Parameters
    ----------
    table
        Shown groups with the columns ``group`` and ``learners``.
    rule
        ``LARGEST``, or the name of a group.
    unknown
        Name of the group of missing values, never chosen by ``LARGEST``.

    Returns
    -------
    tuple
        The reference group (``None`` when none can be used) and a sentence
        saying how it was chosen or why there is none.
    """
    shown = [str(group) for group in table["group"]]
    if rule != LARGEST:
        if rule in shown:
            return rule, f"the policy names {rule!r} as the reference group"
        return None, (
            f"the policy names {rule!r} as the reference group, but it is not "
            "among the shown groups (absent or suppressed)"
        )
    known = table[table["group"] != unknown]
    if known.empty:
        return None, "no shown group other than unknown can be the reference"
    # Ties go to the group that sorts first, so the choice is reproducible.
    ordered = known.sort_values(["learners", "group"], ascending=[False, True])
    reference = str(ordered.iloc[0]["group"])
    return reference, f"{reference!r} is the shown group with the most learners"


def _weighted_metrics(
    codes: np.ndarray,
    groups: int,
    labels: np.ndarray,
    selections: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Return the ``COMPARED_METRICS`` per group (metrics by groups), NaN if undefined."""

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=weights * values, minlength=groups)

    positives = total(labels)
    rows = np.bincount(codes, weights=weights, minlength=groups)
    negatives = rows - positives
    chosen = total(selections)
    true_positives = total(labels * selections)
    score_sum = total(scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        prevalence = np.where(rows > 0, positives / rows, np.nan)
        recall = np.where(positives > 0, true_positives / positives, np.nan)
        metrics = {
            "prevalence": prevalence,
            "selection_rate": np.where(rows > 0, chosen / rows, np.nan),
            "recall": recall,
            "false_negative_rate": 1.0 - recall,
            "false_positive_rate": np.where(
                negatives > 0, (chosen - true_positives) / negatives, np.nan
            ),
            "precision": np.where(chosen > 0, true_positives / chosen, np.nan),
            "calibration_gap": np.where(
                rows > 0, prevalence - score_sum / rows, np.nan
            ),
        }
    return np.vstack([metrics[name] for name in COMPARED_METRICS])


def _contrasts(metrics: np.ndarray, reference: int) -> tuple[np.ndarray, np.ndarray]:
    reference_values = metrics[:, [reference]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(reference_values != 0, metrics / reference_values, np.nan)
    return metrics - reference_values, ratio


def compare_with_reference(
    groups: pd.Series,
    labels: np.ndarray,
    selections: np.ndarray,
    scores: np.ndarray,
    learners: np.ndarray,
    *,
    reference: str,
    settings: BootstrapSettings,
    reasons: dict[str, dict[str, str]],
) -> pd.DataFrame:
    """Compare every shown group with ``reference`` on each of ``COMPARED_METRICS``.

    Parameters
    ----------
    groups
        Group name per row; only rows of shown groups.
    labels, selections, scores
        True label (0 or 1), selection (0 or 1) and risk score per row.
    learners
        Learner identifier per row; the bootstrap resamples these.
    reference
        Name of the reference group, one of ``groups``.
    settings
        Replicates, confidence level and seed of the bootstrap.
    reasons
        Per group and metric, why a point estimate is undefined.

    Returns
    -------
    pandas.DataFrame
        One row per non-reference group and metric with ``group``, ``metric``,
        ``value``, ``reference_value``, ``difference`` with ``difference_low`` and
        ``difference_high``, ``ratio`` with ``ratio_low`` and ``ratio_high``,
        ``replicates_defined`` and the reasons ``difference_reason`` and
        ``ratio_reason`` (``None`` when the value is defined). Interval bounds
        are NaN when no interval could be computed, and the reason column gives why.
    """
    # NOTE: ROC-AUC per group is reported but not compared here, because a
    # weighted AUC per replicate would cost one sort per group and replicate.
    names = list(dict.fromkeys(groups))
    code_of = {name: code for code, name in enumerate(names)}
    codes = groups.map(code_of).to_numpy(dtype=int)
    ref = code_of[reference]
    labels = labels.astype(float)
    selections = selections.astype(float)
    _, learner_codes = np.unique(learners, return_inverse=True)
    learner_count = int(learner_codes.max()) + 1

    point = _weighted_metrics(
        codes, len(names), labels, selections, scores, np.ones(len(codes))
    )
    point_difference, point_ratio = _contrasts(point, ref)

    rng = np.random.default_rng(settings.seed)
    differences = np.full((settings.replicates, *point.shape), np.nan)
    ratios = np.full_like(differences, np.nan)
    for replicate in range(settings.replicates):
        drawn = rng.integers(0, learner_count, learner_count)
        multiplicity = np.bincount(drawn, minlength=learner_count).astype(float)
        weights = multiplicity[learner_codes]
        metrics = _weighted_metrics(
            codes, len(names), labels, selections, scores, weights
        )
        differences[replicate], ratios[replicate] = _contrasts(metrics, ref)

    tail = (1 - settings.confidence) / 2 * 100
    rows = []
    for m, metric in enumerate(COMPARED_METRICS):
        for g, name in enumerate(names):
            if g == ref:
                continue
            rows.append(
                _comparison_row(
                    name,
                    metric,
                    point=(point[m, g], point[m, ref]),
                    difference=(point_difference[m, g], differences[:, m, g]),
                    ratio=(point_ratio[m, g], ratios[:, m, g]),
                    tail=tail,
                    reasons=(reasons.get(name, {}), reasons.get(reference, {})),
                )
            )
    logger.info(
        "compared %d groups with reference %r over %d bootstrap replicates",
        len(names) - 1,
        reference,
        settings.replicates,
    )
    return pd.DataFrame(rows, columns=_COLUMNS)


_COLUMNS = [
    "group",
    "metric",
    "value",
    "reference_value",
    "difference",
    "difference_low",
    "difference_high",
    "difference_reason",
    "ratio",
    "ratio_low",
    "ratio_high",
    "ratio_reason",
    "replicates_defined",
]


def _interval(
    replicates: np.ndarray, tail: float
) -> tuple[float, float, int, str | None]:
    defined = replicates[~np.isnan(replicates)]
    if len(replicates) == 0:
        return np.nan, np.nan, 0, "no bootstrap replicates were requested"
    if len(defined) < MIN_DEFINED_SHARE * len(replicates):
        return (
            np.nan,
            np.nan,
            len(defined),
            f"the value is undefined in {len(replicates) - len(defined)} of "
            f"{len(replicates)} bootstrap replicates, so no interval is given",
        )
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), len(defined), None


def _comparison_row(
    group: str,
    metric: str,
    *,
    point: tuple[float, float],
    difference: tuple[float, np.ndarray],
    ratio: tuple[float, np.ndarray],
    tail: float,
    reasons: tuple[dict[str, str], dict[str, str]],
) -> dict[str, Any]:
    value, reference_value = point
    group_reason, reference_reason = reasons
    undefined_reason = None
    if np.isnan(value):
        undefined_reason = f"undefined in this group: {group_reason.get(metric, '')}"
    elif np.isnan(reference_value):
        undefined_reason = (
            f"undefined in the reference group: {reference_reason.get(metric, '')}"
        )

    difference_low, difference_high, defined, difference_reason = _interval(
        difference[1], tail
    )
    if undefined_reason:
        difference_reason = undefined_reason

    if metric in _NO_RATIO:
        ratio_value, ratio_low, ratio_high = np.nan, np.nan, np.nan
        ratio_reason = "this metric can be negative, so only its difference is used"
    elif undefined_reason:
        ratio_value, ratio_low, ratio_high = np.nan, np.nan, np.nan
        ratio_reason = undefined_reason
    elif reference_value == 0:
        ratio_value, ratio_low, ratio_high = np.nan, np.nan, np.nan
        ratio_reason = (
            "the reference group's value is 0, so the ratio has no denominator"
        )
    else:
        ratio_value = ratio[0]
        ratio_low, ratio_high, _, ratio_reason = _interval(ratio[1], tail)

    return {
        "group": group,
        "metric": metric,
        "value": float(value),
        "reference_value": float(reference_value),
        "difference": float(difference[0]) if not undefined_reason else np.nan,
        "difference_low": difference_low if not undefined_reason else np.nan,
        "difference_high": difference_high if not undefined_reason else np.nan,
        "difference_reason": difference_reason,
        "ratio": float(ratio_value),
        "ratio_low": float(ratio_low),
        "ratio_high": float(ratio_high),
        "ratio_reason": ratio_reason,
        "replicates_defined": int(defined),
    }
