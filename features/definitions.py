"""Declarative learner features, compiled to SQL.

A feature is a :class:`FeatureDef`: a source table, a time window before the
as-of date, an aggregation and optionally a condition and a value. A data
scientist adds one by appending a ``FeatureDef`` to ``LEARNER_FEATURES``;
:func:`compile_sql` turns the whole list into one SELECT statement.

Sources are keyed by learner, not by enrolment, so features follow a pupil
across enrolments: a change of school or of school year never resets a
counter. The SQL sticks to functions that DuckDB and Spark SQL both have
(``make_date``, ``date_add``, ``regr_slope``, ``bool_and``, ``max_by``,
``FILTER``, window functions), so that one text serves both engines
(:mod:`features.engines`). Two constructs are written with Spark in mind:
``date - date`` is an interval in Spark SQL, so day numbers cast it to an
integer, and a decimal literal such as ``1.0`` would make Spark average in
``DECIMAL`` with five decimals, so indicators are ``DOUBLE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WINDOWS = {
    "2w": "e.date > date_add(k.asof_date, -14)",
    "4w": "e.date > date_add(k.asof_date, -28)",
    "8w": "e.date > date_add(k.asof_date, -56)",
    "term": "e.date >= {term_start}",
    "previous_term": "e.date >= {previous_term_start} AND e.date < {term_start}",
    "year": "e.date >= {year_start}",
    "365d": "e.date > date_add(k.asof_date, -365)",
    "all": "TRUE",
}
"""Windows ending on the as-of date. Terms run from 1 August to 31 December
and from 1 January to 31 July; the school year from 1 August."""

_YEAR = "year(k.asof_date)"
_AUTUMN = "month(k.asof_date) >= 8"
_BOUNDS = {
    "term_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
    f"ELSE make_date({_YEAR}, 1, 1) END",
    "previous_term_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 1, 1) "
    f"ELSE make_date({_YEAR} - 1, 8, 1) END",
    "year_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
    f"ELSE make_date({_YEAR} - 1, 8, 1) END",
}

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
    """SQL condition on the source's columns (alias ``e``)."""
    value: str = "1"
    """SQL expression on the source's columns, for sum, mean, max, count_distinct
    and last."""

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


SOURCES = {
    "attendance": """
        SELECT en.learner_id, CAST(a.date AS DATE) AS date, a.mark
        FROM attendance a JOIN enrolments en USING (enrolment_id)""",
    "grades": """
        SELECT en.learner_id, CAST(s.submitted_date AS DATE) AS date, s.subject,
               s.score / 100 * 6 + 4 AS grade, s.passed
        FROM assessments s JOIN enrolments en USING (enrolment_id)
        WHERE s.submitted_date IS NOT NULL""",
    "study_rights": """
        SELECT learner_id, CAST(min(state_from) AS DATE) AS date,
               min(state_from) > min(min(state_from)) OVER (PARTITION BY learner_id)
                   AS is_change
        FROM study_right_states GROUP BY learner_id, study_right_id""",
    "support": """
        SELECT en.learner_id, CAST(t.known_from AS DATE) AS date, t.attr_support_level
        FROM attributes t JOIN enrolments en USING (enrolment_id)""",
    "grade_levels": """
        SELECT en.learner_id, CAST(t.known_from AS DATE) AS date,
               t.attr_grade_level AS grade_level,
               year(t.known_from) - CASE WHEN month(t.known_from) < 8 THEN 1 ELSE 0 END
                   AS school_year,
               year(l.birth_date) AS birth_year, month(l.birth_date) AS birth_month
        FROM attributes t JOIN enrolments en USING (enrolment_id)
        JOIN learners l USING (learner_id)
        WHERE t.attr_grade_level IS NOT NULL AND l.birth_date IS NOT NULL""",
}
"""Learner-level source tables, as SQL over the contract tables."""

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


def _window(window: str) -> str:
    return WINDOWS[window].format(**_BOUNDS)


def _indicator(condition: str) -> str:
    return f"CASE WHEN {condition} THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END"


def _aggregate(feature: FeatureDef) -> str:
    window = _window(feature.window)
    where = f"({window}) AND ({feature.where})"
    if feature.aggregation == "share":
        return f"avg({_indicator(feature.where)}) FILTER (WHERE {window})"
    if feature.aggregation == "count":
        return f"count(*) FILTER (WHERE {where})"
    if feature.aggregation == "sum":
        return f"coalesce(sum({feature.value}) FILTER (WHERE {where}), 0)"
    if feature.aggregation == "mean":
        return f"avg({feature.value}) FILTER (WHERE {where})"
    if feature.aggregation == "max":
        return f"max({feature.value}) FILTER (WHERE {where})"
    if feature.aggregation == "count_distinct":
        return f"count(DISTINCT {feature.value}) FILTER (WHERE {where})"
    if feature.aggregation == "last":
        return f"max_by({feature.value}, e.date) FILTER (WHERE {where})"
    if feature.aggregation == "slope":
        return (
            f"regr_slope({_indicator(feature.where)}, "
            f"CAST(e.date - k.asof_date AS INTEGER)) FILTER (WHERE {window})"
        )
    raise ValueError(
        f"feature {feature.name}: {feature.aggregation} is not a row aggregate"
    )


def _streak_cte(feature: FeatureDef) -> str:
    """Return SQL for the longest run of consecutive recorded days meeting ``where``."""
    window = _window(feature.window)
    return f"""
    {feature.name}_days AS (
        SELECT e.learner_id, e.date, bool_and({feature.where}) AS hit
        FROM src_{feature.source} e GROUP BY e.learner_id, e.date
    ),
    {feature.name}_runs AS (
        SELECT k.learner_id, k.asof_date, e.hit,
               row_number() OVER (PARTITION BY k.learner_id, k.asof_date ORDER BY e.date)
             - row_number() OVER (PARTITION BY k.learner_id, k.asof_date, e.hit
                                  ORDER BY e.date) AS run
        FROM keys k JOIN {feature.name}_days e
          ON e.learner_id = k.learner_id AND e.date <= k.asof_date AND ({window})
    ),
    {feature.name} AS (
        SELECT learner_id, asof_date, max(days) AS {feature.name}
        FROM (SELECT learner_id, asof_date, run, count(*) AS days
              FROM {feature.name}_runs WHERE hit GROUP BY learner_id, asof_date, run) t
        GROUP BY learner_id, asof_date
    )"""


def compile_sql(
    features: list[FeatureDef | DerivedDef], sources: set[str]
) -> tuple[str, list[str]]:
    """Compile ``features`` into one SELECT over the table ``keys``.

    ``asof_keys`` has ``learner_id`` and ``asof_date``; the contract tables must
    be registered under their names. Features whose source is not in ``sources``
    are skipped. Returns the SQL and the names of the features it computes,
    in order.

    NOTE: the attendance features took 12.9 times as long as a plain DuckDB
    scan of the same marks at 10,000 pupils, and 31 times at 100,000
    (docs/benchmarks.md). The joins that tie marks to learners and as-of dates
    cost most of it.
    """
    direct = [f for f in features if isinstance(f, FeatureDef) and f.source in sources]
    names = {f.name for f in direct}
    derived = [
        f
        for f in features
        if isinstance(f, DerivedDef)
        and all(word in names for word in _identifiers(f.expression))
    ]
    ctes = [
        "keys AS (SELECT learner_id, CAST(asof_date AS DATE) AS asof_date FROM asof_keys)"
    ]
    ctes += [
        f"src_{name} AS ({SOURCES[name]})"
        for name in sorted({f.source for f in direct})
    ]
    selects = []
    for source in sorted({f.source for f in direct}):
        rows = [
            f for f in direct if f.source == source and f.aggregation != "max_streak"
        ]
        if not rows:
            continue
        columns = ",\n        ".join(f"{_aggregate(f)} AS {f.name}" for f in rows)
        ctes.append(
            f"""agg_{source} AS (
        SELECT k.learner_id, k.asof_date,
        {columns}
        FROM keys k JOIN src_{source} e
          ON e.learner_id = k.learner_id AND e.date <= k.asof_date
        GROUP BY k.learner_id, k.asof_date
    )"""
        )
        selects.append(f"agg_{source}")
    streaks = [f for f in direct if f.aggregation == "max_streak"]
    ctes += [_streak_cte(f) for f in streaks]
    selects += [f.name for f in streaks]

    joins = "\n".join(f"LEFT JOIN {t} USING (learner_id, asof_date)" for t in selects)
    zero_when_missing = {
        f.name
        for f in direct
        if f.aggregation in ("count", "sum", "count_distinct", "max_streak")
    }
    outputs = [
        f"coalesce({f.name}, 0) AS {f.name}" if f.name in zero_when_missing else f.name
        for f in direct
    ]
    inner = (
        f"SELECT k.learner_id, CAST(k.asof_date AS TIMESTAMP) AS asof_date, "
        f"{', '.join(outputs)} FROM keys k\n{joins}"
    )
    derived_columns = "".join(f", {f.expression} AS {f.name}" for f in derived)
    sql = (
        "WITH "
        + ",\n    ".join(ctes)
        + f",\n    direct AS ({inner})\nSELECT *{derived_columns} FROM direct"
    )
    return sql, [f.name for f in direct] + [f.name for f in derived]


def _identifiers(expression: str) -> list[str]:
    """Return the column names in a SQL expression, leaving out function names."""
    return re.findall(r"\b[A-Za-z_]\w*\b(?!\s*\()", expression)
