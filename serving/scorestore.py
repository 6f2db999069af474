"""The score store: scheduled scores per pupil and as-of date, read by the API.

The store is a SQL database reached through SQLAlchemy. ``AJOISSA_SCORE_STORE_URL``
sets its URL. The default is an embedded SQLite file, ``scores.db`` in
``AJOISSA_HOME``. A production deployment would set a PostgreSQL URL such as
``postgresql+psycopg://user@host/ajoissa``, which needs the ``psycopg`` driver.

The store tests run against SQLite and PostgreSQL 15 (with psycopg 3.3.9).

Tables
------
``score_runs``
    One row per scoring run: source, as-of date, model name and version, the
    time it was written and its pupil count. A run is unique by source, as-of
    date, model name and model version. Run ids are never reused, so an id in
    a review or a message names one run only: SQLite stores created by this
    version use AUTOINCREMENT and PostgreSQL uses a sequence.
``scores``
    One row per pupil enrolment in a run. A row contains the pupil id
    (pseudonymous learner id), school id, enrolment id, probability, rank within
    the school (1 is the highest risk) and school size. It also contains the top
    reasons, the base value, every feature's contribution and the feature values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from models.store import home_dir

logger = logging.getLogger(__name__)

SCORE_STORE_URL_ENV = "AJOISSA_SCORE_STORE_URL"

metadata = sa.MetaData()

score_runs = sa.Table(
    "score_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("pupil_count", sa.Integer, nullable=False),
    sa.UniqueConstraint("source", "as_of", "model_name", "model_version"),
    # Without AUTOINCREMENT, SQLite gives the next run the id of a deleted or
    # replaced newest run. NOTE: SQLite stores created before this keep
    # reusing ids, because SQLite cannot add AUTOINCREMENT to a table.
    sqlite_autoincrement=True,
)

scores = sa.Table(
    "scores",
    metadata,
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("score_runs.run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("pupil_id", sa.String(100), nullable=False),
    sa.Column("school_id", sa.String(100), nullable=False),
    sa.Column("enrolment_id", sa.String(200), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("school_rank", sa.Integer, nullable=False),
    sa.Column("school_size", sa.Integer, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("contributions", sa.Text, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("run_id", "enrolment_id"),
    sa.Index("ix_scores_pupil", "pupil_id"),
)


@dataclass(frozen=True)
class RunKey:
    """Key of a scoring run. Rerunning the same key replaces the run."""

    source: str
    as_of: dt.date
    model_name: str
    model_version: str


@dataclass(frozen=True)
class StoredRun:
    """The id of a run just written, and of the earlier run it replaced."""

    run_id: int
    replaced_run_id: int | None
    """Id of the earlier run with the same key, None if there was none."""


@dataclass(frozen=True)
class StoredScore:
    """One pupil enrolment's score in one run."""

    pupil_id: str
    school_id: str
    enrolment_id: str
    probability: float
    school_rank: int
    school_size: int
    reasons: list[dict[str, Any]]
    contributions: dict[str, Any]
    """``base_value_log_odds`` and ``features``: every feature's value and
    contribution in log-odds, largest absolute contribution first."""
    features: dict[str, Any]


@dataclass(frozen=True)
class PupilScore:
    """A stored score with the run it belongs to, as the API returns it."""

    run: RunKey
    created_at: dt.datetime
    score: StoredScore


def store_url() -> str:
    """Return ``AJOISSA_SCORE_STORE_URL``, or the SQLite file in ``AJOISSA_HOME``."""
    configured = os.environ.get(SCORE_STORE_URL_ENV)
    if configured:
        return configured
    return f"sqlite:///{home_dir() / 'scores.db'}"


def describe_url(url: str) -> str:
    """Return ``url`` without its password, for logs and messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


class ScoreStore:
    """Read and write scoring runs in the database at ``url``."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or store_url()
        parsed = sa.make_url(self.url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            home = os.path.dirname(os.path.abspath(parsed.database))
            os.makedirs(home, exist_ok=True)
        self.engine = sa.create_engine(self.url)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_foreign_keys)
        metadata.create_all(self.engine)

    def replace_run(self, key: RunKey, rows: Iterable[StoredScore]) -> int:
        """Store ``rows`` as the run ``key`` and return the new run's id.

        See :meth:`store_run`, which also returns the id of the replaced run.
        """
        return self.store_run(key, rows).run_id

    def store_run(self, key: RunKey, rows: Iterable[StoredScore]) -> StoredRun:
        """Store ``rows`` as the run ``key``, replacing an earlier run with that key.

        Everything happens in one transaction: if writing fails, the earlier
        run with this key and every other run stay as they were.
        """
        rows = list(rows)
        with self.engine.begin() as connection:
            replaced = connection.execute(
                sa.select(score_runs.c.run_id).where(_key_matches(key))
            ).scalar()
            connection.execute(sa.delete(score_runs).where(_key_matches(key)))
            run_id = connection.execute(
                sa.insert(score_runs).values(
                    source=key.source,
                    as_of=key.as_of,
                    model_name=key.model_name,
                    model_version=key.model_version,
                    created_at=dt.datetime.now(dt.UTC),
                    pupil_count=len(rows),
                )
            ).inserted_primary_key[0]
            if rows:
                connection.execute(
                    sa.insert(scores), [_row_values(run_id, row) for row in rows]
                )
        logger.info(
            "stored scoring run %s: %d rows for as-of %s with %s version %s%s",
            run_id,
            len(rows),
            key.as_of,
            key.model_name,
            key.model_version,
            f", replacing run {replaced}" if replaced is not None else "",
        )
        return StoredRun(int(run_id), None if replaced is None else int(replaced))

    def run_id_of(self, key: RunKey) -> int | None:
        """Return the id of the stored run with ``key``, None if there is none."""
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(score_runs.c.run_id).where(_key_matches(key))
            ).scalar()
        return None if found is None else int(found)

    def runs(self) -> list[tuple[int, RunKey, int]]:
        """Return every run as ``(run_id, key, pupil_count)``, oldest as-of first."""
        query = sa.select(score_runs).order_by(
            score_runs.c.as_of, score_runs.c.created_at
        )
        with self.engine.connect() as connection:
            return [
                (row.run_id, _run_key(row), row.pupil_count)
                for row in connection.execute(query)
            ]

    def has_school(self, school_id: str) -> bool:
        """Return whether any stored score belongs to ``school_id``."""
        query = sa.select(scores.c.run_id).where(scores.c.school_id == school_id)
        with self.engine.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None

    def pupil_scores(
        self, pupil_id: str, schools: Sequence[str] | None
    ) -> list[PupilScore]:
        """Return a pupil's stored scores, newest as-of date (then newest run) first.

        ``schools`` limits the rows to those schools. ``None`` means no limit,
        which only callers that checked the reader's rights may use.
        """
        query = (
            sa.select(scores, score_runs)
            .join(score_runs, scores.c.run_id == score_runs.c.run_id)
            .where(scores.c.pupil_id == pupil_id)
            .order_by(score_runs.c.as_of.desc(), score_runs.c.created_at.desc())
        )
        if schools is not None:
            query = query.where(scores.c.school_id.in_(list(schools)))
        with self.engine.connect() as connection:
            return [
                PupilScore(
                    run=_run_key(row),
                    created_at=_as_utc(row.created_at),
                    score=_stored_score(row),
                )
                for row in connection.execute(query)
            ]

    def delete_run(self, run_id: int) -> RunKey:
        """Delete the run ``run_id`` and its scores in one transaction.

        Raises
        ------
        LookupError
            If the store has no run with that id.
        """
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(score_runs).where(score_runs.c.run_id == run_id)
            ).first()
            if row is None:
                raise LookupError(
                    f"no scoring run {run_id} in the score store; list the runs "
                    "with `ajoissa scores list`"
                )
            connection.execute(sa.delete(scores).where(scores.c.run_id == run_id))
            connection.execute(
                sa.delete(score_runs).where(score_runs.c.run_id == run_id)
            )
        key = _run_key(row)
        logger.info("deleted scoring run %s (as-of %s)", run_id, key.as_of)
        return key

    def prune(self, before: dt.date) -> list[tuple[int, RunKey, int]]:
        """Delete every run with an as-of date before ``before``, in one transaction.

        Returns the deleted runs as ``(run_id, key, pupil_count)``.
        """
        with self.engine.begin() as connection:
            old = connection.execute(
                sa.select(score_runs)
                .where(score_runs.c.as_of < before)
                .order_by(score_runs.c.as_of)
            ).all()
            ids = [row.run_id for row in old]
            if ids:
                connection.execute(sa.delete(scores).where(scores.c.run_id.in_(ids)))
                connection.execute(
                    sa.delete(score_runs).where(score_runs.c.run_id.in_(ids))
                )
        logger.info(
            "pruned %d scoring runs with as-of dates before %s", len(ids), before
        )
        return [(row.run_id, _run_key(row), row.pupil_count) for row in old]

    def drop_tables(self) -> None:
        """Drop the store's tables and everything in them, for tests."""
        metadata.drop_all(self.engine)

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()


def _key_matches(key: RunKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        score_runs.c.source == key.source,
        score_runs.c.as_of == key.as_of,
        score_runs.c.model_name == key.model_name,
        score_runs.c.model_version == key.model_version,
    )


def _sqlite_foreign_keys(connection: Any, _: Any) -> None:
    # SQLite enforces ON DELETE CASCADE only with this pragma on.
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Return ``moment`` with its time zone; SQLite returns the stored UTC time naive."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _row_values(run_id: int, row: StoredScore) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "pupil_id": row.pupil_id,
        "school_id": row.school_id,
        "enrolment_id": row.enrolment_id,
        "probability": row.probability,
        "school_rank": row.school_rank,
        "school_size": row.school_size,
        "reasons": json.dumps(row.reasons, allow_nan=False),
        "contributions": json.dumps(row.contributions, allow_nan=False),
        "features": json.dumps(row.features, allow_nan=False),
    }


def _run_key(row: Any) -> RunKey:
    return RunKey(
        source=row.source,
        as_of=row.as_of,
        model_name=row.model_name,
        model_version=row.model_version,
    )


def _stored_score(row: Any) -> StoredScore:
    return StoredScore(
        pupil_id=row.pupil_id,
        school_id=row.school_id,
        enrolment_id=row.enrolment_id,
        probability=row.probability,
        school_rank=row.school_rank,
        school_size=row.school_size,
        reasons=json.loads(row.reasons),
        contributions=json.loads(row.contributions),
        features=json.loads(row.features),
    )
