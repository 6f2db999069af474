"""Trend charts: which stored feature each point draws and how it is labelled."""

from __future__ import annotations

import datetime as dt

import pytest

from serving.ui.i18n import LANGUAGES, Translator
from serving.ui.queries import PupilPoint, RunRef, trend_series

AUTUMN = dt.date(2024, 10, 1)
WINTER = dt.date(2024, 12, 1)
SPRING = dt.date(2025, 2, 1)


def _point(as_of: dt.date, features: dict) -> PupilPoint:
    return PupilPoint(
        run=RunRef(1, as_of, "m", "1"),
        probability=0.2,
        school_rank=1,
        school_size=1,
        reasons=[],
        features=features,
    )


def _grade_points() -> list[PupilPoint]:
    """A pupil whose term has grades only at the middle as-of date."""
    return [
        _point(AUTUMN, {"grade_mean_term": None, "grade_mean_year": None}),
        _point(WINTER, {"grade_mean_term": 7.25, "grade_mean_year": 7.25}),
        _point(SPRING, {"grade_mean_term": None, "grade_mean_year": 6.75}),
    ]


def test_grades_fall_back_to_year_mean():
    trend = trend_series(_grade_points())["grades"]
    assert trend.feature == "grade_mean_term"
    assert trend.points == [(WINTER, 7.25), (SPRING, 6.75)]
    assert trend.measures == ("grade_mean_term", "grade_mean_year")


def test_grades_only_year_mean():
    points = [_point(SPRING, {"grade_mean_term": None, "grade_mean_year": 6.75})]
    trend = trend_series(points)["grades"]
    assert trend.points == [(SPRING, 6.75)]
    assert trend.measures == ("grade_mean_year",)


def test_no_grade_chart_without_grades():
    points = [_point(AUTUMN, {"grade_mean_term": None, "grade_mean_year": None})]
    assert "grades" not in trend_series(points)


def test_scores_chart_without_grade_features():
    points = [_point(AUTUMN, {"weighted_mean_score": 55.0})]
    trend = trend_series(points)["grades"]
    assert trend.feature == "weighted_mean_score"
    assert trend.measures == ("weighted_mean_score",)


@pytest.mark.parametrize(
    ("language", "term", "year"),
    [
        ("en", "term average 7.2", "school-year average 6.8"),
        ("fi", "lukukauden keskiarvo 7,2", "lukuvuoden keskiarvo 6,8"),
        ("sv", "terminens medeltal 7,2", "läsårets medeltal 6,8"),
    ],
)
def test_grade_points_name_measure(language, term, year):
    from serving.ui.app import _trend_chart

    t = Translator(language)
    trend = trend_series(_grade_points())["grades"]
    html = str(_trend_chart(t, "grades", trend, small=False))
    label = html.split('aria-label="', 1)[1].split('"', 1)[0]
    assert term in label
    assert year in label
    # Each dot's tooltip and the text under the chart name the point's measure.
    assert f"<title>{t.date(WINTER)}: {term}</title>" in html
    assert f"<title>{t.date(SPRING)}: {year}</title>" in html
    assert f'<p class="chart-points">{t.date(WINTER)}: {term}; ' in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_small_grade_chart_no_text(language):
    from serving.ui.app import _trend_chart

    t = Translator(language)
    trend = trend_series(_grade_points())["grades"]
    html = str(_trend_chart(t, "grades", trend, small=True))
    assert html.startswith("<svg")
    assert "chart-points" not in html
