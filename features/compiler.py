"""Compile declarative learner features into one SQL statement.

Per source, the row-level aggregations (share, count, sum, mean, max, slope,
count_distinct, last) take two steps:

1. ``counted_<source>`` joins the source rows to the as-of keys (rows on or
   before the as-of date) and counts them per learner, as-of date, window
   flags and the values of the columns the features read. Attendance
   features read only ``mark``, so in the benchmark (one as-of date in
   February) about 650 marks per pupil become about ten rows.
2. ``agg_<source>`` computes every feature from the counted rows, weighting
   each row by its count ``n``: a share is ``sum(n where the condition holds)
   / sum(n)``, a slope comes from the sums of ``n``, x and x squared.

Each aggregate costs a pass over its input, so step 1 runs the few cheap ones
over many rows and step 2 the many over few rows. In step 2 each distinct
feature condition is evaluated once per counted row, as a column of
``counted_<source>``, and the aggregates read that column. A window enters an
aggregate as ``CASE WHEN <window> THEN ... END``. In DuckDB 2.0 both changes
together took about 2 % less time than a ``FILTER`` clause per aggregate
(docs/benchmarks.md). Three more choices keep step 1 cheap:

- rows keyed by enrolment join the keys through ``keys_by_enrolment``, the
  small join of keys and enrolments, instead of mapping every row to its
  learner first;
- every joined row gets one integer, its days before the as-of date
  (:data:`DAYS_BEFORE`), and windows, slopes and streak masks all read it;
  the window bounds (days since the term and school-year starts) are
  columns of ``keys``, computed once per key instead of once per row;
- the join condition ``date <= asof_date`` lets DuckDB skip the rows dated
  after the latest as-of date while it reads the source (a join filter).

A longest streak needs the days in order. For windows of at most
:data:`features.streaks.MASK_DAYS` days, step 1 also keeps each group's days
as bitmasks, step 2 combines them per feature, and
:meth:`CompiledFeatures.finish` measures the runs with NumPy
(:mod:`features.streaks`). A streak over a longer window, or one that a derived
feature reads, gets its own SQL pass. That pass groups the rows in its window
by learner, as-of date and day. One window function numbers the runs of hit
days by the count of missed days so far, and the longest run wins.

The SQL uses only constructs that DuckDB and Spark SQL both have: ``FILTER``
on aggregates, ``bool_and``, ``bit_or``, ``count(DISTINCT ...)``, a window
``sum`` with the default frame, scalar subqueries, ``make_date``, ``year``,
``month``, ``floor``, ``least``, ``%``, ``<<``, ``&``, ``greatest``,
``nullif`` and ``coalesce``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features import streaks
from features.definitions import (
    SOURCES,
    WINDOW_BOUNDS,
    WINDOW_DAYS,
    WINDOWS,
    DerivedDef,
    FeatureDef,
)

DAYS_BEFORE = "CAST(k.asof_date - e.date AS INTEGER)"
"""Days from a row's date to its key's as-of date, computed once per joined row.

Windows test it, slopes use its negative as the day number and streaks take
their mask word and bit from it. ``date - date`` is an integer in DuckDB but
an interval in Spark SQL, so the cast makes both an integer."""


@dataclass(frozen=True)
class CompiledFeatures:
    """Feature SQL and the step that completes its result.

    ``sql`` returns ``learner_id``, ``asof_date``, the features and, for each
    streak in ``mask_streaks``, the mask columns of :mod:`features.streaks`
    in place of the streak. :meth:`finish` turns those into the streaks.
    """

    sql: str
    names: list[str]
    mask_streaks: tuple[str, ...] = ()

    def finish(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return ``frame`` with the streaks computed and the mask columns dropped.

        The columns come out as ``learner_id``, ``asof_date`` and ``names``.
        """
        runs = {name: streaks.longest_runs(frame, name) for name in self.mask_streaks}
        return frame.assign(**runs)[["learner_id", "asof_date", *self.names]]


_ZERO_WHEN_MISSING = ("count", "sum", "count_distinct", "max_streak")
_COLUMN = re.compile(r"\be\.([A-Za-z_]\w*)")
"""Matches a source column in a feature's ``where`` or ``value`` (``e.column``)."""


def _window(window: str) -> str:
    """Return a window's condition on the joined rows of :func:`_joined`."""
    bounds = {name: f"e.{name}" for name in WINDOW_BOUNDS}
    return WINDOWS[window].format(days="e.days_before", **bounds)


def _bounds(windows: list[str]) -> list[str]:
    """Return the names of the window bounds that ``windows`` read."""
    return [
        name
        for name in WINDOW_BOUNDS
        if any(f"{{{name}}}" in WINDOWS[window] for window in windows)
    ]


def _flag(window: str) -> str:
    return f"e.w_{window}"


def _hits(where: str, weight: str = "e.n") -> str:
    return f"CASE WHEN {where} THEN {weight} ELSE 0 END"


def _condition_columns(features: list[FeatureDef]) -> dict[str, str]:
    """Return the ``counted_<source>`` column that contains each feature condition.

    Conditions that are the constant ``TRUE`` get no column.
    """
    wheres = sorted({f.where for f in features if f.where.strip().upper() != "TRUE"})
    return {where: f"c_{i}" for i, where in enumerate(wheres)}


def _condition(feature: FeatureDef, conditions: dict[str, str]) -> str:
    """Return ``feature``'s condition as SQL over the counted rows ``e``."""
    column = conditions.get(feature.where)
    return f"e.{column}" if column else feature.where


def _aggregate(feature: FeatureDef, conditions: dict[str, str]) -> str:
    """Return the aggregate over ``counted_<source>`` rows that gives ``feature``.

    Each counted row is ``n`` source rows with the same columns, so every
    aggregation weights by ``n``. The result equals the aggregation over the
    source rows, up to the rounding of floating-point sums. ``conditions``
    maps conditions to their columns (:func:`_condition_columns`).
    """
    window = _flag(feature.window)
    where, value = _condition(feature, conditions), feature.value

    def total(expression: str) -> str:
        # NULL when no row is in the window, as with FILTER.
        return f"sum(CASE WHEN {window} THEN {expression} END)"

    if feature.aggregation == "share":
        return f"{total(_hits(where))} / {total('e.n')}"
    if feature.aggregation == "count":
        return total(_hits(where))
    if feature.aggregation == "sum":
        # A DOUBLE result converts to pandas faster than DuckDB's DECIMAL.
        if not _COLUMN.search(value):
            # A constant (such as lesson hours) moves out of the sum. What
            # remains counts the matching rows, which a share with the same
            # condition and window computes already. With an integer or
            # decimal constant both forms are exact. A floating-point
            # constant rounds once instead of once per counted row.
            return f"CAST(coalesce({total(_hits(where))} * ({value}), 0) AS DOUBLE)"
        values = total(f"CASE WHEN {where} THEN ({value}) * e.n END")
        return f"CAST(coalesce({values}, 0) AS DOUBLE)"
    if feature.aggregation == "mean":
        values = total(f"CASE WHEN {where} THEN ({value}) * e.n END")
        count = total(f"CASE WHEN ({where}) AND ({value}) IS NOT NULL THEN e.n END")
        return f"{values} / nullif({count}, 0)"
    if feature.aggregation == "max":
        return f"max(CASE WHEN {window} AND ({where}) THEN {value} END)"
    if feature.aggregation == "count_distinct":
        return f"count(DISTINCT CASE WHEN {window} AND ({where}) THEN {value} END)"
    if feature.aggregation == "last":
        return f"max_by({value}, e.date) FILTER (WHERE {window} AND ({where}))"
    if feature.aggregation == "slope":
        return _slope(total, where)
    raise ValueError(
        f"feature {feature.name}: {feature.aggregation} is not a row aggregate"
    )


def _slope(total: Callable[[str], str], where: str) -> str:
    """Return the least-squares slope of the ``where`` indicator over day numbers.

    The slope is ``(n Sxy - Sx Sy) / (n Sxx - Sx^2)``, where x is the day number
    and y is 1 for a row meeting ``where``, else 0. Every sum is an integer, so
    both terms are exact; a window whose rows share one day number gives NULL,
    as ``regr_slope`` does.
    """
    n, sx, sxx = total("e.n"), total("e.sum_x"), total("e.sum_xx")
    sy, sxy = total(_hits(where)), total(_hits(where, "e.sum_x"))
    return f"({n} * {sxy} - {sx} * {sy}) / nullif({n} * {sxx} - {sx} * {sx}, 0)"


def _mask_aggregates(feature: FeatureDef, conditions: dict[str, str]) -> list[str]:
    """Return the aggregates over counted rows that give a streak's masks."""
    window = _flag(feature.window)
    where = _condition(feature, conditions)
    filters = {
        "days": window,
        "hits": f"{window} AND ({where})",
        "misses": f"{window} AND NOT ({where})",
    }
    return [
        f"bit_or(CASE WHEN e.word = {word} AND {condition} THEN e.day_bits END) AS "
        f"{streaks.mask_column(feature.name, kind, word)}"
        for kind, condition in filters.items()
        for word in range(streaks.WORDS)
    ]


def _counted_cte(
    source: str, features: list[FeatureDef], conditions: dict[str, str]
) -> str:
    """Return the CTE counting a source's joined rows per key and column values.

    It groups by learner, as-of date, the windows a row falls in and the
    source columns that the features read, so lesson-level marks shrink to a
    few rows per learner before the many filtered aggregates run. The windows
    are grouped as one integer, ``group_code``, with a bit per window, which
    DuckDB groups faster than a boolean column per window, and the CTE turns
    the bits back into ``w_<window>`` flags. ``sum_x`` and ``sum_xx`` keep the
    day numbers that slopes need.

    For streaks ``group_code`` also contains the first day of the row's mask
    word (:func:`features.streaks.word_start_of`) above the window bits, and
    ``day_bits`` is the ``bit_or`` of the rows' day bits within that word.
    One shift per row costs less than a test per word. The first day shares
    its remainder with the day bit, so the rows need no floating-point
    division. The counted rows turn it back into the word number.

    The counted rows also hold each condition of ``conditions`` (a column per
    condition, see :func:`_condition_columns`), evaluated once per counted row.
    """
    read = {c for f in features for c in _COLUMN.findall(f"{f.where} {f.value}")}
    if any(f.aggregation == "last" for f in features):
        # The latest value needs each row's date.
        read.add("date")
    read = sorted(read)
    windows = sorted({f.window for f in features})
    group_code = " + ".join(
        f"CASE WHEN {_window(w)} THEN {1 << i} ELSE 0 END"
        for i, w in enumerate(windows)
    )
    word_unit = 1 << len(windows)
    masks = any(f.aggregation == "max_streak" for f in features)
    if masks:
        group_code += f" + {word_unit} * {streaks.word_start_of('e.days_before')}"
    inner = ["e.key_id", f"{group_code} AS group_code", *(f"e.{c}" for c in read)]
    counts = {"n": "count(*)"}
    if any(f.aggregation == "slope" for f in features):
        # The slope's day number is the negative of days_before.
        inner.append("e.days_before")
        counts |= {
            "sum_x": "-sum(days_before)",
            "sum_xx": "sum(days_before * days_before)",
        }
    if masks:
        inner.append(f"{streaks.bit_of('e.days_before')} AS day_bit")
        counts["day_bits"] = "bit_or(day_bit)"
    keys = ["key_id", "group_code", *read]
    flags = [f"(group_code & {1 << i}) <> 0 AS w_{w}" for i, w in enumerate(windows)]
    if masks:
        word_size = word_unit * streaks.BITS_PER_WORD
        flags.append(f"CAST(floor(group_code / {word_size}) AS INTEGER) AS word")
    condition_values = [
        f"({where}) AS {column}" for where, column in conditions.items()
    ]
    outputs = ["key_id", *flags, *read, *condition_values, *counts]
    return f"""counted_{source} AS (
        SELECT {", ".join(outputs)} FROM (
        SELECT {", ".join(keys)},
               {", ".join(f"{sql} AS {name}" for name, sql in counts.items())}
        FROM (SELECT {", ".join(inner)}
        {_joined(source, read, windows)}) r
        GROUP BY {", ".join(keys)}) e
    )"""


def _joined(source: str, columns: list[str], windows: list[str]) -> str:
    """Return a FROM clause joining a source's rows to the as-of keys, as ``e``.

    ``e`` has ``key_id``, ``days_before`` (see :data:`DAYS_BEFORE`), the
    window bounds that ``windows`` read and the source ``columns``. Only
    rows on or before the as-of date join.
    """
    spec = SOURCES[source]
    keys = "keys_by_enrolment" if spec.key == "enrolment_id" else "keys"
    selected = [
        "k.key_id",
        f"{DAYS_BEFORE} AS days_before",
        *(f"k.{name}" for name in _bounds(windows)),
        *(f"e.{c}" for c in columns),
    ]
    return f"""FROM (SELECT {", ".join(selected)}
        FROM {keys} k JOIN ({spec.rows}) e
          ON e.{spec.key} = k.{spec.key} AND e.date <= k.asof_date) e"""


def _streak_ctes(feature: FeatureDef) -> list[str]:
    """Return CTEs for the longest run of consecutive recorded days meeting ``where``.

    A day is a hit when ``bool_and`` of the condition over its rows is true.
    Any other day, including one whose conditions are all NULL, is a miss. The
    run number of a day is the count of missed days up to and including it, so
    the hit days of one run share it.

    NOTE: this pass groups every day of every key and sorts the days, which
    took about three quarters of the build time at 100,000 pupils
    (docs/benchmarks.md). Windows that fit the bitmasks avoid it.
    """
    name = feature.name
    read = sorted(set(_COLUMN.findall(feature.where)))
    return [
        f"""{name}_days AS (
        SELECT e.key_id, e.days_before, bool_and({feature.where}) AS hit
        {_joined(feature.source, read, [feature.window])}
        WHERE {_window(feature.window)}
        GROUP BY e.key_id, e.days_before
    )""",
        f"""{name}_runs AS (
        SELECT key_id, hit,
               sum(CASE WHEN hit THEN 0 ELSE 1 END)
                   OVER (PARTITION BY key_id ORDER BY days_before DESC) AS run
        FROM {name}_days
    )""",
        f"""{name} AS (
        SELECT key_id, max(days) AS {name}
        FROM (SELECT key_id, run, count(*) AS days
              FROM {name}_runs WHERE hit GROUP BY key_id, run) t
        GROUP BY key_id
    )""",
    ]


def compile_features(
    features: list[FeatureDef | DerivedDef], sources: set[str]
) -> CompiledFeatures:
    """Compile ``features`` into one SELECT over the table ``asof_keys``.

    ``asof_keys`` has ``learner_id`` and ``asof_date``; the contract tables must
    be registered under their names. Features whose source is not in ``sources``
    are skipped, and so are derived features that use a skipped feature.
    The result's ``names`` lists the computed features in order; run its
    ``sql`` and pass the result through its ``finish``.
    """
    direct = [f for f in features if isinstance(f, FeatureDef) and f.source in sources]
    names = {f.name for f in direct}
    derived = [
        f
        for f in features
        if isinstance(f, DerivedDef)
        and all(word in names for word in _identifiers(f.expression))
    ]
    read_by_derived = {word for f in derived for word in _identifiers(f.expression)}
    masked = {
        f.name
        for f in direct
        if f.aggregation == "max_streak"
        and _window_fits_masks(f.window)
        and f.name not in read_by_derived
    }
    bounds = ", ".join(f"{sql} AS {name}" for name, sql in WINDOW_BOUNDS.items())
    # key_id numbers the keys, because grouping, sorting and joining on one
    # integer is cheaper than on the learner id (text) and the date.
    # NOTE: Spark SQL runs a row_number without PARTITION BY in one task.
    ctes = [
        f"""keys AS (
        SELECT k.learner_id, k.asof_date, {bounds},
               row_number() OVER (ORDER BY k.learner_id, k.asof_date) AS key_id
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
            f
            for f in direct
            if f.source == source
            and (f.aggregation != "max_streak" or f.name in masked)
        ]
        if not rows:
            continue
        conditions = _condition_columns(rows)
        aggregates = []
        for f in rows:
            if f.name in masked:
                aggregates += _mask_aggregates(f, conditions)
            else:
                aggregates.append(f"{_aggregate(f, conditions)} AS {f.name}")
        columns = ",\n        ".join(aggregates)
        ctes.append(_counted_cte(source, rows, conditions))
        ctes.append(
            f"""agg_{source} AS (
        SELECT e.key_id,
        {columns}
        FROM counted_{source} e
        GROUP BY e.key_id
    )"""
        )
        tables.append(f"agg_{source}")
    for feature in direct:
        if feature.aggregation == "max_streak" and feature.name not in masked:
            ctes += _streak_ctes(feature)
            tables.append(feature.name)

    joins = "\n".join(f"LEFT JOIN {t} USING (key_id)" for t in tables)
    outputs = []
    for f in direct:
        if f.name in masked:
            # No key may come out NULL: a NULL would turn the column into
            # floats, which cannot hold 62-bit masks exactly.
            for kind in streaks.MASK_KINDS:
                for word in range(streaks.WORDS):
                    column = streaks.mask_column(f.name, kind, word)
                    outputs.append(f"coalesce({column}, 0) AS {column}")
        elif f.aggregation in _ZERO_WHEN_MISSING:
            outputs.append(f"coalesce({f.name}, 0) AS {f.name}")
        else:
            outputs.append(f.name)
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
    names = [f.name for f in direct] + [f.name for f in derived]
    mask_streaks = tuple(f.name for f in direct if f.name in masked)
    return CompiledFeatures(sql, names, mask_streaks)


def _window_fits_masks(window: str) -> bool:
    days = WINDOW_DAYS.get(window)
    return days is not None and days <= streaks.MASK_DAYS


def _identifiers(expression: str) -> list[str]:
    """Return the column names in a SQL expression, leaving out function names."""
    return re.findall(r"\b[A-Za-z_]\w*\b(?!\s*\()", expression)
