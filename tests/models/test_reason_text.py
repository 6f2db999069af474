import math
import re

import numpy as np
import pandas as pd
import pytest

from features.build import ASSESSMENT_FEATURES, ATTENDANCE_FEATURES, CONTEXT_FEATURES
from models.reason_text import (
    LANGUAGES,
    reason_sentence,
    reason_texts,
    top_reasons,
    unnamed_features,
)
from sources.contract import SENSITIVE_ATTRIBUTES

SENSITIVE_WORDS = {
    "en": [
        "gender",
        "sex",
        "age",
        "disab",
        "mother tongue",
        "language",
        "deprivation",
        "income",
        "support",
        "nationality",
        "immigra",
        "ethnic",
    ],
    "fi": [
        "sukupuol",
        "ikä",
        "vamma",
        "äidinkiel",
        "kieli",
        "tulo",
        "tuki",
        "kansalais",
        "maahanmuut",
    ],
    "sv": [
        "kön",
        "ålder",
        "funktionsneds",
        "modersmål",
        "språk",
        "inkomst",
        "stöd",
        "nationalitet",
        "invandr",
    ],
}


def sample_value(kind: str):
    return {
        "percent": 0.14,
        "count": 3,
        "days": 12,
        "decimal_days": 1.5,
        "score": 62.0,
        "text": "A",
    }[kind]


def test_recent_window_sentence():
    sentence = reason_sentence("unexcused_share_recent", 0.14, "raises", "en")
    assert sentence == "Raises the risk: unexcused absences 14 % over the last 4 weeks"


def test_finnish_sentence():
    sentence = reason_sentence("unexcused_share_recent", 0.14, "raises", "fi")
    assert (
        sentence
        == "Nostaa riskiä: luvattomia poissaoloja 14 % viimeisten 4 viikon aikana"
    )


def test_swedish_decimal_comma():
    sentence = reason_sentence("mean_days_early", 1.5, "lowers", "sv")
    assert "1,5 dagar" in sentence


def test_missing_value_sentence():
    sentence = reason_sentence("mean_score", float("nan"), "raises", "en")
    assert sentence == "Raises the risk: average assignment score: nothing recorded yet"


def test_every_feature_has_all_languages():
    texts = reason_texts()
    for feature in (*ASSESSMENT_FEATURES, *ATTENDANCE_FEATURES):
        if feature in CONTEXT_FEATURES:
            continue
        entry = texts["features"][feature]
        for language in LANGUAGES:
            assert "{value}" in entry[language], (feature, language)
            assert entry["label"][language], (feature, language)


def test_templates_name_no_sensitive_attribute():
    texts = reason_texts()
    for feature, entry in texts["features"].items():
        for language in LANGUAGES:
            sentence = reason_sentence(
                feature, sample_value(entry["format"]), "raises", language
            ).lower()
            for word in SENSITIVE_WORDS[language]:
                assert not re.search(rf"\b{re.escape(word)}", sentence), (
                    feature,
                    language,
                    word,
                )


@pytest.mark.parametrize("feature", [*SENSITIVE_ATTRIBUTES, "attr_nationality"])
def test_sensitive_feature_rejected(feature):
    with pytest.raises(ValueError, match="never given as a reason"):
        reason_sentence(feature, "x", "raises", "en")


def test_top_reasons_skip_sensitive():
    features = [
        "attr_gender",
        "attr_nationality",
        "mean_score",
        "days_since_unit_start",
        "assessments_missed",
    ]
    values = pd.Series(
        {
            "attr_gender": "F",
            "attr_nationality": "1",
            "mean_score": 40.0,
            "days_since_unit_start": 30,
            "assessments_missed": 2,
        }
    )
    reasons = top_reasons(
        np.array([3.0, 2.5, -1.0, 2.0, 0.5]), values, features, top_n=2
    )
    assert [r["feature"] for r in reasons] == ["mean_score", "assessments_missed"]
    assert reasons[0]["direction"] == "lowers"
    assert set(reasons[0]["sentences"]) == set(LANGUAGES)


def test_unnamed_includes_configured_extra():
    assert "attr_support_status" in unnamed_features(("support_status",))


def test_unknown_language_rejected():
    with pytest.raises(ValueError, match="language 'de'"):
        reason_sentence("mean_score", 50.0, "raises", "de")


def test_contribution_rounded_not_nan():
    features = ["mean_score"]
    reasons = top_reasons(
        np.array([0.123456]), pd.Series({"mean_score": np.nan}), features
    )
    assert reasons[0]["value"] is None
    assert not math.isnan(reasons[0]["contribution_log_odds"])


def test_negative_days_read_after():
    text = reason_sentence("mean_days_early", -7.0, "raises", "en")
    assert "7.0 days after the due date" in text
    assert "-" not in text.split(":", 1)[1]
