"""The range of values each feature can take, for checking records to score.

A value outside its feature's range cannot come from the feature builder, so
the scoring API rejects it instead of scoring it. The ranges come from how each
feature is built:

- declarative learner features (:data:`features.definitions.LEARNER_FEATURES`)
  by their aggregation. A share lies in 0..1. A count, a distinct count or a
  streak is a whole number of at least 0. A sum of non-negative values
  (absence hours) is at least 0. A mean or maximum takes the range of its
  value expression where ``VALUE_RANGES`` lists it;
- the SQL features of :mod:`features.build` by ``BUILD_FEATURE_RANGES``, which
  follows the SQL there: counts and day counts clamped at 0, shares, and
  assessment scores in 0..100 as the input contract requires of
  ``assessments.score``.

A feature missing from both (attribute columns, slopes, differences) gets no
range: any finite number is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from features.definitions import LEARNER_FEATURES, FeatureDef
from sources.school.tables import SUPPORT_LEVELS


@dataclass(frozen=True)
class ValueRange:
    """Closed interval of a feature's values, and whether they are whole numbers."""

    lower: float = -math.inf
    upper: float = math.inf
    whole: bool = False

    def contains(self, value: float) -> bool:
        """Return whether ``value`` lies in the range (and is whole if required)."""
        if not self.lower <= value <= self.upper:
            return False
        return not self.whole or value == int(value)

    def describe(self) -> str:
        """Return the range in words, such as 'a whole number of at least 0'."""
        kind = "a whole number" if self.whole else "a number"
        if math.isinf(self.lower) and math.isinf(self.upper):
            return kind
        if math.isinf(self.upper):
            return f"{kind} of at least {_plain(self.lower)}"
        if math.isinf(self.lower):
            return f"{kind} of at most {_plain(self.upper)}"
        return f"{kind} from {_plain(self.lower)} to {_plain(self.upper)}"


SHARE = ValueRange(0.0, 1.0)
COUNT = ValueRange(0.0, whole=True)
NON_NEGATIVE = ValueRange(0.0)
SCORE = ValueRange(0.0, 100.0)
"""Assessment scores: the input contract checks ``assessments.score`` in 0..100."""

VALUE_RANGES = {"e.grade": ValueRange(4.0, 10.0)}
"""Ranges of value expressions of learner features. A grade is built as
``score / 100 * 6 + 4`` from a score in 0..100 (see ``SOURCES`` in
:mod:`features.definitions`)."""

BUILD_FEATURE_RANGES = {
    "days_since_unit_start": COUNT,
    "days_enrolled": COUNT,
    "days_registered_before_start": COUNT,
    "assessments_due": COUNT,
    "assessments_submitted": COUNT,
    "assessments_missed": COUNT,
    "assessments_failed": COUNT,
    "assessments_late": COUNT,
    "share_submitted": SHARE,
    "mean_score": SCORE,
    "weighted_mean_score": SCORE,
    "last_score": SCORE,
    "min_score": SCORE,
    "days_since_last_submission": COUNT,
    "attendance_marks": COUNT,
    "absence_share": SHARE,
    "unexcused_share": SHARE,
    "late_share": SHARE,
    "absence_share_recent": SHARE,
    "unexcused_share_recent": SHARE,
    "age_years": ValueRange(0.0, 120.0),
    # Attributes of the school-records mapping (sources/school/mapping.py), in
    # the ranges of docs/data-contract.md. Support level: 0 general, 1
    # intensified, 2 special. Grade: 1 to 9 in basic education, then 9 + n in
    # year n of upper secondary, where vocational studies can take 5 years.
    "attr_support_level": ValueRange(0.0, float(len(SUPPORT_LEVELS) - 1), whole=True),
    "attr_behaviour_notes": COUNT,
    "attr_grade_level": ValueRange(1.0, 14.0, whole=True),
}

EXPLICIT_LEARNER_FEATURE_RANGES = {
    # Months older than the youngest pupil on track for the grade. No pupil is
    # five years ahead of the grade, and adults in vocational upper secondary
    # can be decades older than its age, so only values beyond a 120-year gap
    # are invalid.
    "age_for_grade_months": ValueRange(-60.0, 1440.0, whole=True),
}
"""Ranges of learner features whose aggregation and value give no range."""

"""Ranges of the features computed by the SQL in :mod:`features.build`, and of
the school-records attributes. ``mean_days_early`` has none: early submissions
are positive, late ones negative."""

_AGGREGATION_RANGES = {
    "share": SHARE,
    "count": COUNT,
    "count_distinct": COUNT,
    "max_streak": COUNT,
}


def _learner_feature_range(feature: FeatureDef) -> ValueRange | None:
    if feature.aggregation in _AGGREGATION_RANGES:
        return _AGGREGATION_RANGES[feature.aggregation]
    if feature.aggregation in ("mean", "max"):
        return VALUE_RANGES.get(feature.value)
    if feature.aggregation == "sum":
        # Only sums of a constant non-negative number (such as lesson hours)
        # are known to be non-negative.
        try:
            return NON_NEGATIVE if float(feature.value) >= 0 else None
        except ValueError:
            return None
    return None


def feature_ranges() -> dict[str, ValueRange]:
    """Return the known range of every feature the builders can produce, by name."""
    ranges = dict(BUILD_FEATURE_RANGES)
    for feature in LEARNER_FEATURES:
        if isinstance(feature, FeatureDef):
            found = _learner_feature_range(feature)
            if found is not None:
                ranges[feature.name] = found
    return ranges | EXPLICIT_LEARNER_FEATURE_RANGES


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)
