import math
import re

import numpy as np
import pandas as pd
import pytest

from features.build import (
    ASSESSMENT_FEATURES,
    ATTENDANCE_FEATURES,
    LEARNER_FEATURE_NAMES,
    asof_points_by_offset,
    build_features,
)
from features.definitions import LEARNER_FEATURES
from models.reason_text import (
    FORMATS,
    LANGUAGES,
    format_value,
    reason_sentence,
    reason_texts,
    top_reasons,
    unnamed_features,
)
from sources.contract import SENSITIVE_ATTRIBUTES
from sources.school.mapping import to_input_tables
from sources.school.records import read_records
from sources.school.synth import SynthConfig, generate

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


SUPPORT_WORDS = {"en": {"support"}, "fi": {"tuki"}, "sv": {"stöd"}}
LANGUAGE_WORDS = {"en": {"language"}, "fi": {"kieli"}, "sv": {"språk"}}
ALLOWED_WORDS = {
    # The support level is the school's own decision on learning support
    # (general, intensified, special), not a disability or a support status
    # that the fairness audit groups pupils by.
    "attr_support_level": SUPPORT_WORDS,
    "support_level_max_365d": SUPPORT_WORDS,
    "support_levels_365d": SUPPORT_WORDS,
    "support_level_changes_365d": SUPPORT_WORDS,
    # Language subjects are a group of school subjects, not the pupil's
    # mother tongue.
    "grade_mean_languages_365d": LANGUAGE_WORDS,
}
"""Sensitive words that a feature's own sentence may contain, by language."""


def sample_value(kind: str):
    return {
        "percent": 0.14,
        "count": 3,
        "days": 12,
        "decimal_days": 1.5,
        "hours": 12.75,
        "score": 62.0,
        "grade": 7.25,
        "points_per_week": 0.002,
        "level": 2,
        "text": "A",
    }[kind]


@pytest.fixture(scope="module")
def school_features(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Return the feature names built from a small synthetic school export."""
    export = tmp_path_factory.mktemp("school") / "export"
    generate(SynthConfig(pupils=40, years=1, seed=2, lessons_per_day=1), export)
    tables = to_input_tables(read_records(export)).validated()
    points = asof_points_by_offset(tables.units, [150])
    return build_features(tables, points, with_learner_features=True).feature_names


def test_recent_window_sentence():
    sentence = reason_sentence("unexcused_share_recent", 0.14, "raises", "en")
    assert sentence == "Raises the risk: unexcused absences 14 % over the last 4 weeks"


def test_finnish_sentence():
    sentence = reason_sentence("unexcused_share_recent", 0.14, "raises", "fi")
    assert (
        sentence
        == "Nostaa riskiä: selvittämättömiä poissaoloja 14 % viimeisten 4 viikon aikana"
    )


def test_swedish_decimal_comma():
    sentence = reason_sentence("mean_days_early", 1.5, "lowers", "sv")
    assert "1,5 dagar" in sentence


def test_missing_value_sentence():
    sentence = reason_sentence("mean_score", float("nan"), "raises", "en")
    assert sentence == "Raises the risk: average assignment score: nothing recorded yet"


def test_every_feature_has_all_languages():
    texts = reason_texts()
    for feature, entry in texts["features"].items():
        for language in LANGUAGES:
            assert "{value}" in entry[language], (feature, language)
            assert entry["label"][language], (feature, language)
            if "negative" in entry:
                assert "{value}" in entry["negative"][language], (feature, language)


def test_buildable_features_have_templates(school_features: list[str]):
    # The school export must yield its attributes, or the check below would
    # not cover them.
    assert "attr_support_level" in school_features
    assert "attr_grade_level" in school_features
    buildable = {
        *ASSESSMENT_FEATURES,
        *ATTENDANCE_FEATURES,
        *(feature.name for feature in LEARNER_FEATURES),
        *LEARNER_FEATURE_NAMES,
        *school_features,
    }
    texts = reason_texts()["features"]
    hidden = unnamed_features()
    lacking = sorted(
        name for name in buildable if name not in texts and name not in hidden
    )
    assert lacking == []


def test_templates_use_known_formats():
    for feature, entry in reason_texts()["features"].items():
        assert entry["format"] in FORMATS, feature
        if entry["format"] == "level":
            levels = entry["levels"]
            assert levels, feature
            for code, words in levels.items():
                assert isinstance(code, int), (feature, code)
                assert set(words) == set(LANGUAGES), (feature, code)


def test_weeks_only_in_recent_window():
    # The code fills {weeks} with the recent window's length, so any other
    # window must be written into the sentence.
    for feature, entry in reason_texts()["features"].items():
        if entry.get("window") == "recent":
            continue
        for language in LANGUAGES:
            assert "{weeks}" not in entry[language], (feature, language)


def test_age_never_named():
    assert "age_years" in unnamed_features()
    with pytest.raises(ValueError, match="never given as a reason"):
        reason_sentence("age_years", 15.2, "raises", "fi")


def test_templates_name_no_sensitive_attribute():
    texts = reason_texts()
    for feature, entry in texts["features"].items():
        for language in LANGUAGES:
            sentence = reason_sentence(
                feature, sample_value(entry["format"]), "raises", language
            ).lower()
            allowed = ALLOWED_WORDS.get(feature, {}).get(language, set())
            for word in set(SENSITIVE_WORDS[language]) - allowed:
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


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fi",
            "Nostaa riskiä: poissaoloja 18 % oppitunneista viimeisten 4 viikon aikana",
        ),
        (
            "sv",
            "Höjer risken: frånvaro från 18 % av lektionerna under de senaste 4 veckorna",
        ),
        ("en", "Raises the risk: absent from 18 % of lessons over the last 4 weeks"),
    ],
)
def test_share_sentence_names_window(language, expected):
    assert reason_sentence("absence_share_4w", 0.18, "raises", language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fi", "Nostaa riskiä: 2 hylättyä arvosanaa tämän lukuvuoden alusta"),
        ("sv", "Höjer risken: 2 underkända vitsord sedan läsårets början"),
        ("en", "Raises the risk: 2 failing grades since the start of the school year"),
    ],
)
def test_count_sentence(language, expected):
    assert reason_sentence("grades_failed_year", 2.0, "raises", language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fi", "Nostaa riskiä: erityinen tuki voimassa"),
        ("sv", "Höjer risken: särskilt stöd gäller"),
        ("en", "Raises the risk: special support in force"),
    ],
)
def test_support_level_in_words(language, expected):
    assert reason_sentence("attr_support_level", 2.0, "raises", language) == expected


@pytest.mark.parametrize(
    ("language", "level"),
    [
        ("fi", "tehostettu tuki"),
        ("sv", "intensifierat stöd"),
        ("en", "intensified support"),
    ],
)
def test_highest_support_level_in_words(language, level):
    sentence = reason_sentence("support_level_max_365d", 1, "raises", language)
    assert sentence.endswith(f": {level}")
    assert "365" in sentence


def test_unlisted_level_shows_code():
    sentence = reason_sentence("attr_support_level", 3.0, "raises", "en")
    assert sentence == "Raises the risk: 3 in force"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fi",
            "Nostaa riskiä: arvosanojen keskiarvo tämän lukukauden alusta: ei vielä merkintää",
        ),
        (
            "sv",
            "Höjer risken: medeltal för vitsorden sedan terminens början: inga uppgifter ännu",
        ),
        (
            "en",
            "Raises the risk: grade average since the start of the term: nothing recorded yet",
        ),
    ],
)
def test_missing_school_value(language, expected):
    assert reason_sentence("grade_mean_term", np.nan, "raises", language) == expected


@pytest.mark.parametrize(
    ("language", "grade", "upper_secondary"),
    [
        ("fi", "vuosiluokka 8", "toisen asteen 2. opiskeluvuosi"),
        ("sv", "årskurs 8", "studieår 2 på andra stadiet"),
        ("en", "grade 8", "year 2 of upper secondary education"),
    ],
)
def test_grade_level_in_words(language, grade, upper_secondary):
    basic = reason_sentence("attr_grade_level", 8.0, "lowers", language)
    later = reason_sentence("attr_grade_level", 11.0, "lowers", language)
    assert basic.endswith(f": {grade}")
    assert later.endswith(f": {upper_secondary}")


@pytest.mark.parametrize(
    ("language", "rising", "falling"),
    [
        (
            "fi",
            "kasvanut keskimäärin 1,4 prosenttiyksikköä",
            "laskenut keskimäärin 0,7",
        ),
        ("sv", "ökat i genomsnitt 1,4 procentenheter", "minskat i genomsnitt 0,7"),
        ("en", "rose on average by 1.4 percentage points", "fell on average by 0.7"),
    ],
)
def test_slope_as_points_per_week(language, rising, falling):
    # 0.002 a day is 1.4 percentage points a week.
    assert rising in reason_sentence("absence_slope_8w", 0.002, "raises", language)
    assert falling in reason_sentence("absence_slope_8w", -0.001, "lowers", language)


def test_grade_change_reads_lower():
    sentence = reason_sentence("grade_change_term", -0.5, "raises", "fi")
    assert sentence.endswith("0,50 alempi kuin edellisellä")


def test_unknown_format_rejected():
    with pytest.raises(ValueError, match="value format 'stars'"):
        format_value(3, "stars", "en")


def test_school_features_get_sentences(school_features: list[str]):
    texts = reason_texts()
    for feature in school_features:
        if feature in unnamed_features():
            continue
        entry = texts["features"][feature]
        value = sample_value(entry["format"])
        for language in LANGUAGES:
            sentence = reason_sentence(feature, value, "raises", language)
            assert feature.removeprefix("attr_") not in sentence, (feature, language)
            assert "{" not in sentence, (feature, language)
