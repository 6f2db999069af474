"""Sessions, reviews and per-school settings of the review screens, in SQLite.

The file is ``AJOISSA_UI_DB`` (default ``ui.db`` in ``AJOISSA_HOME``).

Sessions are kept server-side. The cookie carries a random session id, and the
database stores only its SHA-256 digest with the token id, role and schools of
the person who signed in, the session's CSRF token and its expiry time. Signing
out deletes the row, so a copied cookie stops working at once.

Reviews are the decisions staff record about a pupil. They are never edited or
deleted: a later review of the same pupil at the same school supersedes the
earlier one in the list, and both stay in the pupil's history and the export.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from models.store import home_dir
from serving.access import Principal
from sources.contract import check_school_ids

logger = logging.getLogger(__name__)

UI_DB_ENV = "AJOISSA_UI_DB"
SESSION_HOURS_ENV = "AJOISSA_UI_SESSION_HOURS"
DEFAULT_SESSION_HOURS = 8
"""A session lasts one working day; signing in again starts a new one."""
DEFAULT_CAPACITY = 15
"""Pupils a school's team can review per scoring run unless set per school."""
MAX_CAPACITY = 500

DECISIONS = ("monitor", "support_planned", "already_supported", "not_a_concern")
"""Review decisions. Every decision overrides the model's flag in the list, as
:meth:`Review.overrides_flag` describes."""

MAX_NOTE_CHARS = 2000
MAX_FOLLOW_UP_DAYS = 730
"""Latest follow-up date, in days after today (about two years)."""
NOTE_CONTROL_ALLOWED = frozenset("\n\t")
"""Control characters a note may contain. Others, such as NUL, are rejected."""


def note_has_control(note: str) -> bool:
    """Return whether ``note`` has a control character other than newline and tab."""
    return any(
        unicodedata.category(char) == "Cc" and char not in NOTE_CONTROL_ALLOWED
        for char in note
    )


def latest_follow_up(today: dt.date) -> dt.date:
    """Return the latest follow-up date that a review recorded on ``today`` may set."""
    return today + dt.timedelta(days=MAX_FOLLOW_UP_DAYS)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_sha256 TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    role TEXT NOT NULL,
    schools TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    review_id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    token_id TEXT NOT NULL,
    pupil_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    note TEXT NOT NULL,
    follow_up TEXT,
    as_of TEXT,
    model_name TEXT,
    model_version TEXT,
    probability REAL,
    school_rank INTEGER,
    flagged INTEGER
);
CREATE INDEX IF NOT EXISTS ix_reviews_pupil ON reviews (school_id, pupil_id);
CREATE TABLE IF NOT EXISTS school_settings (
    school_id TEXT PRIMARY KEY,
    capacity INTEGER NOT NULL
);
"""

EXPORT_COLUMNS = (
    "review_id",
    "recorded_at",
    "token_id",
    "pupil_id",
    "school_id",
    "decision",
    "follow_up",
    "as_of",
    "model_name",
    "model_version",
    "probability",
    "school_rank",
    "flagged",
    "note",
)


@dataclass(frozen=True)
class Session:
    """A signed-in person: who they are and the CSRF token of their forms."""

    principal: Principal
    csrf: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Review:
    """A decision a staff member recorded about a pupil at a school."""

    review_id: int
    recorded_at: dt.datetime
    token_id: str
    pupil_id: str
    school_id: str
    decision: str
    note: str
    follow_up: dt.date | None
    as_of: str | None
    model_name: str | None
    model_version: str | None
    probability: float | None
    school_rank: int | None
    flagged: bool | None

    def overrides_flag(self, today: dt.date, latest_as_of: dt.date | None) -> bool:
        """Return whether the decision still replaces the model's flag.

        A decision with a follow-up date applies until that date. One without
        applies to the scoring run it was made against, so a later scoring run
        (as-of ``latest_as_of``) puts the pupil back in front of the team.
        """
        if self.follow_up is not None:
            return self.follow_up > today
        if self.as_of is None or latest_as_of is None:
            return True
        return dt.date.fromisoformat(self.as_of) >= latest_as_of


@dataclass(frozen=True)
class ScoreContext:
    """The stored score a review was made against, kept for evaluation."""

    as_of: str
    model_name: str
    model_version: str
    probability: float
    school_rank: int
    flagged: bool


def ui_db_path() -> Path:
    """Return ``AJOISSA_UI_DB``, or ``ui.db`` in ``AJOISSA_HOME``."""
    configured = os.environ.get(UI_DB_ENV)
    if configured:
        return Path(configured).resolve()
    return home_dir() / "ui.db"


def session_hours() -> float:
    """Return ``AJOISSA_UI_SESSION_HOURS`` or ``DEFAULT_SESSION_HOURS``.

    Raises
    ------
    ValueError
        If the setting is not a positive number of hours.
    """
    raw = os.environ.get(SESSION_HOURS_ENV)
    if raw is None:
        return DEFAULT_SESSION_HOURS
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours > 0:
        raise ValueError(
            f"invalid {SESSION_HOURS_ENV}={raw!r}: expected a positive number of hours"
        )
    return hours


class UiStore:
    """Sessions, reviews and school settings in the SQLite file at ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or ui_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    # Sessions

    def create_session(self, principal: Principal, hours: float) -> tuple[str, Session]:
        """Start a session for ``principal``; return the cookie value and the session."""
        session_id = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        session = Session(
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + dt.timedelta(hours=hours),
        )
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),)
            )
            connection.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _digest(session_id),
                    principal.token_id,
                    principal.role,
                    json.dumps(principal.schools),
                    session.csrf,
                    now.isoformat(),
                    session.expires_at.isoformat(),
                ),
            )
        logger.info(
            "session started for %s token %s", principal.role, principal.token_id
        )
        return session_id, session

    def session(self, session_id: str) -> Session | None:
        """Return the unexpired session with this cookie value, or None."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT token_id, role, schools, csrf, expires_at FROM sessions "
                "WHERE session_sha256 = ?",
                (_digest(session_id),),
            ).fetchone()
        if row is None:
            return None
        expires = dt.datetime.fromisoformat(row[4])
        if expires <= dt.datetime.now(dt.UTC):
            return None
        principal = Principal(row[0], row[1], tuple(json.loads(row[2])))
        return Session(principal=principal, csrf=row[3], expires_at=expires)

    def end_session(self, session_id: str) -> None:
        """Delete the session, so its cookie no longer signs anyone in."""
        with self._connect() as connection:
            connection.execute(
                "DELETE FROM sessions WHERE session_sha256 = ?", (_digest(session_id),)
            )

    # Reviews

    def add_review(
        self,
        principal: Principal,
        pupil_id: str,
        school_id: str,
        decision: str,
        note: str,
        follow_up: dt.date | None,
        context: ScoreContext | None,
    ) -> Review:
        """Record a review and return it.

        Raises
        ------
        ValueError
            If ``decision`` is unknown, ``note`` is longer than ``MAX_NOTE_CHARS``
            or has a control character other than newline and tab, or
            ``follow_up`` is more than ``MAX_FOLLOW_UP_DAYS`` after today.
        """
        if decision not in DECISIONS:
            raise ValueError(
                f"invalid decision {decision!r}: expected one of {', '.join(DECISIONS)}"
            )
        if len(note) > MAX_NOTE_CHARS:
            raise ValueError(
                f"the note has {len(note)} characters; at most {MAX_NOTE_CHARS} fit"
            )
        if note_has_control(note):
            raise ValueError(
                "the note contains control characters; only newline and tab are allowed"
            )
        recorded = dt.datetime.now(dt.UTC)
        # The form check in serving.ui.app also uses the local date.
        latest = latest_follow_up(dt.date.today())
        if follow_up is not None and follow_up > latest:
            raise ValueError(
                f"invalid follow-up date {follow_up.isoformat()}: expected "
                f"{latest.isoformat()} or earlier ({MAX_FOLLOW_UP_DAYS} days ahead)"
            )
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT INTO reviews (recorded_at, token_id, pupil_id, school_id, "
                "decision, note, follow_up, as_of, model_name, model_version, "
                "probability, school_rank, flagged) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    recorded.isoformat(timespec="seconds"),
                    principal.token_id,
                    pupil_id,
                    school_id,
                    decision,
                    note,
                    follow_up.isoformat() if follow_up else None,
                    context.as_of if context else None,
                    context.model_name if context else None,
                    context.model_version if context else None,
                    context.probability if context else None,
                    context.school_rank if context else None,
                    int(context.flagged) if context else None,
                ),
            )
            review_id = cursor.lastrowid
        logger.info("review %s recorded by token %s", review_id, principal.token_id)
        return self.reviews_of(school_id, [pupil_id])[pupil_id][0]

    def reviews_of(
        self, school_id: str, pupil_ids: list[str]
    ) -> dict[str, list[Review]]:
        """Return the reviews of each pupil at ``school_id``, newest first."""
        found: dict[str, list[Review]] = {pupil: [] for pupil in pupil_ids}
        if not pupil_ids:
            return found
        marks = ", ".join("?" * len(pupil_ids))
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_REVIEW_COLUMNS)} FROM reviews "
                f"WHERE school_id = ? AND pupil_id IN ({marks}) "
                "ORDER BY recorded_at DESC, review_id DESC",
                (school_id, *pupil_ids),
            ).fetchall()
        for row in rows:
            found[row[3]].append(_review(row))
        return found

    def latest_reviews(self, school_id: str) -> dict[str, Review]:
        """Return the newest review of each reviewed pupil at ``school_id``."""
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_REVIEW_COLUMNS)} FROM reviews "
                "WHERE school_id = ? ORDER BY recorded_at, review_id",
                (school_id,),
            ).fetchall()
        return {row[3]: _review(row) for row in rows}

    def export_csv(self, destination: Path) -> int:
        """Write every review to ``destination`` as Excel CSV; return the row count.

        The format is the one of the data contract for a Finnish Excel: ``;``
        between fields, UTF-8 with a byte-order mark, CRLF line ends, and a
        decimal comma in ``probability``. A text cell that starts with ``=``,
        ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so
        that a spreadsheet shows it as text instead of running it as a formula.
        The file is written to a temporary file in the same folder and then
        renamed, so an existing file is replaced whole or not at all.
        """
        destination = destination.resolve()
        destination.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {', '.join(EXPORT_COLUMNS)} FROM reviews ORDER BY review_id"
            ).fetchall()
        handle, temporary = tempfile.mkstemp(
            prefix=f".{destination.name}.", dir=destination.parent
        )
        try:
            with os.fdopen(handle, "w", newline="", encoding="utf-8-sig") as out:
                writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
                writer.writerow(EXPORT_COLUMNS)
                writer.writerows([_excel_cell(value) for value in row] for row in rows)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        logger.info("exported %d reviews", len(rows))
        return len(rows)

    # School settings

    def capacity(self, school_id: str) -> int:
        """Return how many pupils the school's team can review per scoring run."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT capacity FROM school_settings WHERE school_id = ?", (school_id,)
            ).fetchone()
        return int(row[0]) if row else DEFAULT_CAPACITY

    def set_capacity(self, school_id: str, capacity: int) -> None:
        """Set the school's review capacity in pupils.

        Raises
        ------
        ValueError
            If ``school_id`` does not match ``SCHOOL_ID_PATTERN`` of
            :mod:`sources.contract`, the rule for staff tokens' schools, or
            ``capacity`` is not between 1 and ``MAX_CAPACITY``.
        """
        check_capacity(school_id, capacity)
        with self._connect() as connection:
            connection.execute(
                "INSERT INTO school_settings VALUES (?, ?) ON CONFLICT (school_id) "
                "DO UPDATE SET capacity = excluded.capacity",
                (school_id, capacity),
            )


def check_capacity(school_id: str, capacity: int) -> None:
    """Check a school's id and review capacity as :meth:`UiStore.set_capacity` does.

    Raises
    ------
    ValueError
        If ``school_id`` breaks the school id rule or ``capacity`` is not
        between 1 and ``MAX_CAPACITY``.
    """
    check_school_ids([school_id])
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ValueError(
            f"invalid capacity {capacity}: expected a number of pupils from 1 "
            f"to {MAX_CAPACITY}"
        )


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make Excel or LibreOffice read a cell as a formula."""


def _excel_cell(value: object) -> object:
    if isinstance(value, float):
        return repr(value).replace(".", ",")
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


_REVIEW_COLUMNS = (
    "review_id",
    "recorded_at",
    "token_id",
    "pupil_id",
    "school_id",
    "decision",
    "note",
    "follow_up",
    "as_of",
    "model_name",
    "model_version",
    "probability",
    "school_rank",
    "flagged",
)


def _review(row: tuple) -> Review:
    return Review(
        review_id=row[0],
        recorded_at=dt.datetime.fromisoformat(row[1]),
        token_id=row[2],
        pupil_id=row[3],
        school_id=row[4],
        decision=row[5],
        note=row[6],
        follow_up=dt.date.fromisoformat(row[7]) if row[7] else None,
        as_of=row[8],
        model_name=row[9],
        model_version=row[10],
        probability=row[11],
        school_rank=row[12],
        flagged=None if row[13] is None else bool(row[13]),
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()
