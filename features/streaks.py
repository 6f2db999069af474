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
   days before the as-of date. The grouped pass that counts the rows also
   groups them by word, and each row adds its day's bit with ``bit_or``, so
   a row costs one shift and no test per word.
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


def word_start_of(days: str) -> str:
    """Return SQL for the first day of the mask word that contains day ``days``.

    ``days`` counts back from the as-of date. The result is ``BITS_PER_WORD``
    times the word number, so it needs the remainder that :func:`bit_of`
    computes too, and no floating-point division. Days further back than
    :data:`MASK_DAYS` all start at :data:`MASK_DAYS`, the start of word
    :data:`WORDS`, which no mask reads. Older rows thus fall into one group
    per key and mark instead of one per 62 days.
    """
    return f"least({days} - {days} % {BITS_PER_WORD}, {MASK_DAYS})"


def bit_of(days: str) -> str:
    """Return SQL for a day's bit within its mask word (see :func:`word_start_of`)."""
    return f"CAST(1 AS BIGINT) << ({days} % {BITS_PER_WORD})"


def longest_runs(frame: pd.DataFrame, feature: str) -> np.ndarray:
    """Return the longest streak per row of ``frame`` from ``feature``'s masks.

    It walks the days one bit at a time with NumPy operations over all rows,
    which needs no per-row Python and no unpacked bit arrays. Days on which no
    row has a mark, such as weekends, holidays and days before the first
    mark, leave every run as it is, so the walk skips them.
    """
    words = {
        kind: frame[[mask_column(feature, kind, w) for w in range(WORDS)]]
        .to_numpy(dtype=np.int64)
        .T.copy()
        for kind in MASK_KINDS
    }
    hit_days = words["hits"] & ~words["misses"]
    miss_days = words["days"] & ~hit_days
    recorded = np.bitwise_or.reduce(words["days"], axis=1)
    run = np.zeros(len(frame), dtype=np.int32)
    longest = np.zeros(len(frame), dtype=np.int32)
    # Buffers for the day's bits, so that the loop allocates no arrays.
    bits = np.empty(len(frame), dtype=np.int64)
    flags = np.empty(len(frame), dtype=bool)
    for word in range(WORDS):
        for bit in range(BITS_PER_WORD):
            mask = np.int64(1 << bit)
            if not recorded[word] & mask:
                continue
            # A day without rows is in neither mask and leaves the run as it is.
            np.bitwise_and(hit_days[word], mask, out=bits)
            np.not_equal(bits, 0, out=flags)
            np.add(run, flags, out=run)
            np.bitwise_and(miss_days[word], mask, out=bits)
            np.equal(bits, 0, out=flags)
            np.multiply(run, flags, out=run)
            np.maximum(longest, run, out=longest)
    return longest.astype(np.int64)
