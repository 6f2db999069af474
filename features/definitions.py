"""Declarative learner features, compiled to SQL.

A feature is a :class:`FeatureDef`: a source table, a time window before the
as-of date, an aggregation and optionally a condition and a value. A data
scientist adds one by appending a ``FeatureDef`` to ``LEARNER_FEATURES``;
:func:`compile_sql` turns the whole list into one SELECT statement
(:mod:`features.compiler` says how).

Features are computed per learner, not per enrolment. A source keyed by
enrolment reaches the learner through every enrolment the learner has, so
features follow a pupil across enrolments. A change of school or of school year
never resets a counter. The SQL sticks to functions that DuckDB and Spark SQL both have
(``make_date``, ``date_add``, ``max_by``, ``FILTER``, window functions), so
that one text serves both engines (:mod:`features.engines`). Day numbers cast
``date - date``, an interval in Spark SQL, to an integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from features.compiler import CompiledFeatures

WINDOWS = {
    "2w": "{days} < 14",
    "4w": "{days} < 28",
    "8w": "{days} < 56",
    "term": "{days} <= {term_days}",
    "previous_term": "{days} > {term_days} AND {days} <= {previous_term_days}",
    "year": "{days} <= {year_days}",
    "365d": "{days} < 365",
    "all": "TRUE",
}
"""Windows ending on the as-of date, as SQL conditions on ``{days}``, the number
of days from a row's date to the as-of date (0 on the as-of date itself).
Terms run from 1 August to 31 December and from 1 January to 31 July; the
school year from 1 August. The other placeholders are :data:`WINDOW_BOUNDS`.

Every joined source row is tested against every window, and comparing one
integer per row costs less than the date arithmetic it replaces."""

WINDOW_DAYS = {
    "2w": 14,
    "4w": 28,
    "8w": 56,
    "term": 213,
    "previous_term": 366,
    "year": 366,
    "365d": 365,
    "all": None,
}
"""The maximum number of days a window spans (``None`` when unbounded). The
longer term, 1 January to 31 July, has 213 days in a leap year. The previous
term starts at most 366 days before the as-of date."""

_YEAR = "year(k.asof_date)"
_AUTUMN = "month(k.asof_date) >= 8"


def _days_since(start: str) -> str:
    return f"CAST(k.asof_date - {start} AS INTEGER)"


WINDOW_BOUNDS = {
    "term_days": _days_since(
        f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
        f"ELSE make_date({_YEAR}, 1, 1) END"
    ),
    "previous_term_days": _days_since(
        f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 1, 1) "
        f"ELSE make_date({_YEAR} - 1, 8, 1) END"
    ),
    "year_days": _days_since(
        f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
        f"ELSE make_date({_YEAR} - 1, 8, 1) END"
    ),
}
"""Days from the start of the term, the previous term and the school year to
the as-of date, as SQL on the as-of date (alias ``k``), computed once per key."""

AGGREGATIONS = (
    "share",
    "count",
    "sum",
    "mean",
    "max",
    "slope",
    "count_distinct",
    "max_streak",
    "last",
)
"""Aggregations that summarise the source rows in a feature's window.

``share``: the share of rows meeting ``where``. ``count``, ``sum``, ``mean``,
``max``, ``count_distinct``: of ``value`` over rows meeting ``where``. ``slope``: the
least-squares slope of the ``where`` indicator over days (change in share per
day). ``max_streak``: the longest run of consecutive recorded days on which
every row meets ``where``. ``last``: ``value`` of the latest row meeting ``where``
(rows on the same date tie, so give them equal values)."""


@dataclass(frozen=True)
class FeatureDef:
    """One learner feature: ``aggregation`` of ``source`` rows in ``window``."""

    name: str
    source: str
    window: str
    aggregation: str
    where: str = "TRUE"
    """SQL condition on the source's columns, each written ``e.column``."""
    value: str = "1"
    """SQL expression on the source's columns (``e.column``), for sum, mean,
    max, count_distinct and last."""

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"feature {self.name}: unknown window {self.window!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"feature {self.name}: unknown aggregation {self.aggregation!r}; "
                f"use one of {', '.join(AGGREGATIONS)}"
            )


@dataclass(frozen=True)
class DerivedDef:
    """A feature computed from other features of the same row by a SQL expression."""

    name: str
    expression: str


@dataclass(frozen=True)
class Source:
    """A source table of dated rows, as SQL over the contract tables."""

    rows: str
    """SELECT giving ``key``, ``date`` (a DATE) and the columns features use."""
    key: str
    """``learner_id``, or ``enrolment_id`` for rows that reach their learner
    through the enrolments table."""


SOURCES = {
    "attendance": Source(
        """
        SELECT enrolment_id, CAST(date AS DATE) AS date, mark FROM attendance""",
        "enrolment_id",
    ),
    "grades": Source(
        """
        SELECT enrolment_id, CAST(submitted_date AS DATE) AS date, subject,
               score / 100 * 6 + 4 AS grade, passed
        FROM assessments WHERE submitted_date IS NOT NULL""",
        "enrolment_id",
    ),
    "study_rights": Source(
        """
        SELECT learner_id, CAST(min(state_from) AS DATE) AS date,
               min(state_from) > min(min(state_from)) OVER (PARTITION BY learner_id)
                   AS is_change
        FROM study_right_states GROUP BY learner_id, study_right_id""",
        "learner_id",
    ),
    "support": Source(
        """
        SELECT enrolment_id, CAST(known_from AS DATE) AS date, attr_support_level
        FROM attributes""",
        "enrolment_id",
    ),
    "grade_levels": Source(
        """
        SELECT en.learner_id, CAST(t.known_from AS DATE) AS date,
               t.attr_grade_level AS grade_level,
               year(t.known_from) - CASE WHEN month(t.known_from) < 8 THEN 1 ELSE 0 END
                   AS school_year,
               year(l.birth_date) AS birth_year, month(l.birth_date) AS birth_month
        FROM attributes t JOIN enrolments en USING (enrolment_id)
        JOIN learners l USING (learner_id)
        WHERE t.attr_grade_level IS NOT NULL AND l.birth_date IS NOT NULL""",
        "learner_id",
    ),
}
"""Source tables by name; every feature reads one of them."""

ABSENT = "e.mark IN ('excused', 'unexcused')"
LESSON_HOURS = 0.75
"""Length of a lesson in hours (45 minutes), for absence hours."""


def _attendance_features() -> list[FeatureDef]:
    features = []
    for window in ("2w", "4w", "8w", "term", "year"):
        features += [
            FeatureDef(
                f"absence_share_{window}", "attendance", window, "share", ABSENT
            ),
            FeatureDef(
                f"unexcused_share_{window}",
                "attendance",
                window,
                "share",
                "e.mark = 'unexcused'",
            ),
            FeatureDef(
                f"late_share_{window}", "attendance", window, "share", "e.mark = 'late'"
            ),
        ]
    return features + [
        FeatureDef("absence_slope_8w", "attendance", "8w", "slope", ABSENT),
        FeatureDef("absence_slope_term", "attendance", "term", "slope", ABSENT),
        FeatureDef("absence_streak_year", "attendance", "year", "max_streak", ABSENT),
        FeatureDef(
            "absence_hours_year", "attendance", "year", "sum", ABSENT, str(LESSON_HOURS)
        ),
        FeatureDef(
            "unexcused_hours_year",
            "attendance",
            "year",
            "sum",
            "e.mark = 'unexcused'",
            str(LESSON_HOURS),
        ),
        FeatureDef(
            "unexcused_hours_term",
            "attendance",
            "term",
            "sum",
            "e.mark = 'unexcused'",
            str(LESSON_HOURS),
        ),
    ]


SUBJECT_GROUPS = {
    "languages": ("AI", "S2", "A1", "A2", "B1", "B2", "EN", "RU", "SA", "RA", "ES"),
    "maths_science": ("MA", "BI", "GE", "FY", "KE", "TE", "YL"),
}
"""Subject groups by Koski subject code; other subjects count only in the totals."""


def _grade_features() -> list[FeatureDef]:
    features = [
        FeatureDef(
            "grade_mean_year",
            "grades",
            "year",
            "mean",
            "e.grade IS NOT NULL",
            "e.grade",
        ),
        FeatureDef(
            "grade_mean_term",
            "grades",
            "term",
            "mean",
            "e.grade IS NOT NULL",
            "e.grade",
        ),
        FeatureDef(
            "grade_mean_previous_term",
            "grades",
            "previous_term",
            "mean",
            "e.grade IS NOT NULL",
            "e.grade",
        ),
        FeatureDef("grades_failed_year", "grades", "year", "count", "NOT e.passed"),
        FeatureDef("grades_failed_365d", "grades", "365d", "count", "NOT e.passed"),
        FeatureDef(
            "subjects_graded_previous_term",
            "grades",
            "previous_term",
            "count_distinct",
            value="e.subject",
        ),
        FeatureDef(
            "subjects_graded_365d",
            "grades",
            "365d",
            "count_distinct",
            value="e.subject",
        ),
    ]
    for group, subjects in SUBJECT_GROUPS.items():
        listed = ", ".join(f"'{s}'" for s in subjects)
        features.append(
            FeatureDef(
                f"grade_mean_{group}_365d",
                "grades",
                "365d",
                "mean",
                f"e.grade IS NOT NULL AND e.subject IN ({listed})",
                "e.grade",
            )
        )
    return features


LEARNER_FEATURES: list[FeatureDef | DerivedDef] = [
    *_attendance_features(),
    *_grade_features(),
    FeatureDef("school_changes_365d", "study_rights", "365d", "count", "e.is_change"),
    FeatureDef("school_changes_all", "study_rights", "all", "count", "e.is_change"),
    FeatureDef(
        "support_level_max_365d", "support", "365d", "max", value="e.attr_support_level"
    ),
    FeatureDef(
        "support_levels_365d",
        "support",
        "365d",
        "count_distinct",
        value="e.attr_support_level",
    ),
    # Pupils start grade 1 in the August of the year they turn 7, so grade g in
    # the school year starting in August of year Y expects a birth year of
    # Y - 6 - g. The value is months older than a pupil born in December of
    # that year: 0 to 11 is on track, 12 or more at least a year behind.
    FeatureDef(
        "age_for_grade_months",
        "grade_levels",
        "year",
        "last",
        value="12 * (e.school_year - 6 - e.grade_level - e.birth_year) "
        "+ 12 - e.birth_month",
    ),
    # Distinct levels minus one, so a return to an earlier level is not counted.
    DerivedDef("support_level_changes_365d", "greatest(support_levels_365d - 1, 0)"),
    DerivedDef("grade_change_term", "grade_mean_term - grade_mean_previous_term"),
    DerivedDef(
        "subjects_missing_previous_term",
        "subjects_graded_365d - subjects_graded_previous_term",
    ),
]
"""The learner features built for sources with attendance and grades."""


def compile_sql(
    features: list[FeatureDef | DerivedDef], sources: set[str]
) -> CompiledFeatures:
    """Compile ``features`` into one SELECT; see :func:`features.compiler.compile_features`."""
    from features.compiler import compile_features

    return compile_features(features, sources)
