"""Known value ranges of features, which the scoring API checks."""

import pytest

from features.bounds import feature_ranges


@pytest.mark.parametrize("months", [-12.0, 0.0, 11.0, 30.0, 600.0])
def test_age_for_grade_accepts_real_gaps(months):
    assert feature_ranges()["age_for_grade_months"].contains(months)


@pytest.mark.parametrize("months", [-500.0, 2000.0, 12.5])
def test_age_for_grade_rejects_impossible(months):
    assert not feature_ranges()["age_for_grade_months"].contains(months)


def test_age_for_grade_expectation_text():
    expected = feature_ranges()["age_for_grade_months"].describe()
    assert expected == "a whole number from -60 to 1440"
