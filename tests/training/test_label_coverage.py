"""Estimates of the school years a temporal split needs under a label rule."""

import pandas as pd
import pytest

from features.labels import LabelRule
from training.label_coverage import cohorts_needed

STARTS = [pd.Timestamp(f"{year}-08-01") for year in (2022, 2023, 2024)]
DATA_END = pd.Timestamp("2025-05-31")


@pytest.mark.parametrize(
    ("window", "gap", "expected"),
    [
        # Test year 2023 is labelled by data to May 2025, and training year
        # 2021 is the latest whose 1 October window ends before August 2023.
        (365, 120, 4),
        (183, 120, 3),
        # 1 October plus 120 + 120 days is before 31 May, so the latest year
        # is labelled and the year before trains.
        (120, 120, 2),
    ],
)
def test_cohorts_needed_by_window(window, gap, expected):
    rule = LabelRule(window_days=window, transfer_gap_days=gap)
    assert cohorts_needed(STARTS, DATA_END, 61, rule) == expected


def test_cohorts_needed_one_cohort_unknown():
    assert cohorts_needed(STARTS[:1], DATA_END, 61, LabelRule()) is None
