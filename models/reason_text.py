"""Plain-language reason sentences in Finnish, Swedish and English.

The sentences come from ``models/reason_texts.yaml``: one template per feature
and language, filled with the feature's value in its unit and its time window,
for example "unexcused absences 14 % over the last 4 weeks". A template may add
a singular form under ``one``, used when the value is shown as exactly "1"
("1 assignment submitted" against "3 assignments submitted"). A feature that is a
sensitive attribute, a context feature or listed under ``never_named`` is never
given as a reason. Of the features in one ``same_reason`` group, only the one
with the largest absolute contribution is named.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from features.build import CONTEXT_FEATURES, RECENT_DAYS
from sources.contract import SENSITIVE_ATTRIBUTES

TEXTS_PATH = Path(__file__).with_name("reason_texts.yaml")
LANGUAGES = ("fi", "sv", "en")
CONTRIBUTION_UNIT = "log-odds"
"""Unit of SHAP contributions: LightGBM's raw score for binary classification."""

FORMATS = (
    "percent",
    "count",
    "days",
    "decimal_days",
    "hours",
    "score",
    "grade",
    "points_per_week",
    "level",
    "text",
)
"""Value formats a template may name; ``models/reason_texts.yaml`` describes them."""

_DECIMAL_COMMA = {"fi", "sv"}


@functools.cache
def reason_texts() -> dict[str, Any]:
    """Return the parsed sentence templates (read once per process)."""
    return yaml.safe_load(TEXTS_PATH.read_text(encoding="utf-8"))


def unnamed_features(extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Return features that are never given as reasons.

    They are the sensitive attributes (with and without the ``attr_`` prefix that
    attribute features get), the context features, the ``never_named`` proxies
    and ``extra``.
    """
    sensitive = {*SENSITIVE_ATTRIBUTES, *extra}
    return frozenset(
        {*sensitive, *(f"attr_{name}" for name in sensitive), *CONTEXT_FEATURES}
        | set(reason_texts().get("never_named", []))
    )


def reason_group(feature: str) -> str:
    """Return the first feature of ``feature``'s ``same_reason`` group.

    A feature in no group is its own group. Features of one group measure the
    same thing, so reason selection names at most one of them.
    """
    return _reason_groups().get(feature, feature)


@functools.cache
def _reason_groups() -> dict[str, str]:
    groups = reason_texts().get("same_reason", [])
    return {feature: group[0] for group in groups for feature in group}


def stored_reasons_to_show(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return stored ``reasons`` as they may be shown now.

    Reasons stored before a feature was marked as never named are left out,
    and so is a reason whose feature shares a ``same_reason`` group with one
    before it (:func:`first_reason_per_group`).
    """
    hidden = unnamed_features()
    return first_reason_per_group(
        [reason for reason in reasons if str(reason.get("feature", "")) not in hidden]
    )


def first_reason_per_group(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop each reason whose feature shares a ``same_reason`` group with an earlier one.

    Reasons stored before the groups existed can name two features of one
    group. Reason selection orders reasons by absolute contribution, so the
    first one kept is the stronger one.
    """
    kept = []
    named_groups = set()
    for reason in reasons:
        group = reason_group(str(reason.get("feature", "")))
        if group in named_groups:
            continue
        named_groups.add(group)
        kept.append(reason)
    return kept


def format_value(value: Any, kind: str, language: str) -> str:
    """Format a feature value in its unit, with the language's decimal mark.

    Raises
    ------
    ValueError
        If ``kind`` is not one of ``FORMATS``.
    """
    if kind not in FORMATS:
        raise ValueError(f"value format {kind!r} is not one of {FORMATS}")
    if kind == "text":
        return str(value)
    number = float(value)
    if kind == "percent":
        text = f"{number * 100:.0f} %"
    elif kind in ("count", "days", "level"):
        text = f"{number:.0f}"
    elif kind == "score":
        text = f"{number:.0f}/100"
    elif kind == "grade":
        text = f"{number:.2f}"
    elif kind == "points_per_week":
        # A slope of a 0/1 indicator over day numbers is a change in share per
        # day, so 7 days and 100 percentage points turn it into points per week.
        text = f"{number * 7 * 100:.1f}"
    else:
        text = f"{number:.1f}"
    if language in _DECIMAL_COMMA:
        text = text.replace(".", ",")
    return text


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def reason_sentence(feature: str, value: Any, direction: str, language: str) -> str:
    """Build one sentence: the direction, then the feature's value and window.

    Raises
    ------
    ValueError
        If ``language`` is not one of ``LANGUAGES``, ``direction`` is not
        ``raises`` or ``lowers``, or ``feature`` must never be named.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r} is not one of {LANGUAGES}")
    texts = reason_texts()
    if direction not in texts["direction"]:
        raise ValueError(f"direction must be 'raises' or 'lowers', got {direction!r}")
    if feature in unnamed_features():
        raise ValueError(
            f"feature {feature!r} is a sensitive attribute, a proxy of one or a "
            "context feature, so it is never given as a reason"
        )
    prefix = texts["direction"][direction][language]
    return f"{prefix}: {feature_text(feature, value, language)}"


def feature_text(feature: str, value: Any, language: str) -> str:
    """Describe a feature's value in ``language``, as a reason does after its
    direction, such as "highest support level over the last 365 days:
    intensified support"."""
    texts = reason_texts()
    entry = texts["features"].get(feature)
    if entry is None:
        # NOTE: source-specific attribute features without a template get a
        # generic sentence that shows the column name untranslated.
        shown = "-" if _is_missing(value) else str(value)
        body = texts["unknown_feature"][language].format(
            name=feature.removeprefix("attr_"), value=shown
        )
    elif _is_missing(value):
        body = texts["missing"][language].format(label=entry["label"][language])
    else:
        templates = entry
        if "negative" in entry and float(value) < 0:
            # A template for negative values reads "after" where the usual
            # one reads "before", so the number is shown without its sign.
            templates, value = entry["negative"], -float(value)
        value_text = _value_text(entry, value, language)
        template = _template_for(templates, value_text, language)
        body = template.format(value=value_text, weeks=RECENT_DAYS // 7)
    return body


def _template_for(templates: dict[str, Any], value_text: str, language: str) -> str:
    """Return the singular form under ``one`` when ``value_text`` is exactly "1"
    and the language has one, otherwise the main template."""
    singular = templates.get("one", {}).get(language)
    if value_text == "1" and singular is not None:
        return str(singular)
    return str(templates[language])


def _value_text(entry: dict[str, Any], value: Any, language: str) -> str:
    """Return the value in words when the template lists its code under
    ``levels``, otherwise the value in the template's format."""
    if entry["format"] == "level" and float(value).is_integer():
        words = entry.get("levels", {}).get(int(float(value)))
        if words is not None:
            return str(words[language])
    return format_value(value, entry["format"], language)


def top_reasons(
    contributions: np.ndarray,
    values: pd.Series,
    features: list[str],
    *,
    top_n: int = 3,
    exclude: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Pick one row's ``top_n`` nameable features by absolute contribution.

    A feature of a ``same_reason`` group whose stronger member is already
    named is skipped, as are the features of :func:`unnamed_features`.

    Returns dicts with ``feature``, ``value``, ``contribution_log_odds``,
    ``direction`` and ``sentences`` (one per language).
    """
    hidden = unnamed_features(exclude)
    order = np.argsort(-np.abs(contributions), kind="stable")
    reasons = []
    named_groups = set()
    for column in order:
        name = features[column]
        contribution = float(contributions[column])
        if name in hidden or reason_group(name) in named_groups:
            continue
        if contribution == 0.0 or len(reasons) == top_n:
            break
        value = values[name]
        direction = "raises" if contribution > 0 else "lowers"
        named_groups.add(reason_group(name))
        reasons.append(
            {
                "feature": name,
                "value": None if _is_missing(value) else _plain(value),
                "contribution_log_odds": round(contribution, 4),
                "direction": direction,
                "sentences": {
                    language: reason_sentence(name, value, direction, language)
                    for language in LANGUAGES
                },
            }
        )
    return reasons


def feature_label(feature: str, language: str = "en") -> str:
    """Return a feature's readable label, or its column name without a template."""
    entry = reason_texts()["features"].get(feature)
    return entry["label"][language] if entry else feature.removeprefix("attr_")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
