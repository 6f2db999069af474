"""Compile declarative learner features into one SQL statement.

Per source, the statement joins the source rows once to the as-of keys and
computes every row-level aggregation (share, count, sum, mean, max, slope,
count_distinct) in one GROUP BY per learner and as-of date. Three choices keep
that pass cheap on lesson-level attendance:

- rows keyed by enrolment join the keys through ``keys_by_enrolment``, the
  small join of keys and enrolments, instead of mapping every row to its
  learner first;
- the window bounds (term and school-year starts) are columns of ``keys``,
  computed once per key instead of once per row;
- rows dated after the latest as-of date are dropped while the source is read.

A longest streak needs the days in order, so each ``max_streak`` feature has
its own pass: it groups the rows in its window by learner, as-of date and
day, numbers the runs of hit days with one window function (the count of
missed days so far), and takes the longest run.

The SQL uses only constructs that DuckDB and Spark SQL both have: ``FILTER``
on aggregates, ``regr_slope``, ``bool_and``, ``count(DISTINCT ...)``, a window
``sum`` with the default frame, scalar subqueries, ``make_date``,
``date_add``, ``year``, ``month``, ``greatest`` and ``coalesce``.
"""

from __future__ import annotations

import re

from features.definitions import (
    SOURCES,
    WINDOW_BOUNDS,
    WINDOWS,
    DerivedDef,
    FeatureDef,
)

DAY_NUMBER = "e.date - k.asof_date"
"""Day number of a row relative to the as-of date, the slope's x.

NOTE: ``date - date`` is an integer in DuckDB but an interval in Spark SQL."""

_ZERO_WHEN_MISSING = ("count", "sum", "count_distinct", "max_streak")


def _window(window: str) -> str:
    return WINDOWS[window].format(**{name: f"k.{name}" for name in WINDOW_BOUNDS})


def _aggregate(feature: FeatureDef) -> str:
    """Return the aggregate over joined source rows that gives ``feature``."""
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
            f"{DAY_NUMBER}) FILTER (WHERE {window})"
        )
    raise ValueError(
        f"feature {feature.name}: {feature.aggregation} is not a row aggregate"
    )


def _joined(source: str, condition: str = "TRUE") -> str:
    """Return FROM and WHERE joining a source's rows to the as-of keys."""
    spec = SOURCES[source]
    keys = "keys_by_enrolment" if spec.key == "enrolment_id" else "keys"
    return f"""FROM {keys} k JOIN (
            SELECT * FROM ({spec.rows}) s
            WHERE s.date <= (SELECT max(asof_date) FROM keys)
        ) e ON e.{spec.key} = k.{spec.key} AND e.date <= k.asof_date
        WHERE {condition}"""


def _streak_ctes(feature: FeatureDef) -> list[str]:
    """Return CTEs for the longest run of consecutive recorded days meeting ``where``.

    A day is a hit when ``bool_and`` of the condition over its rows is true; a
    day whose conditions are all NULL counts as a miss. The run number of a
    day is the count of missed days up to and including it, so the hit days of
    one run share it.
    """
    name = feature.name
    return [
        f"""{name}_days AS (
        SELECT k.learner_id, k.asof_date, e.date, bool_and({feature.where}) AS hit
        {_joined(feature.source, _window(feature.window))}
        GROUP BY k.learner_id, k.asof_date, e.date
    )""",
        f"""{name}_runs AS (
        SELECT learner_id, asof_date, hit,
               sum(CASE WHEN hit THEN 0 ELSE 1 END)
                   OVER (PARTITION BY learner_id, asof_date ORDER BY date) AS run
        FROM {name}_days
    )""",
        f"""{name} AS (
        SELECT learner_id, asof_date, max(days) AS {name}
        FROM (SELECT learner_id, asof_date, run, count(*) AS days
              FROM {name}_runs WHERE hit GROUP BY learner_id, asof_date, run) t
        GROUP BY learner_id, asof_date
    )""",
    ]


def compile_features(
    features: list[FeatureDef | DerivedDef], sources: set[str]
) -> tuple[str, list[str]]:
    """Compile ``features`` into one SELECT over the table ``asof_keys``.

    ``asof_keys`` has ``learner_id`` and ``asof_date``; the contract tables must
    be registered under their names. Features whose source is not in ``sources``
    are skipped, and so are derived features that use a skipped feature.
    Returns the SQL and the names of the features it computes, in order.
    """
    direct = [f for f in features if isinstance(f, FeatureDef) and f.source in sources]
    names = {f.name for f in direct}
    derived = [
        f
        for f in features
        if isinstance(f, DerivedDef)
        and all(word in names for word in _identifiers(f.expression))
    ]
    bounds = ", ".join(f"{sql} AS {name}" for name, sql in WINDOW_BOUNDS.items())
    ctes = [
        f"""keys AS (
        SELECT k.learner_id, k.asof_date, {bounds}
        FROM (SELECT learner_id, CAST(asof_date AS DATE) AS asof_date
              FROM asof_keys) k
    )"""
    ]
    used = sorted({f.source for f in direct})
    if any(SOURCES[s].key == "enrolment_id" for s in used):
        ctes.append(
            """keys_by_enrolment AS (
        SELECT en.enrolment_id, k.*
        FROM keys k JOIN enrolments en ON en.learner_id = k.learner_id
    )"""
        )
    tables = []
    for source in used:
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
        {_joined(source)}
        GROUP BY k.learner_id, k.asof_date
    )"""
        )
        tables.append(f"agg_{source}")
    for feature in direct:
        if feature.aggregation == "max_streak":
            ctes += _streak_ctes(feature)
            tables.append(feature.name)

    joins = "\n".join(f"LEFT JOIN {t} USING (learner_id, asof_date)" for t in tables)
    outputs = [
        f"coalesce({f.name}, 0) AS {f.name}"
        if f.aggregation in _ZERO_WHEN_MISSING
        else f.name
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
