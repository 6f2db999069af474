"""Study rights as spells: when each one started and how it ended."""

from __future__ import annotations

import pandas as pd

from sources.contract import EXIT_STATES

TERMINAL_STATES = (*EXIT_STATES, "graduated", "cancelled")
"""States after which a study right is no longer in force."""


def study_right_spells(states: pd.DataFrame) -> pd.DataFrame:
    """Return one row per study right: its start, end and end state.

    ``start`` is the first state's date. ``end`` and ``end_state`` come from the
    last state when it is terminal, and are missing while the right is in force
    (including a right that was reopened after a terminal state).
    """
    ordered = states.sort_values(["study_right_id", "state_from"], kind="stable")
    grouped = ordered.groupby("study_right_id", sort=False)
    spells = grouped.agg(
        learner_id=("learner_id", "first"),
        level=("level", "first"),
        start=("state_from", "min"),
        last_state=("state", "last"),
        last_from=("state_from", "last"),
    ).reset_index()
    ended = spells["last_state"].isin(TERMINAL_STATES)
    spells["end"] = spells["last_from"].where(ended)
    spells["end_state"] = spells["last_state"].where(ended)
    return spells.drop(columns=["last_state", "last_from"])
