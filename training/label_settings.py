"""The settings that define a version's label, stored on the registered version.

Two versions are trained to predict the same event only when their label
settings are equal. The settings are the source and the label window. Sources
with study-right histories add the transfer gap and the age at which
compulsory education ends, and a mapped table adds its outcome rule. The main
job stores them as JSON in the version tag ``LABEL_SETTINGS_TAG``. ``ajoissa retrain``
warns, and ``ajoissa promote`` rejects the challenger, when the challenger's
settings differ from the champion's or the champion has none recorded
(versions registered before the tag existed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from features.labels import LabelRule

logger = logging.getLogger(__name__)

LABEL_SETTINGS_TAG = "label_settings"
"""Model version tag with the label settings as JSON (sorted keys)."""

SETTING_NAMES = {
    "source": "source",
    "label_window_days": "label window",
    "transfer_gap_days": "transfer gap",
    "compulsory_education_until_age": "compulsory education until age",
    "outcome": "outcome",
}
"""Words for each setting in messages, in the order they are listed."""


def label_settings(
    source: str,
    rule: LabelRule | None,
    window_days: int | None,
    *,
    has_history: bool,
    outcome: str | None = None,
) -> dict[str, Any]:
    """Return the settings that define the label of a run.

    Sources with study-right histories are labelled by ``rule`` (its defaults
    when it is None), as :func:`features.build.build_features` does. Other
    sources label a withdrawal within ``window_days`` (None: before the unit
    ends). ``outcome`` is a mapped table's outcome rule in words.
    """
    settings: dict[str, Any] = {"source": source}
    if has_history:
        rule_settings = asdict(rule or LabelRule())
        settings["label_window_days"] = rule_settings.pop("window_days")
        settings |= rule_settings
    else:
        settings["label_window_days"] = window_days
    if outcome is not None:
        settings["outcome"] = outcome
    return settings


def label_settings_tag(settings: Mapping[str, Any]) -> str:
    """Return ``settings`` as the JSON text stored in ``LABEL_SETTINGS_TAG``."""
    return json.dumps(dict(settings), sort_keys=True)


def read_label_settings(tags: Mapping[str, str] | None) -> dict[str, Any] | None:
    """Return the label settings stored in a version's tags, or None without them.

    A tag that is not a JSON object also gives None, with a warning, because
    the settings it was meant to contain are then unknown.
    """
    text = (tags or {}).get(LABEL_SETTINGS_TAG)
    if text is None:
        return None
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        logger.warning("invalid %s tag %r: %s", LABEL_SETTINGS_TAG, text, exc)
        return None
    if not isinstance(settings, dict):
        logger.warning("invalid %s tag %r: not a JSON object", LABEL_SETTINGS_TAG, text)
        return None
    return settings


def describe_settings(settings: Mapping[str, Any]) -> str:
    """Return every setting in words, such as ``source oulad, label window 60 days``."""
    return ", ".join(
        f"{SETTING_NAMES.get(key, key)} {_value_text(key, value)}"
        for key, value in _ordered(settings)
    )


def label_differences(
    champion: Mapping[str, Any], challenger: Mapping[str, Any]
) -> list[str]:
    """Return one line per setting that differs, naming both values.

    An empty list means the two versions were trained on the same label.
    """
    keys = dict.fromkeys([*champion, *challenger])
    differences = []
    for key, _ in _ordered(keys):
        champion_value = champion.get(key, _NOT_SET)
        challenger_value = challenger.get(key, _NOT_SET)
        if challenger_value != champion_value:
            differences.append(
                f"{SETTING_NAMES.get(key, key)}: champion "
                f"{_value_text(key, champion_value)}, "
                f"challenger {_value_text(key, challenger_value)}"
            )
    return differences


def label_change_problem(
    champion_version: str,
    champion: Mapping[str, Any] | None,
    challenger: Mapping[str, Any] | None,
) -> str | None:
    """Return why the two versions' metrics may measure different events, or None.

    None means both versions record the same label settings. Otherwise the
    text names the settings that differ with both values, or the version whose
    settings are unknown.
    """
    if champion is None:
        known = f" ({describe_settings(challenger)})" if challenger is not None else ""
        return (
            f"champion version {champion_version} has no recorded label settings "
            "(versions registered before Ajoissa recorded them have none), so it "
            "is unknown whether it was trained on the same label as the challenger"
            f"{known}. Its model card states its label in words"
        )
    if challenger is None:
        return (
            "the challenger has no recorded label settings (versions registered "
            "before Ajoissa recorded them have none), so it is unknown whether it "
            f"was trained on the same label as champion version {champion_version} "
            f"({describe_settings(champion)})"
        )
    differences = label_differences(champion, challenger)
    if not differences:
        return None
    return (
        f"the challenger's label differs from champion version {champion_version}'s "
        f"({'; '.join(differences)}), so the two models predict different events "
        "and their metrics are not comparable"
    )


_NOT_SET = object()


def _ordered(settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Return the settings in the order of ``SETTING_NAMES``, unknown keys last."""
    order = {key: i for i, key in enumerate(SETTING_NAMES)}
    return sorted(settings.items(), key=lambda item: order.get(item[0], len(order)))


def _value_text(key: str, value: Any) -> str:
    if value is _NOT_SET:
        return "not set"
    if key == "label_window_days" and value is None:
        return "until the unit ends"
    if key.endswith("_days") and value is not None:
        return f"{value} days"
    return str(value)
