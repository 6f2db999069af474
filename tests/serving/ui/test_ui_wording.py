"""Catalogues, reason sentences, probability words, status and the review export."""

from __future__ import annotations

import csv
import datetime as dt
import string

import pytest
from typer.testing import CliRunner

from fairness.signoff import MAX_REASON_CHARS
from models.reason_text import reason_sentence
from serving.access import Principal
from serving.ui.i18n import LANGUAGES, Translator, catalogue, pick_language
from serving.ui.present import (
    change_words,
    cutoff_tie,
    line_chart,
    probability_words,
    row_status,
)
from serving.ui.queries import Trend
from serving.ui.reasontext import reason_sentences
from serving.ui.store import (
    MAX_FOLLOW_UP_DAYS,
    MAX_NOTE_CHARS,
    ScoreContext,
    UiStore,
)

STAFF = Principal("abc", "staff", ("S1",))
AS_OF = dt.date(2014, 3, 3)
"""As-of date of the score that the reviews in these tests were made against."""


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_keys_match(language):
    assert set(catalogue(language)) == set(catalogue("en"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_fields_match(language):
    english = catalogue("en")
    for key, text in catalogue(language).items():
        fields = {part.split("}")[0] for part in text.split("{")[1:]}
        expected = {part.split("}")[0] for part in english[key].split("{")[1:]}
        assert fields == expected, key


def test_language_from_cookie_first():
    assert pick_language("sv", "fi-FI,en;q=0.5") == "sv"


def test_language_from_browser():
    assert pick_language(None, "de-DE,sv;q=0.8") == "sv"


def test_language_default_finnish():
    assert pick_language("xx", "de") == "fi"


def test_reason_share_as_percent():
    reason = {"feature": "absence_share", "value": 0.25, "direction": "raises"}
    (text,) = reason_sentences(Translator("en"), [reason])
    assert text == reason_sentence("absence_share", 0.25, "raises", "en")


def test_reason_in_reader_language():
    reason = {"feature": "mean_days_early", "value": 1.5, "direction": "lowers"}
    (text,) = reason_sentences(Translator("fi"), [reason])
    assert "1,5" in text


def test_reason_sensitive_left_out():
    reasons = [
        {"feature": "attr_gender", "value": "F", "direction": "raises"},
        {"feature": "last_score", "value": None, "direction": "raises"},
    ]
    assert len(reason_sentences(Translator("sv"), reasons)) == 1


def test_reason_without_direction_left_out():
    reason = {"feature": "last_score", "value": 40.0}
    assert reason_sentences(Translator("en"), [reason]) == []


@pytest.mark.parametrize(
    ("probability", "expected"),
    [
        (0.003, "Fewer than 1 in 100"),
        (0.04, "About 4 in 100"),
        (0.31, "About 3 in 10"),
        (0.97, "More than 19 in 20"),
    ],
)
def test_probability_words(probability, expected):
    assert probability_words(Translator("en"), probability).startswith(expected)


def test_probability_words_unit_end():
    assert probability_words(Translator("en"), 0.31) == (
        "About 3 in 10 pupils with a similar record withdrew before the end of "
        "their course or school year."
    )


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "en",
            "About 3 in 10 pupils with a similar record dropped out within 12 months.",
        ),
        ("fi", "keskeytti opintonsa 12 kuukauden kuluessa."),
        ("sv", "avbröt studierna inom 12 månader."),
    ],
)
def test_probability_words_label_window(language, expected):
    assert probability_words(Translator(language), 0.31, 365).endswith(expected)


def test_probability_words_short_window():
    words = probability_words(Translator("en"), 0.04, 183)
    assert words.endswith("dropped out within 6 months.")


def test_change_in_points():
    assert change_words(Translator("en"), 0.30, 0.18) == "up 12 percentage points"


@pytest.mark.parametrize(
    ("language", "now", "expected"),
    [
        ("en", 0.19, "up 1 percentage point"),
        ("en", 0.17, "down 1 percentage point"),
        ("fi", 0.19, "nousi 1 prosenttiyksikön"),
        ("fi", 0.17, "laski 1 prosenttiyksikön"),
        ("sv", 0.19, "upp 1 procentenhet"),
        ("sv", 0.17, "ned 1 procentenhet"),
        ("en", 0.20, "up 2 percentage points"),
        ("fi", 0.16, "laski 2 prosenttiyksikköä"),
        ("sv", 0.16, "ned 2 procentenheter"),
    ],
)
def test_change_one_point_singular(language, now, expected):
    assert change_words(Translator(language), now, 0.18) == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "1 pupil is waiting for a review."),
        ("fi", "1 oppilas odottaa läpikäyntiä."),
        ("sv", "1 elev väntar på genomgång."),
    ],
)
def test_one_waiting_singular(language, expected):
    t = Translator(language)
    assert t.plural("school.to_review", 1, count=1) == expected
    assert t.plural("school.to_review", 2, count=2).startswith("2 ")
    assert t.plural("school.to_review", 2, count=2) != expected.replace("1", "2")


def test_one_month_window_singular():
    words = probability_words(Translator("en"), 0.3, window_days=30)
    assert words.endswith("dropped out within 1 month.")


SIGNIN_INTRO = {
    "en": (
        "Sign in with the staff or reviewer token you were given. "
        "The session ends after {} or when you sign out."
    ),
    "fi": (
        "Kirjaudu sinulle annetulla henkilöstön tai arvioijan tunnisteella. "
        "Istunto päättyy {} kuluttua tai kun kirjaudut ulos."
    ),
    "sv": (
        "Logga in med den personal- eller granskarnyckel du har fått. "
        "Sessionen upphör efter {} eller när du loggar ut."
    ),
}


@pytest.mark.parametrize(
    ("language", "hours", "duration"),
    [
        ("en", "1", "1 hour"),
        ("en", "3", "3 hours"),
        ("en", "1.5", "1.5 hours"),
        ("fi", "1", "1 tunnin"),
        ("fi", "3", "3 tunnin"),
        ("sv", "1", "1 timme"),
        ("sv", "3", "3 timmar"),
    ],
)
def test_signin_intro_counts_hours(language, hours, duration):
    t = Translator(language)
    text = t.plural("signin.intro", hours, hours=hours)
    assert text == SIGNIN_INTRO[language].format(duration)


@pytest.mark.parametrize(
    ("language", "capacity", "expected"),
    [
        (
            "en",
            1,
            "Your team can review 1 pupil per scoring. The pupil with the highest "
            "estimate is marked for review, unless a recorded review says otherwise.",
        ),
        (
            "en",
            3,
            "Your team can review 3 pupils per scoring. The 3 pupils with the highest "
            "estimates are marked for review, unless a recorded review says otherwise.",
        ),
        (
            "fi",
            1,
            "Tiiminne ehtii käydä läpi 1 oppilaan arviointikertaa kohden. Oppilas, "
            "jonka arvio on suurin, merkitään läpikäytäväksi, ellei kirjattu "
            "arviointi muuta sano.",
        ),
        (
            "fi",
            3,
            "Tiiminne ehtii käydä läpi 3 oppilasta arviointikertaa kohden. Ne 3 "
            "oppilasta, joiden arvio on suurin, merkitään läpikäytäviksi, ellei "
            "kirjattu arviointi muuta sano.",
        ),
        (
            "sv",
            1,
            "Ert team hinner gå igenom 1 elev per bedömning. Eleven med högst "
            "bedömning markeras för genomgång, om inte en registrerad granskning "
            "säger annat.",
        ),
        (
            "sv",
            3,
            "Ert team hinner gå igenom 3 elever per bedömning. De 3 eleverna med "
            "högst bedömning markeras för genomgång, om inte en registrerad "
            "granskning säger annat.",
        ),
    ],
)
def test_capacity_counts_pupils(language, capacity, expected):
    t = Translator(language)
    assert t.plural("school.capacity", capacity, capacity=capacity) == expected


@pytest.mark.parametrize(
    ("language", "total", "expected"),
    [
        ("en", 1, "Page 1 of 1 (1 pupil)"),
        ("en", 3, "Page 1 of 1 (3 pupils)"),
        ("fi", 1, "Sivu 1/1 (1 oppilas)"),
        ("fi", 3, "Sivu 1/1 (3 oppilasta)"),
        ("sv", 1, "Sida 1 av 1 (1 elev)"),
        ("sv", 3, "Sida 1 av 1 (3 elever)"),
    ],
)
def test_page_counts_pupils(language, total, expected):
    t = Translator(language)
    assert t.plural("school.page", total, page=1, pages=1, total=total) == expected


COUNT_FIELDS = frozenset(
    {
        "capacity",
        "count",
        "hours",
        "k",
        "months",
        "n",
        "pages",
        "points",
        "size",
        "total",
    }
)
"""Message fields that hold a number of things, which can be 1."""
OTHER_FIELDS = frozenset(
    {
        "as_of",
        "date",
        "decision",
        "error",
        "estimate",
        "first",
        "first_date",
        "last",
        "last_date",
        "limit",
        "max",
        "max_date",
        "measure",
        "model",
        "name",
        "outcome",
        "page",
        "pupil",
        "rank",
        "reason",
        "reviewer",
        "role",
        "school",
        "share",
        "status",
        "time",
        "value",
        "version",
    }
)
"""Message fields that hold no count: names, dates, ranks, measured values, an
HTTP status, and ``max`` and ``limit``, which are always fixed character or
byte limits above 1."""
READS_RIGHT_FOR_ONE = frozenset(
    {
        # "About 1 in 10 pupils": the noun goes with the 10, not with the 1.
        "prob.in_10",
        "prob.in_100",
        # "Rank 1 of 1 in the school" has no noun after the count.
        "pupil.rank",
        # The capacity is a rank here: "the cut-off after rank 1".
        "school.cutoff_tie",
        # "Precision in the top 1 per school" has no noun after the count.
        "metric.precision_at_k_per_unit",
        "metric.recall_at_k_per_unit",
    }
)
"""Messages with a count field that need no ``_one`` variant."""


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_catalogue_fields_classified():
    english = catalogue("en")
    for key, text in english.items():
        unknown = _fields(text) - COUNT_FIELDS - OTHER_FIELDS
        assert not unknown, f"{key}: classify {sorted(unknown)} as count or other"
    assert MAX_NOTE_CHARS > 1
    assert MAX_REASON_CHARS > 1


def test_count_messages_have_singular():
    english = catalogue("en")
    for key, text in english.items():
        if key.endswith("_one") or key in READS_RIGHT_FOR_ONE:
            continue
        if _fields(text) & COUNT_FIELDS:
            assert f"{key}_one" in english, f"{key} has a count but no {key}_one"


def test_singular_variants_have_base():
    english = catalogue("en")
    for key in english:
        if key.endswith("_one"):
            assert key.removesuffix("_one") in english, key


def test_change_new_pupil():
    assert change_words(Translator("en"), 0.30, None) == "not scored before"


def _review(store: UiStore, follow_up: dt.date | None):
    context = ScoreContext("2014-03-03", "m", "1", 0.4, 2, True)
    return store.add_review(STAFF, "p1", "S1", "monitor", "", follow_up, context)


def test_review_overrides_until_follow_up(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    today = dt.date(2026, 12, 4)
    review = _review(store, today + dt.timedelta(days=7))
    later = today + dt.timedelta(days=7)
    standing = row_status(Translator("en"), 1, 15, review, today, AS_OF)
    due = row_status(Translator("en"), 1, 15, review, later, AS_OF)
    assert not standing.flagged
    assert standing.text.startswith("Monitor (")
    assert due.flagged
    assert due.text.startswith("Follow-up due")


def test_review_without_follow_up_lasts_one_run(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    review = _review(store, None)
    today = dt.date(2026, 12, 4)
    same_run = row_status(Translator("en"), 1, 15, review, today, AS_OF)
    next_run = row_status(
        Translator("en"), 1, 15, review, today, AS_OF + dt.timedelta(days=28)
    )
    assert not same_run.flagged
    assert next_run.flagged
    assert next_run.text == "For review"


def test_outside_capacity_not_flagged():
    status = row_status(Translator("en"), 16, 15, None, dt.date(2026, 12, 4), AS_OF)
    assert not status.flagged


def test_chart_names_values():
    points = [(dt.date(2014, 1, 6), 20.0), (dt.date(2014, 2, 3), 40.0)]
    svg = str(line_chart(points, "Absence: 20% <then> 40%", 100.0))
    assert 'aria-label="Absence: 20% &lt;then&gt; 40%"' in svg
    assert "<polyline" in svg


@pytest.mark.parametrize("language", LANGUAGES)
def test_grade_average_chart_on_grade_scale(language):
    from serving.ui.app import _trend_chart

    t = Translator(language)
    trend = Trend("grade_mean_term", [(dt.date(2025, 2, 3), 6.45)])
    svg = str(_trend_chart(t, "grades", trend, small=False))
    label = svg.split('aria-label="', 1)[1].split('"', 1)[0]
    assert t.number(6.45, 1) in label
    # The axis tops out at the best grade, 10, not at 100.
    assert 'class="tick">10</text>' in svg


@pytest.mark.parametrize(
    ("language", "points", "expected"),
    [
        ("en", 1, "Assessment scores: 32 on 2014-03-03 (one scoring)"),
        ("fi", 1, "Tehtävien pisteet: 32 (3.3.2014), yksi arviointi"),
        ("sv", 1, "Uppgiftspoäng: 32 per 3.3.2014 (en bedömning)"),
        ("en", 3, "Assessment scores: 30 on 2014-01-06, 32 on 2014-03-03 (3 scorings)"),
        ("fi", 3, "Tehtävien pisteet: 30 (6.1.2014), 32 (3.3.2014), 3 arviointia"),
        ("sv", 3, "Uppgiftspoäng: 30 per 6.1.2014, 32 per 3.3.2014 (3 bedömningar)"),
    ],
)
def test_chart_label_counts_scorings(language, points, expected):
    from serving.ui.app import _trend_chart

    t = Translator(language)
    series = [
        (dt.date(2014, 1, 6), 30.0),
        (dt.date(2014, 2, 3), 31.0),
        (dt.date(2014, 3, 3), 32.0),
    ]
    trend = Trend("weighted_mean_score", series[-points:])
    svg = str(_trend_chart(t, "grades", trend, small=False))
    label = svg.split('aria-label="', 1)[1].split('"', 1)[0]
    assert label == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [("fi", "3.3.2014"), ("sv", "3.3.2014"), ("en", "2014-03-03")],
)
def test_dates_in_reader_format(language, expected):
    t = Translator(language)
    assert t.date(dt.date(2014, 3, 3)) == expected
    # Stored times are UTC, and staff read Finnish time (UTC+2 in March).
    assert t.time(dt.datetime(2014, 3, 3, 9, 5)) == f"{expected} 11:05"
    assert t.time(dt.datetime(2014, 3, 3, 23, 5, tzinfo=dt.UTC)).startswith(
        t.date(dt.date(2014, 3, 4))
    )


def test_reviews_export_csv(tmp_path, monkeypatch):
    from ajoissa.cli import app

    monkeypatch.setenv("AJOISSA_UI_DB", str(tmp_path / "ui.db"))
    store = UiStore(tmp_path / "ui.db")
    _review(store, None)
    store.add_review(STAFF, "p2", "S1", "not_a_concern", 'a, "quoted" note', None, None)
    out = tmp_path / "out" / "reviews.csv"
    result = CliRunner().invoke(app, ["reviews", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 2 reviews" in result.output
    rows = _read_excel_csv(out)
    assert len(rows) == 2
    assert rows[0]["flagged"] == "1"
    assert rows[0]["model_version"] == "1"
    assert rows[1]["note"] == 'a, "quoted" note'


def _read_excel_csv(path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_reviews_export_excel_format(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    _review(store, None)
    out = tmp_path / "reviews.csv"
    store.export_csv(out)
    content = out.read_bytes()
    assert content.startswith(b"\xef\xbb\xbfreview_id;recorded_at;")
    assert b"\r\n" in content
    probability = _read_excel_csv(out)[0]["probability"]
    assert "," in probability


@pytest.mark.parametrize("note", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)"])
def test_reviews_export_no_formulas(tmp_path, note):
    store = UiStore(tmp_path / "ui.db")
    store.add_review(STAFF, "p1", "S1", "not_a_concern", note, None, None)
    out = tmp_path / "reviews.csv"
    store.export_csv(out)
    assert _read_excel_csv(out)[0]["note"] == "'" + note


def test_capacity_command_rejects_zero(tmp_path, monkeypatch):
    from ajoissa.cli import app

    monkeypatch.setenv("AJOISSA_UI_DB", str(tmp_path / "ui.db"))
    result = CliRunner().invoke(app, ["reviews", "capacity", "S1", "0"])
    assert result.exit_code == 2
    assert "invalid capacity 0" in result.output


def test_store_rejects_far_follow_up(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    far = dt.date.today() + dt.timedelta(days=MAX_FOLLOW_UP_DAYS + 1)
    with pytest.raises(ValueError, match="invalid follow-up date"):
        store.add_review(STAFF, "p1", "S1", "monitor", "", far, None)


def test_store_rejects_control_note(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    with pytest.raises(ValueError, match="control characters"):
        store.add_review(STAFF, "p1", "S1", "monitor", "a\x00b", None, None)


def test_grade_trend_keeps_one_scale_per_source():
    from serving.ui.queries import PupilPoint, RunRef, trend_series

    def point(day, features):
        run = RunRef(1, day, "m", "1")
        return PupilPoint(run, 0.1, 1, 10, [], features)

    # A records pupil without grades this term gets no grade chart rather than
    # a chart of the 0 to 100 assessment score.
    records = [
        point(
            dt.date(2024, 10, 1), {"grade_mean_term": None, "weighted_mean_score": 40}
        ),
        point(
            dt.date(2024, 12, 1), {"grade_mean_term": None, "weighted_mean_score": 45}
        ),
    ]
    assert "grades" not in trend_series(records)
    oulad = [point(dt.date(2014, 3, 3), {"weighted_mean_score": 41.0})]
    assert trend_series(oulad)["grades"].feature == "weighted_mean_score"


def test_reviews_export_one_singular(tmp_path, monkeypatch):
    from ajoissa.cli import app

    monkeypatch.setenv("AJOISSA_UI_DB", str(tmp_path / "ui.db"))
    _review(UiStore(tmp_path / "ui.db"), None)
    out = tmp_path / "reviews.csv"
    result = CliRunner().invoke(app, ["reviews", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 1 review from" in result.output


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [
        (1, None),
        (2, (2, 4, "17%")),
        (3, (2, 4, "17%")),
        (4, None),
        (5, None),
    ],
)
def test_cutoff_tie_groups(capacity, expected):
    ranked = [(1, 0.30), (2, 0.171), (3, 0.170), (4, 0.169), (5, 0.12)]
    tie = cutoff_tie(Translator("en"), ranked, capacity)
    if expected is None:
        assert tie is None
    else:
        assert (tie.first_rank, tie.last_rank, tie.estimate) == expected
