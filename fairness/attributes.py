"""Sensitive attributes that change over time, taken at each row's as-of date.

A learner's gender or mother tongue is one value per learner, read from the
learners table. Age and the level of support a pupil receives change during
school, so a source may give a birth date and a support level instead of a
band. This module derives the audited groups from them at each evaluation
row's as-of date, so a pupil who turns 16 or gets special support in the
spring is audited in the right group on each date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sources.school.tables import SUPPORT_LEVELS

AGE_BAND_EDGES_YEARS = (13, 16, 18)
"""Ages at which a school-age band ends. In Finland pupils reach grades 7 to 9
at about 13, most finish basic education at 16, and compulsory education lasts
until 18."""

AGE_BAND_LABELS = ("under 13", "13 to 15", "16 to 17", "18 or over")

SUPPORT_LEVEL_COLUMN = "attr_support_level"
"""Feature with the support level in force on the as-of date, coded as the
position in ``SUPPORT_LEVELS`` (0 general, 1 intensified, 2 special support)."""

SUPPORT_STATUS_LABELS = dict(enumerate(SUPPORT_LEVELS))

DERIVATIONS = {
    "age_band": "age in whole years at each as-of date, from the birth date, in "
    f"the bands {', '.join(AGE_BAND_LABELS)}",
    "support_status": "level of support in force on each as-of date "
    "(general, intensified or special)",
}
"""Attributes this module can derive, with how, for the fairness report."""


def point_in_time_attributes(
    rows: pd.DataFrame, learners: pd.DataFrame, names: list[str]
) -> dict[str, pd.Series]:
    """Derive each attribute in ``names`` that the data allow, one value per row.

    ``rows`` are evaluation rows with ``learner_id``, ``asof_date`` and the
    feature columns; ``learners`` is the learners table. An attribute is
    derived only when its inputs are there: ``age_band`` needs a
    ``birth_date`` column, ``support_status`` the support-level feature. The
    series share ``rows``' index; a missing input value gives a missing group.
    """
    derived = {}
    if "age_band" in names and "birth_date" in learners.columns:
        derived["age_band"] = _age_band(rows, learners)
    if "support_status" in names and SUPPORT_LEVEL_COLUMN in rows.columns:
        level = pd.to_numeric(rows[SUPPORT_LEVEL_COLUMN], errors="coerce")
        derived["support_status"] = level.map(SUPPORT_STATUS_LABELS).astype(object)
    return derived


def _age_band(rows: pd.DataFrame, learners: pd.DataFrame) -> pd.Series:
    birth = pd.to_datetime(
        rows["learner_id"].map(learners.set_index("learner_id")["birth_date"])
    )
    asof = pd.to_datetime(rows["asof_date"])
    # Whole years of age: one less when the birthday is still ahead in the year.
    years = asof.dt.year - birth.dt.year
    before_birthday = (asof.dt.month < birth.dt.month) | (
        (asof.dt.month == birth.dt.month) & (asof.dt.day < birth.dt.day)
    )
    age = years - before_birthday.astype(int)
    bands = pd.cut(
        age,
        bins=[-np.inf, *AGE_BAND_EDGES_YEARS, np.inf],
        right=False,
        labels=list(AGE_BAND_LABELS),
    )
    return bands.astype(object).where(age.notna())
