"""Plain-language sentences for reason codes, in the reader's language.

A reason code names a feature, its value for the pupil and whether it raises or
lowers the estimate (see :func:`models.reasons.reason_codes`). Each known
feature has a sentence template ``reason.<feature>`` and a short name
``feature.<feature>`` in the message catalogues. Features without a template,
for example the attributes of another source, are shown as name and value.
"""

from __future__ import annotations

import math
from typing import Any

from serving.ui.i18n import Translator

SHARE_FEATURES = frozenset(
    {
        "share_submitted",
        "absence_share",
        "unexcused_share",
        "late_share",
        "absence_share_recent",
        "unexcused_share_recent",
    }
)
"""Features that are shares from 0 to 1, shown as percentages."""

SCORE_FEATURES = frozenset(
    {"mean_score", "weighted_mean_score", "last_score", "min_score"}
)
"""Features on the 0 to 100 grade scale, shown rounded to whole points."""


def format_value(t: Translator, feature: str, value: Any) -> str:
    """Format a feature value for a sentence in ``t``'s language."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "?"
    if feature in SHARE_FEATURES:
        return t.percent(float(value))
    if feature in SCORE_FEATURES:
        return t.number(float(value))
    if float(value).is_integer():
        return str(int(value))
    return t.number(float(value), 1)


def feature_name(t: Translator, feature: str) -> str:
    """Return the feature's short name, or the column name when it has none."""
    key = f"feature.{feature}"
    return t(key) if t.has(key) else feature


def reason_sentence(t: Translator, reason: dict[str, Any]) -> str:
    """Return one sentence for a reason: what the record shows and its effect."""
    feature = str(reason.get("feature", ""))
    value = reason.get("value")
    if value is None:
        text = t("reason.missing", feature=feature_name(t, feature))
    elif t.has(f"reason.{feature}"):
        text = t(f"reason.{feature}", value=format_value(t, feature, value))
    else:
        text = t(
            "reason.generic",
            feature=feature_name(t, feature),
            value=format_value(t, feature, value),
        )
    direction = reason.get("direction")
    if direction in ("raises", "lowers"):
        return f"{text}: {t(f'direction.{direction}')}."
    return f"{text}."
