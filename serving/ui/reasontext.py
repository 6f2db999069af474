"""Reason sentences for the review screens, in the reader's language.

The sentence templates are kept in one place, :mod:`models.reason_text`, so
the review screens and the offline reason file use the same text. This module
only adapts a stored reason (a dict from
:func:`models.reasons.reason_codes`) to the reader's :class:`Translator`.
"""

from __future__ import annotations

from typing import Any

from models.reason_text import reason_sentence as model_sentence
from models.reason_text import stored_reasons_to_show
from serving.ui.i18n import Translator


def reason_sentences(t: Translator, reasons: list[dict[str, Any]]) -> list[str]:
    """Return one sentence per reason in ``t``'s language.

    Reasons stored before a feature was marked as never named, and reasons
    without a direction, are left out rather than shown. So is a reason stored
    before the ``same_reason`` groups existed whose feature shares a group with
    a reason shown before it.
    """
    directed = [r for r in reasons if r.get("direction") in ("raises", "lowers")]
    sentences = []
    for reason in stored_reasons_to_show(directed):
        feature = str(reason["feature"])
        direction = reason["direction"]
        sentences.append(
            model_sentence(feature, reason.get("value"), direction, t.language)
        )
    return sentences
