"""Reads of the score store for the review screens: a school's list and a pupil's past.

These read the tables of :mod:`serving.scorestore` directly, one page of pupils
at a time, so a school of 1,000 pupils costs the same per page as one of 20.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa

from serving.scorestore import score_runs, scores

TREND_FEATURES = {
    "attendance": (("absence_share",),),
    "grades": (("grade_mean_term", "grade_mean_year"), ("weighted_mean_score",)),
}
"""The stored features that each trend chart can draw, as groups in order of
preference. A chart draws the first group that the model stores, so all pupils
of a source get charts on one scale. For grades, the grade averages on the 4 to
10 scale (school records) come before the weighted assessment score on 0 to
100 (OULAD). Within a group, each point takes the first feature with a value. The
term's grade average is empty from the start of a term until its first grade,
so such a point shows the school year's average instead. A chart is left out
when no group is stored, as attendance is for sources without attendance
marks."""


class Trend(NamedTuple):
    """One trend chart's feature and its values by as-of date.

    ``feature`` is the first feature of the drawn group, which sets the chart's
    scale and title. ``measures`` names the feature that each point shows, in
    the order of ``points``.
    """

    feature: str
    points: list[tuple[dt.date, float]]
    measures: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRef:
    """A scoring run that contains a school."""

    run_id: int
    as_of: dt.date
    model_name: str
    model_version: str


@dataclass
class ListedPupil:
    """One row of a school's list."""

    pupil_id: str
    probability: float
    school_rank: int
    previous_probability: float | None
    reasons: list[dict[str, Any]]
    trends: dict[str, Trend] = field(default_factory=dict)


@dataclass(frozen=True)
class SchoolPage:
    """One page of a school's pupils, highest risk first."""

    school_id: str
    latest: RunRef | None
    previous: RunRef | None
    total: int
    pupils: list[ListedPupil]


@dataclass(frozen=True)
class PupilPoint:
    """A pupil's stored score at one as-of date."""

    run: RunRef
    probability: float
    school_rank: int
    school_size: int
    reasons: list[dict[str, Any]]
    features: dict[str, Any]


def school_runs(engine: sa.Engine, school_id: str) -> list[RunRef]:
    """Return the runs that contain ``school_id``, newest as-of (then newest run) first."""
    query = (
        sa.select(
            score_runs.c.run_id,
            score_runs.c.as_of,
            score_runs.c.model_name,
            score_runs.c.model_version,
        )
        .where(
            sa.exists().where(
                scores.c.run_id == score_runs.c.run_id,
                scores.c.school_id == school_id,
            )
        )
        .order_by(score_runs.c.as_of.desc(), score_runs.c.created_at.desc())
    )
    with engine.connect() as connection:
        return [RunRef(*row) for row in connection.execute(query)]


def school_page(
    engine: sa.Engine, school_id: str, offset: int, limit: int
) -> SchoolPage:
    """Return pupils ``offset`` to ``offset + limit`` of the school's latest run.

    ``previous`` is the newest run with an earlier as-of date, for the change
    since the last scoring.
    """
    runs = school_runs(engine, school_id)
    if not runs:
        return SchoolPage(school_id, None, None, 0, [])
    latest = runs[0]
    previous = next((run for run in runs if run.as_of < latest.as_of), None)
    in_latest = (scores.c.run_id == latest.run_id) & (scores.c.school_id == school_id)
    with engine.connect() as connection:
        total = connection.execute(
            sa.select(sa.func.count()).select_from(scores).where(in_latest)
        ).scalar_one()
        rows = connection.execute(
            sa.select(
                scores.c.pupil_id,
                scores.c.probability,
                scores.c.school_rank,
                scores.c.reasons,
            )
            .where(in_latest)
            .order_by(scores.c.school_rank, scores.c.pupil_id)
            .offset(offset)
            .limit(limit)
        ).all()
    pupils = [
        ListedPupil(
            pupil_id=row.pupil_id,
            probability=row.probability,
            school_rank=row.school_rank,
            previous_probability=None,
            reasons=json.loads(row.reasons),
        )
        for row in rows
    ]
    ids = [pupil.pupil_id for pupil in pupils]
    if previous is not None and ids:
        earlier = _probabilities(engine, previous.run_id, school_id, ids)
        for pupil in pupils:
            pupil.previous_probability = earlier.get(pupil.pupil_id)
    trends = _trends(engine, school_id, ids)
    for pupil in pupils:
        pupil.trends = trends.get(pupil.pupil_id, {})
    return SchoolPage(school_id, latest, previous, total, pupils)


def pupil_points(engine: sa.Engine, school_id: str, pupil_id: str) -> list[PupilPoint]:
    """Return the pupil's stored scores at ``school_id``, oldest as-of date first.

    When one as-of date was scored by several runs (model versions), only the
    newest run's score is kept.
    """
    query = (
        sa.select(scores, score_runs)
        .join(score_runs, scores.c.run_id == score_runs.c.run_id)
        .where(scores.c.pupil_id == pupil_id, scores.c.school_id == school_id)
        .order_by(score_runs.c.as_of, score_runs.c.created_at)
    )
    by_date: dict[dt.date, PupilPoint] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            by_date[row.as_of] = PupilPoint(
                run=RunRef(row.run_id, row.as_of, row.model_name, row.model_version),
                probability=row.probability,
                school_rank=row.school_rank,
                school_size=row.school_size,
                reasons=json.loads(row.reasons),
                features=json.loads(row.features),
            )
    return list(by_date.values())


def trend_series(points: Sequence[PupilPoint]) -> dict[str, Trend]:
    """Return each chart's trend over the points, skipping missing values."""
    series: dict[str, Trend] = {}
    for name, groups in TREND_FEATURES.items():
        # The first group that the model stores at all, even as missing values.
        group = next(
            (
                features
                for features in groups
                if any(f in point.features for f in features for point in points)
            ),
            None,
        )
        if group is None:
            continue
        values = []
        measures = []
        for point in points:
            feature = next(
                (f for f in group if point.features.get(f) is not None), None
            )
            if feature is not None:
                values.append((point.run.as_of, float(point.features[feature])))
                measures.append(feature)
        if values:
            series[name] = Trend(group[0], values, tuple(measures))
    return series


def _probabilities(
    engine: sa.Engine, run_id: int, school_id: str, pupil_ids: list[str]
) -> dict[str, float]:
    query = sa.select(scores.c.pupil_id, scores.c.probability).where(
        scores.c.run_id == run_id,
        scores.c.school_id == school_id,
        scores.c.pupil_id.in_(pupil_ids),
    )
    with engine.connect() as connection:
        return {row.pupil_id: row.probability for row in connection.execute(query)}


def _trends(
    engine: sa.Engine, school_id: str, pupil_ids: list[str]
) -> dict[str, dict[str, Trend]]:
    if not pupil_ids:
        return {}
    query = (
        sa.select(
            scores.c.pupil_id,
            scores.c.features,
            score_runs.c.run_id,
            score_runs.c.as_of,
            score_runs.c.model_name,
            score_runs.c.model_version,
            scores.c.probability,
            scores.c.school_rank,
            scores.c.school_size,
        )
        .join(score_runs, scores.c.run_id == score_runs.c.run_id)
        .where(scores.c.school_id == school_id, scores.c.pupil_id.in_(pupil_ids))
        .order_by(score_runs.c.as_of, score_runs.c.created_at)
    )
    points: dict[str, dict[dt.date, PupilPoint]] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            points.setdefault(row.pupil_id, {})[row.as_of] = PupilPoint(
                run=RunRef(row.run_id, row.as_of, row.model_name, row.model_version),
                probability=row.probability,
                school_rank=row.school_rank,
                school_size=row.school_size,
                reasons=[],
                features=json.loads(row.features),
            )
    return {
        pupil: trend_series(list(by_date.values())) for pupil, by_date in points.items()
    }


def top_pupils(engine: sa.Engine, run: RunRef, school_id: str, count: int) -> list[str]:
    """Return the ids of the ``count`` highest-ranked pupils of the school in ``run``."""
    query = (
        sa.select(scores.c.pupil_id)
        .where(scores.c.run_id == run.run_id, scores.c.school_id == school_id)
        .order_by(scores.c.school_rank, scores.c.pupil_id)
        .limit(count)
    )
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def rank_probabilities(
    engine: sa.Engine, run: RunRef, school_id: str
) -> list[tuple[int, float]]:
    """Return ``(school_rank, probability)`` of every pupil of the school in
    ``run``, rank 1 first."""
    query = (
        sa.select(scores.c.school_rank, scores.c.probability)
        .where(scores.c.run_id == run.run_id, scores.c.school_id == school_id)
        .order_by(scores.c.school_rank)
    )
    with engine.connect() as connection:
        return [(row.school_rank, row.probability) for row in connection.execute(query)]


def run_pupils(engine: sa.Engine, run: RunRef, school_id: str) -> set[str]:
    """Return the ids of every pupil of the school in ``run``."""
    query = sa.select(scores.c.pupil_id).where(
        scores.c.run_id == run.run_id, scores.c.school_id == school_id
    )
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())
