import math
import re

import numpy as np
import pandas as pd
import pytest

from features.build import (
    ASSESSMENT_FEATURES,
    ATTENDANCE_FEATURES,
    LEARNER_FEATURE_NAMES,
    RECENT_DAYS,
    asof_points_by_offset,
    build_features,
)
from features.definitions import LEARNER_FEATURES
from models.reason_text import (
    FORMATS,
    LANGUAGES,
    _value_text,
    feature_text,
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
            singular = entry.get("one", {}).get(language, "")
            assert "{weeks}" not in singular, (feature, language)


def test_age_never_named():
    assert "age_years" in unnamed_features()
    with pytest.raises(ValueError, match="never given as a reason"):
        reason_sentence("age_years", 15.2, "raises", "fi")


def test_templates_name_no_sensitive_attribute():
    texts = reason_texts()
    for feature, entry in texts["features"].items():
        # A value of 1 renders the singular forms.
        for value in (sample_value(entry["format"]), 1):
            for language in LANGUAGES:
                sentence = reason_sentence(feature, value, "raises", language).lower()
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


COUNT_SENTENCES = {
    "days_enrolled": {
        "fi": ("ollut kirjoilla 1 päivän", "ollut kirjoilla 3 päivää"),
        "sv": ("inskriven i 1 dag", "inskriven i 3 dagar"),
        "en": ("enrolled for 1 day", "enrolled for 3 days"),
    },
    "days_registered_before_start": {
        "fi": (
            "ilmoittautumisesta jakson alkuun 1 päivä",
            "ilmoittautumisesta jakson alkuun 3 päivää",
        ),
        "sv": (
            "anmäld 1 dag före periodens start",
            "anmäld 3 dagar före periodens start",
        ),
        "en": (
            "registered 1 day before the start",
            "registered 3 days before the start",
        ),
    },
    "assessments_due": {
        "fi": (
            "1 tehtävä erääntynyt jakson alusta",
            "3 tehtävää erääntynyt jakson alusta",
        ),
        "sv": (
            "1 uppgift förfallen sedan periodens start",
            "3 uppgifter förfallna sedan periodens start",
        ),
        "en": ("1 assignment due since the start", "3 assignments due since the start"),
    },
    "assessments_submitted": {
        "fi": (
            "1 tehtävä palautettu jakson alusta",
            "3 tehtävää palautettu jakson alusta",
        ),
        "sv": (
            "1 uppgift inlämnad sedan periodens start",
            "3 uppgifter inlämnade sedan periodens start",
        ),
        "en": (
            "1 assignment submitted since the start",
            "3 assignments submitted since the start",
        ),
    },
    "assessments_missed": {
        "fi": (
            "1 tehtävä palauttamatta määräaikaan mennessä jakson alusta",
            "3 tehtävää palauttamatta määräaikaan mennessä jakson alusta",
        ),
        "sv": (
            "1 uppgift inte inlämnad i tid sedan periodens start",
            "3 uppgifter inte inlämnade i tid sedan periodens start",
        ),
        "en": (
            "1 assignment not submitted by its due date since the start",
            "3 assignments not submitted by their due date since the start",
        ),
    },
    "assessments_failed": {
        "fi": ("1 hylätty tehtävä jakson alusta", "3 hylättyä tehtävää jakson alusta"),
        "sv": (
            "1 underkänd uppgift sedan periodens start",
            "3 underkända uppgifter sedan periodens start",
        ),
        "en": (
            "1 assignment failed since the start",
            "3 assignments failed since the start",
        ),
    },
    "assessments_late": {
        "fi": (
            "1 tehtävä palautettu myöhässä jakson alusta",
            "3 tehtävää palautettu myöhässä jakson alusta",
        ),
        "sv": (
            "1 uppgift inlämnad för sent sedan periodens start",
            "3 uppgifter inlämnade för sent sedan periodens start",
        ),
        "en": (
            "1 assignment submitted late since the start",
            "3 assignments submitted late since the start",
        ),
    },
    "days_since_last_submission": {
        "fi": (
            "1 päivä viimeisestä palautuksesta",
            "3 päivää viimeisestä palautuksesta",
        ),
        "sv": ("1 dag sedan senaste inlämning", "3 dagar sedan senaste inlämning"),
        "en": (
            "1 day since the last submitted assignment",
            "3 days since the last submitted assignment",
        ),
    },
    "attendance_marks": {
        "fi": ("1 läsnäolomerkintä jakson alusta", "3 läsnäolomerkintää jakson alusta"),
        "sv": (
            "1 närvaromarkering sedan periodens start",
            "3 närvaromarkeringar sedan periodens start",
        ),
        "en": (
            "1 attendance mark since the start",
            "3 attendance marks since the start",
        ),
    },
    "attr_prev_attempts": {
        "fi": (
            "1 aiempi suorituskerta tällä kurssilla",
            "3 aiempaa suorituskertaa tällä kurssilla",
        ),
        "sv": ("1 tidigare försök på kursen", "3 tidigare försök på kursen"),
        "en": ("1 earlier attempt at this course", "3 earlier attempts at this course"),
    },
    "attr_studied_credits": {
        "fi": ("1 opintopiste opiskeltavana", "3 opintopistettä opiskeltavana"),
        "sv": ("1 studiepoäng under studier", "3 studiepoäng under studier"),
        "en": ("1 credit being studied", "3 credits being studied"),
    },
    "absence_streak_year": {
        "fi": (
            "pisin yhtäjaksoinen poissaolo 1 koulupäivä tämän lukuvuoden alusta",
            "pisin yhtäjaksoinen poissaolo 3 koulupäivää tämän lukuvuoden alusta",
        ),
        "sv": (
            "längsta sammanhängande frånvaro 1 skoldag sedan läsårets början",
            "längsta sammanhängande frånvaro 3 skoldagar sedan läsårets början",
        ),
        "en": (
            "longest unbroken absence 1 school day since the start of the school year",
            "longest unbroken absence 3 school days since the start of the school year",
        ),
    },
    "grades_failed_year": {
        "fi": (
            "1 hylätty arvosana tämän lukuvuoden alusta",
            "3 hylättyä arvosanaa tämän lukuvuoden alusta",
        ),
        "sv": (
            "1 underkänt vitsord sedan läsårets början",
            "3 underkända vitsord sedan läsårets början",
        ),
        "en": (
            "1 failing grade since the start of the school year",
            "3 failing grades since the start of the school year",
        ),
    },
    "grades_failed_365d": {
        "fi": (
            "1 hylätty arvosana viimeisten 365 päivän aikana",
            "3 hylättyä arvosanaa viimeisten 365 päivän aikana",
        ),
        "sv": (
            "1 underkänt vitsord under de senaste 365 dagarna",
            "3 underkända vitsord under de senaste 365 dagarna",
        ),
        "en": (
            "1 failing grade over the last 365 days",
            "3 failing grades over the last 365 days",
        ),
    },
    "subjects_graded_previous_term": {
        "fi": (
            "arvosanoja 1 oppiaineesta edellisellä lukukaudella",
            "arvosanoja 3 oppiaineesta edellisellä lukukaudella",
        ),
        "sv": (
            "vitsord i 1 ämne under förra terminen",
            "vitsord i 3 ämnen under förra terminen",
        ),
        "en": (
            "grades in 1 subject in the previous term",
            "grades in 3 subjects in the previous term",
        ),
    },
    "subjects_graded_365d": {
        "fi": (
            "arvosanoja 1 oppiaineesta viimeisten 365 päivän aikana",
            "arvosanoja 3 oppiaineesta viimeisten 365 päivän aikana",
        ),
        "sv": (
            "vitsord i 1 ämne under de senaste 365 dagarna",
            "vitsord i 3 ämnen under de senaste 365 dagarna",
        ),
        "en": (
            "grades in 1 subject over the last 365 days",
            "grades in 3 subjects over the last 365 days",
        ),
    },
    "school_changes_365d": {
        "fi": (
            "1 koulunvaihto tai uusi opiskeluoikeus viimeisten 365 päivän aikana",
            "3 koulunvaihtoa tai uutta opiskeluoikeutta viimeisten 365 päivän aikana",
        ),
        "sv": (
            "1 skolbyte eller ny studierätt under de senaste 365 dagarna",
            "3 skolbyten eller nya studierätter under de senaste 365 dagarna",
        ),
        "en": (
            "1 change of school or new study right over the last 365 days",
            "3 changes of school or new study rights over the last 365 days",
        ),
    },
    "school_changes_all": {
        "fi": (
            "1 koulunvaihto tai uusi opiskeluoikeus koko opintohistoriassa",
            "3 koulunvaihtoa tai uutta opiskeluoikeutta koko opintohistoriassa",
        ),
        "sv": (
            "1 skolbyte eller ny studierätt under hela studiehistorien",
            "3 skolbyten eller nya studierätter under hela studiehistorien",
        ),
        "en": (
            "1 change of school or new study right over the whole study history",
            "3 changes of school or new study rights over the whole study history",
        ),
    },
    "support_levels_365d": {
        "fi": (
            "1 tuen taso viimeisten 365 päivän aikana",
            "3 eri tuen tasoa viimeisten 365 päivän aikana",
        ),
        "sv": (
            "1 stödnivå under de senaste 365 dagarna",
            "3 olika stödnivåer under de senaste 365 dagarna",
        ),
        "en": (
            "1 support level over the last 365 days",
            "3 different support levels over the last 365 days",
        ),
    },
    "support_level_changes_365d": {
        "fi": (
            "tuen taso muuttunut 1 kerran viimeisten 365 päivän aikana "
            "(paluuta aiempaan tasoon ei lasketa)",
            "tuen taso muuttunut 3 kertaa viimeisten 365 päivän aikana "
            "(paluuta aiempaan tasoon ei lasketa)",
        ),
        "sv": (
            "stödnivån har ändrats 1 gång under de senaste 365 dagarna "
            "(återgång till en tidigare nivå räknas inte)",
            "stödnivån har ändrats 3 gånger under de senaste 365 dagarna "
            "(återgång till en tidigare nivå räknas inte)",
        ),
        "en": (
            "support level changed 1 time over the last 365 days "
            "(a return to an earlier level is not counted)",
            "support level changed 3 times over the last 365 days "
            "(a return to an earlier level is not counted)",
        ),
    },
    "subjects_missing_previous_term": {
        "fi": (
            "1 oppiaine, josta on arvosana viimeisten 365 päivän ajalta mutta ei "
            "edelliseltä lukukaudelta",
            "3 oppiainetta, joista on arvosana viimeisten 365 päivän ajalta mutta ei "
            "edelliseltä lukukaudelta",
        ),
        "sv": (
            "1 ämne med vitsord under de senaste 365 dagarna men inte under förra "
            "terminen",
            "3 ämnen med vitsord under de senaste 365 dagarna men inte under förra "
            "terminen",
        ),
        "en": (
            "1 subject graded over the last 365 days but not in the previous term",
            "3 subjects graded over the last 365 days but not in the previous term",
        ),
    },
    "age_for_grade_months": {
        "fi": (
            "1 kuukauden vanhempi kuin vuosiluokan tavallisen syntymävuoden lopussa "
            "syntynyt oppilas (12 tai enemmän: jäänyt luokalle tai aloittanut koulun "
            "myöhemmin)",
            "3 kuukautta vanhempi kuin vuosiluokan tavallisen syntymävuoden lopussa "
            "syntynyt oppilas (12 tai enemmän: jäänyt luokalle tai aloittanut koulun "
            "myöhemmin)",
        ),
        "sv": (
            "1 månad äldre än en elev född i slutet av årskursens vanliga födelseår "
            "(12 eller fler: gått om en årskurs eller börjat skolan senare)",
            "3 månader äldre än en elev född i slutet av årskursens vanliga födelseår "
            "(12 eller fler: gått om en årskurs eller börjat skolan senare)",
        ),
        "en": (
            "1 month older than a pupil born at the end of the grade's usual birth "
            "year (12 or more: held back or started school late)",
            "3 months older than a pupil born at the end of the grade's usual birth "
            "year (12 or more: held back or started school late)",
        ),
    },
    "attr_behaviour_notes": {
        "fi": ("1 käytösmerkintä tähän mennessä", "3 käytösmerkintää tähän mennessä"),
        "sv": (
            "1 anteckning om uppförande hittills",
            "3 anteckningar om uppförande hittills",
        ),
        "en": ("1 behaviour note so far", "3 behaviour notes so far"),
    },
}
"""Expected sentences for a value of 1 and of 3, per feature and language."""

NEGATIVE_COUNT_SENTENCES = {
    "age_for_grade_months": {
        "fi": (
            "1 kuukauden nuorempi kuin vuosiluokan tavallisen syntymävuoden lopussa "
            "syntynyt oppilas (aloittanut koulun aiemmin tai ohittanut luokan)",
            "3 kuukautta nuorempi kuin vuosiluokan tavallisen syntymävuoden lopussa "
            "syntynyt oppilas (aloittanut koulun aiemmin tai ohittanut luokan)",
        ),
        "sv": (
            "1 månad yngre än en elev född i slutet av årskursens vanliga födelseår "
            "(börjat skolan tidigare eller hoppat över en årskurs)",
            "3 månader yngre än en elev född i slutet av årskursens vanliga födelseår "
            "(börjat skolan tidigare eller hoppat över en årskurs)",
        ),
        "en": (
            "1 month younger than a pupil born at the end of the grade's usual birth "
            "year (started school early or skipped a grade)",
            "3 months younger than a pupil born at the end of the grade's usual birth "
            "year (started school early or skipped a grade)",
        ),
    },
}
"""Expected sentences for a value of -1 and of -3, which read "younger"."""

SAME_AFTER_ONE = {
    # "försök" and "studiepoäng" have the same form in the singular and the
    # plural, and so does the adjective "tidigare" before "försök".
    ("attr_prev_attempts", "sv"),
    ("attr_studied_credits", "sv"),
    # The elative that follows a numeral is singular after every number:
    # "1 oppiaineesta", "3 oppiaineesta".
    ("subjects_graded_previous_term", "fi"),
    ("subjects_graded_365d", "fi"),
}
"""Templates whose main sentence is right for 1 as well, so they need no
singular form."""


def _sentence_cases(table):
    return [
        pytest.param(feature, language, index, id=f"{feature}-{language}-{index}")
        for feature in table
        for language in LANGUAGES
        for index in (0, 1)
    ]


@pytest.mark.parametrize(
    ("feature", "language", "index"), _sentence_cases(COUNT_SENTENCES)
)
def test_count_sentence_for_one_and_three(feature, language, index):
    value = (1, 3)[index]
    expected = COUNT_SENTENCES[feature][language][index]
    assert feature_text(feature, float(value), language) == expected


@pytest.mark.parametrize(
    ("feature", "language", "index"), _sentence_cases(NEGATIVE_COUNT_SENTENCES)
)
def test_negative_count_sentence_for_one_and_three(feature, language, index):
    value = (-1, -3)[index]
    expected = NEGATIVE_COUNT_SENTENCES[feature][language][index]
    assert feature_text(feature, float(value), language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fi", "Nostaa riskiä: 0 tehtävää palautettu jakson alusta"),
        ("sv", "Höjer risken: 0 uppgifter inlämnade sedan periodens start"),
        ("en", "Raises the risk: 0 assignments submitted since the start"),
    ],
)
def test_zero_count_reads_plural(language, expected):
    assert reason_sentence("assessments_submitted", 0, "raises", language) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fi", "Nostaa riskiä: 1 tehtävä palautettu jakson alusta"),
        ("sv", "Höjer risken: 1 uppgift inlämnad sedan periodens start"),
        ("en", "Raises the risk: 1 assignment submitted since the start"),
    ],
)
def test_one_count_in_reason_sentence(language, expected):
    # Values can be NumPy numbers when they come from a feature table.
    sentence = reason_sentence("assessments_submitted", np.int64(1), "raises", language)
    assert sentence == expected


def test_decimal_one_reads_plural():
    # One decimal shows 1 hour as "1.0", which takes the plural.
    text = feature_text("absence_hours_year", 1.0, "en")
    assert text == "absent for 1.0 clock hours since the start of the school year"


def test_count_sentences_cover_every_number_template():
    # Every template that can show "1" is rendered in the table above.
    shows_one = {
        feature
        for feature, entry in reason_texts()["features"].items()
        if _value_text(entry, 1.0, "en") == "1"
    }
    assert shows_one == set(COUNT_SENTENCES)


def test_number_templates_have_singular_forms():
    lacking = []
    for feature, entry in reason_texts()["features"].items():
        template_sets = [entry]
        if "negative" in entry:
            template_sets.append(entry["negative"])
        for templates in template_sets:
            for language in LANGUAGES:
                if _value_text(entry, 1.0, language) != "1":
                    continue
                if (feature, language) in SAME_AFTER_ONE:
                    continue
                if language not in templates.get("one", {}):
                    lacking.append((feature, language))
    assert lacking == []


def test_same_after_one_lists_real_templates():
    # Each listed template exists and still has no singular form in that
    # language, so the list stays accurate.
    texts = reason_texts()["features"]
    for feature, language in SAME_AFTER_ONE:
        assert feature in texts, feature
        assert language not in texts[feature].get("one", {}), (feature, language)


def test_singular_forms_are_well_formed():
    for feature, entry in reason_texts()["features"].items():
        for templates in (entry, entry.get("negative", {})):
            for language, form in templates.get("one", {}).items():
                assert language in LANGUAGES, (feature, language)
                assert "{value}" in form, (feature, language)
                assert form != templates[language], (feature, language)


def test_recent_window_is_not_one_week():
    # The recent-window templates write "{weeks} weeks" with no singular form.
    assert RECENT_DAYS // 7 != 1


SAME_WINDOW_FEATURES = [
    "unexcused_share_4w",
    "unexcused_share_recent",
    "absence_share_8w",
    "grade_mean_year",
    "absence_share_recent",
]
SAME_WINDOW_VALUES = {
    "unexcused_share_4w": 0.13,
    "unexcused_share_recent": 0.13,
    "absence_share_8w": 0.2,
    "grade_mean_year": 6.75,
    "absence_share_recent": 0.2,
}


@pytest.mark.parametrize(
    ("contributions", "expected"),
    [
        # The 4-week share is stronger, so it is named and the recent one skipped.
        (
            [0.9, 0.8, 0.5, -0.4, 0.1],
            ["unexcused_share_4w", "absence_share_8w", "grade_mean_year"],
        ),
        (
            [0.8, -0.9, 0.5, -0.4, 0.1],
            ["unexcused_share_recent", "absence_share_8w", "grade_mean_year"],
        ),
    ],
)
def test_top_reasons_name_one_of_group(contributions, expected):
    from models.reasons import reason_codes

    values = np.array(contributions)
    picked = top_reasons(values, pd.Series(SAME_WINDOW_VALUES), SAME_WINDOW_FEATURES)
    frame = pd.DataFrame([SAME_WINDOW_VALUES])
    coded = reason_codes(values[np.newaxis, :], frame, SAME_WINDOW_FEATURES)[0]

    assert [reason["feature"] for reason in picked] == expected
    assert [reason["feature"] for reason in coded] == expected


def test_same_reason_groups_share_window():
    from features.definitions import WINDOW_DAYS

    groups = reason_texts()["same_reason"]
    templates = reason_texts()["features"]
    assert WINDOW_DAYS["4w"] == RECENT_DAYS
    for group in groups:
        assert len(group) > 1, group
        for feature in group:
            assert feature in templates, feature
