"""Scheduled scoring: every pupil active on an as-of date, scored and ranked.

The input is the validated contract tables of any source, so a new source needs
no change here. The school of a score is its unit's ``school_id`` where the
units have one (school records: the school, whatever the year), and otherwise
the unit itself (a course presentation). A pupil's rank is among the pupils of
the same school on the same as-of date.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from features.build import (
    asof_points_by_date,
    build_features,
    data_end,
    uses_learner_features,
)
from models.reasons import contributions, reason_codes
from models.risk import predict_risk
from models.store import LoadedModel
from serving.scorestore import StoredScore
from serving.scoring import TOP_REASONS
from sources.contract import InputTables

logger = logging.getLogger(__name__)


class NoActivePupilsError(ValueError):
    """Raised when no enrolment is active on the as-of date."""


class AfterDataEndError(ValueError):
    """Raised when the as-of date is after the last date the tables record."""


def school_of_units(units: pd.DataFrame, unit_ids: pd.Series) -> pd.Series:
    """Return the school of each unit in ``unit_ids``: its ``school_id``, or the unit id."""
    unit_ids = unit_ids.astype(str)
    if "school_id" not in units.columns:
        return unit_ids
    schools = units.set_index(units["unit_id"].astype(str))["school_id"]
    return unit_ids.map(schools).fillna(unit_ids).astype(str)


def absent_table_features(
    tables: InputTables, features: list[str]
) -> dict[str, list[str]]:
    """Return each optional table that ``tables`` lacks and that feeds ``features``.

    The values are the features in ``features`` that the table feeds. Without
    the table, they take their no-event value for every learner.
    """
    gaps = {}
    for table, fed in tables.absent_tables.items():
        used = [name for name in fed if name in features]
        if used:
            gaps[table] = used
    return gaps


def score_asof(
    tables: InputTables, loaded: LoadedModel, as_of: dt.date
) -> list[StoredScore]:
    """Build features as of ``as_of`` for every active enrolment and score them.

    Parameters
    ----------
    tables
        Validated contract tables.
    loaded
        The model to score with.
    as_of
        Only events dated on or before this day reach the features.

    Raises
    ------
    NoActivePupilsError
        If no unit runs on ``as_of`` or no enrolment is active then.
    AfterDataEndError
        If ``as_of`` is after the last date the tables record.
    ValueError
        If the features built from ``tables`` lack a column the model needs.
    """
    day = pd.Timestamp(as_of)
    end = data_end(tables)
    if end is not None and day > end:
        # Features of a later date would count the missing weeks as weeks
        # without absences or grades, and the staff screens show the latest run.
        raise AfterDataEndError(
            f"the as-of date {as_of} is after the last date the data record "
            f"({end.date()}), so the features would miss everything after it. "
            "Score at or before that date, or export newer data."
        )
    points = asof_points_by_date(tables.units, [day])
    if points.empty:
        first = tables.units["start_date"].min().date()
        last = tables.units["end_date"].max().date()
        raise NoActivePupilsError(
            f"no unit runs on the as-of date {as_of}: the units run from {first} "
            f"to {last}. Choose an as-of date in that range."
        )
    spec = loaded.spec
    # Scoring needs no labels, so the latest as-of dates, whose label windows
    # run past the data end, keep every active enrolment.
    frame = build_features(
        tables,
        points,
        with_learner_features=uses_learner_features(spec.features),
        labels=False,
    )
    if frame.data.empty:
        raise NoActivePupilsError(
            f"no enrolment is active on the as-of date {as_of} in the "
            f"{len(points)} unit(s) running then"
        )
    missing = [name for name in spec.features if name not in frame.data.columns]
    if missing:
        raise ValueError(
            f"the model {loaded.name} version {loaded.version} needs feature columns "
            f"that this source does not produce: {', '.join(missing)}. Score with "
            "a model trained on this source (--model-name)."
        )
    X = spec.conform(frame.data[spec.features])
    raw = predict_risk(loaded.model, spec, X)
    probabilities = raw if loaded.calibration is None else loaded.calibration.apply(raw)
    values, base = contributions(loaded.model, spec, X)
    reasons = reason_codes(values, X, spec.features, TOP_REASONS, sentences=True)

    data = frame.data[["enrolment_id", "learner_id", "unit_id"]].reset_index(drop=True)
    data["school_id"] = school_of_units(tables.units, data["unit_id"])
    data["probability"] = probabilities
    # Rank 1 is the highest risk in the school. Calibration maps many raw
    # scores to one probability, so ties go to the higher raw score, then to
    # the pupil id. Every rank is distinct, so a capacity of 15 marks 15 pupils.
    ordered = data.assign(raw=raw).sort_values(
        ["school_id", "probability", "raw", "learner_id"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    # Assignment aligns the ranks back to ``data`` by index.
    data["school_rank"] = ordered.groupby("school_id").cumcount() + 1
    data["school_size"] = data.groupby("school_id")["school_id"].transform("size")

    rows = [
        StoredScore(
            pupil_id=str(row.learner_id),
            school_id=str(row.school_id),
            enrolment_id=str(row.enrolment_id),
            probability=float(row.probability),
            school_rank=int(row.school_rank),
            school_size=int(row.school_size),
            reasons=reasons[i],
            contributions=_contribution_list(
                values[i], float(base[i]), X.iloc[i], spec.features
            ),
            features={name: _plain(X[name].iloc[i]) for name in spec.features},
        )
        for i, row in enumerate(data.itertuples(index=False))
    ]
    logger.info(
        "scored %d enrolments in %d units as of %s", len(rows), points.shape[0], as_of
    )
    return rows


def _contribution_list(
    values: np.ndarray, base: float, row: pd.Series, names: list[str]
) -> dict[str, Any]:
    order = np.argsort(-np.abs(values), kind="stable")
    return {
        "base_value_log_odds": round(base, 6),
        "features": [
            {
                "feature": names[j],
                "value": _plain(row[names[j]]),
                "contribution_log_odds": round(float(values[j]), 6),
            }
            for j in order
        ],
    }


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if pd.isna(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
