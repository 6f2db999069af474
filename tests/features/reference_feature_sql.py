"""The learner-feature SQL as first written, row by row: a reference for tests.

Every aggregation here runs on the source rows themselves (``avg`` for shares,
``regr_slope`` for slopes, ``bool_and`` per day and two ``row_number`` windows
for streaks). The tests check that :func:`features.definitions.compile_sql`,
which pre-aggregates rows, gives the same features.
"""

from __future__ import annotations

import re

from features.definitions import DerivedDef, FeatureDef

_YEAR = "year(k.asof_date)"
_AUTUMN = "month(k.asof_date) >= 8"
WINDOW_STARTS = {
    "term_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
    f"ELSE make_date({_YEAR}, 1, 1) END",
    "previous_term_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 1, 1) "
    f"ELSE make_date({_YEAR} - 1, 8, 1) END",
    "year_start": f"CASE WHEN {_AUTUMN} THEN make_date({_YEAR}, 8, 1) "
    f"ELSE make_date({_YEAR} - 1, 8, 1) END",
}
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
"""The windows as date conditions, independent of the compiler's day counts."""

OLD_SOURCES = {
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
}


def _window(window: str) -> str:
    return WINDOWS[window].format(**WINDOW_STARTS)


def _aggregate(feature: FeatureDef) -> str:
    window = _window(feature.window)
    where = f"({window}) AND ({feature.where})"
    if feature.aggregation == "share":
        return (
            f"avg(CASE WHEN {feature.where} THEN 1.0 ELSE 0.0 END) "
            f"FILTER (WHERE {window})"
        )
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
    if feature.aggregation == "slope":
        return (
            f"regr_slope(CASE WHEN {feature.where} THEN 1.0 ELSE 0.0 END, "
            f"e.date - k.asof_date) FILTER (WHERE {window})"
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


def compile_reference_sql(
    features: list[FeatureDef | DerivedDef], sources: set[str]
) -> tuple[str, list[str]]:
    """Compile ``features`` into one SELECT over the table ``keys``.

    ``asof_keys`` has ``learner_id`` and ``asof_date``; the contract tables must
    be registered under their names. Features whose source is not in ``sources``
    are skipped. Returns the SQL and the names of the features it computes,
    in order.
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
        f"src_{name} AS ({OLD_SOURCES[name]})"
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
