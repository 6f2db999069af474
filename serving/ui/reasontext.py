"""Reason sentences for the review screens, in the reader's language.

The sentence templates are kept in one place, :mod:`models.reason_text`, so
the review screens and the offline reason file use the same text. This module
only adapts a stored reason (a dict from
:func:`models.reasons.reason_codes`) to the reader's :class:`Translator`.
"""

from __future__ import annotations

from typing import Any

from models.reason_text import first_reason_per_group, unnamed_features
from models.reason_text import reason_sentence as model_sentence
from serving.ui.i18n import Translator


def reason_sentences(t: Translator, reasons: list[dict[str, Any]]) -> list[str]:
    """Return one sentence per reason in ``t``'s language.

    Reasons stored before a feature was marked as never named, and reasons
    without a direction, are left out rather than shown. So is a reason stored
    before the ``same_reason`` groups existed whose feature shares a group with
    a reason shown before it.
    """
    hidden = unnamed_features()
    nameable = []
    for reason in reasons:
        feature = str(reason.get("feature", ""))
        direction = reason.get("direction")
        if feature in hidden or direction not in ("raises", "lowers"):
            continue
        nameable.append(reason)
    sentences = []
    for reason in first_reason_per_group(nameable):
        feature = str(reason["feature"])
        direction = reason["direction"]
        sentences.append(
            model_sentence(feature, reason.get("value"), direction, t.language)
        )
    return sentences
