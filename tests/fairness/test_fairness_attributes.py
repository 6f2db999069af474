"""Age band and support status taken at each evaluation row's as-of date."""

import numpy as np
import pandas as pd

from fairness.attributes import point_in_time_attributes


def _rows(asof: list[str], support: list[float] | None = None) -> pd.DataFrame:
    rows = pd.DataFrame(
        {"learner_id": ["a"] * len(asof), "asof_date": pd.to_datetime(asof)}
    )
    if support is not None:
        rows["attr_support_level"] = support
    return rows


LEARNERS = pd.DataFrame(
    {"learner_id": ["a"], "birth_date": pd.to_datetime(["2009-03-01"])}
)


def test_age_band_changes_on_birthday():
    rows = _rows(["2025-02-28", "2025-03-01", "2027-03-01"])
    derived = point_in_time_attributes(rows, LEARNERS, ["age_band"])
    assert derived["age_band"].tolist() == ["13 to 15", "16 to 17", "18 or over"]


def test_age_band_edges():
    rows = _rows(["2021-02-28", "2022-03-01"])
    derived = point_in_time_attributes(rows, LEARNERS, ["age_band"])
    assert derived["age_band"].tolist() == ["under 13", "13 to 15"]


def test_age_band_missing_birth_date():
    learners = LEARNERS.assign(birth_date=pd.NaT)
    derived = point_in_time_attributes(_rows(["2025-01-01"]), learners, ["age_band"])
    assert derived["age_band"].isna().all()


def test_support_status_per_row():
    rows = _rows(["2025-01-01"] * 4, support=[0.0, 1.0, 2.0, np.nan])
    derived = point_in_time_attributes(rows, LEARNERS, ["support_status"])
    values = derived["support_status"].tolist()
    assert values[:3] == ["general", "intensified", "special"]
    assert pd.isna(values[3])


def test_attributes_without_inputs_not_derived():
    rows = _rows(["2025-01-01"])
    learners = LEARNERS.drop(columns="birth_date")
    derived = point_in_time_attributes(rows, learners, ["age_band", "support_status"])
    assert derived == {}


def test_only_requested_attributes_derived():
    rows = _rows(["2025-01-01"], support=[1.0])
    derived = point_in_time_attributes(rows, LEARNERS, ["support_status"])
    assert set(derived) == {"support_status"}
