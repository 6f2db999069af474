"""Longest streaks of days from per-key day bitmasks.

A ``max_streak`` feature is the longest run of consecutive recorded days on
which every row meets the feature's condition. Finding runs needs each
learner's days in order. Grouping every mark by learner and day and then
sorting the days took about three quarters of the feature build at 100,000
pupils (docs/benchmarks.md), so windows no longer than :data:`MASK_DAYS` days
take a cheaper route:

1. The SQL keeps, per key, three sets of days as bitmasks: the days with any
   row, the days with a row meeting the condition and the days with a row
   failing it. Bit ``b`` of word ``w`` is the day ``w * BITS_PER_WORD + b``
   days before the as-of date. Each row adds its day with ``bit_or``, so the
   masks come out of the same grouped pass as the other attendance counts.
2. :func:`longest_runs` measures the runs from the masks with NumPy.

A day is a hit when it has a row meeting the condition and none failing it.
Rows whose condition is NULL are ignored, as ``bool_and`` ignores them, so a
day with only such rows is a miss. Days without rows do not break a run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BITS_PER_WORD = 62
"""Days per 64-bit mask word. The top two bits stay unused, so every word is a
positive ``BIGINT`` and no shift reaches the sign bit."""

WORDS = 6
MASK_DAYS = BITS_PER_WORD * WORDS
"""Maximum window length, in days, for which streaks use bitmasks (372 days)."""

MASK_KINDS = ("days", "hits", "misses")
"""The masks per streak: days with rows, with a row meeting the condition and
with a row failing it."""


def mask_column(feature: str, kind: str, word: int) -> str:
    """Return the name of one mask word of a streak feature."""
    return f"{feature}__{kind}_{word}"


def day_bit(offset: str, word: int) -> str:
    """Return SQL for the bit of a row's day in ``word``, or NULL outside it.

    ``offset`` is the SQL for the days between the row's date and the as-of
    date.
    """
    low = word * BITS_PER_WORD
    high = low + BITS_PER_WORD
    return (
        f"CASE WHEN {offset} >= {low} AND {offset} < {high} "
        f"THEN CAST(1 AS BIGINT) << ({offset} - {low}) END"
    )


def longest_runs(frame: pd.DataFrame, feature: str) -> np.ndarray:
    """Return the longest streak per row of ``frame`` from ``feature``'s masks.

    It walks the days one bit at a time with NumPy operations over all rows,
    which needs no per-row Python and no unpacked bit arrays.
    """
    words = {
        kind: frame[[mask_column(feature, kind, w) for w in range(WORDS)]]
        .to_numpy(dtype=np.int64)
        .T.copy()
        for kind in MASK_KINDS
    }
    hit_days = words["hits"] & ~words["misses"]
    miss_days = words["days"] & ~hit_days
    run = np.zeros(len(frame), dtype=np.int64)
    longest = np.zeros(len(frame), dtype=np.int64)
    for word in range(WORDS):
        for bit in range(BITS_PER_WORD):
            mask = np.int64(1 << bit)
            # A day without rows is in neither mask and leaves the run as it is.
            run += (hit_days[word] & mask) != 0
            run[(miss_days[word] & mask) != 0] = 0
            np.maximum(longest, run, out=longest)
    return longest
