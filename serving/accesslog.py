"""The access log: an append-only, hash-chained record of reads of pupil data.

Every scoring request and every read of a pupil's stored scores adds one row:
time (UTC), token id, role, pupil pseudonymous id, school, model version,
endpoint and outcome (the HTTP status and a short word). The log is a SQLite
file, ``AJOISSA_ACCESS_LOG`` (default ``access-log.db`` in ``AJOISSA_HOME``).

Hash chain
----------
Each row stores ``prev_hash``, the hash of the row before it, and ``row_hash``,
the SHA-256 of ``prev_hash`` and the row's fields, sequence number included.
The first row follows ``GENESIS``. The ``chain_head`` table contains the last
sequence number and hash, updated in the same transaction as each append.
:func:`verify` recomputes the chain, so it finds an edited row (its hash no
longer matches), a deleted row (a gap in the sequence or a broken link), rows
in a different order (broken links) and rows deleted from the end (the head no
longer matches).

SQLite triggers reject UPDATE and DELETE on the log outside :func:`prune`, so
mistakes cannot change it. They do not stop someone who can write the file.
The chain detects such changes, except a rewrite of the whole file with a fresh
chain: compare the head hash that ``verify`` prints with a copy kept elsewhere
to detect that too.

Retention
---------
:func:`prune` deletes rows older than the retention period (default
``DEFAULT_RETENTION_DAYS``, about 6 months) and records an anchor row: the
first kept sequence number, the hash of the last deleted row, that row
itself and the retention period the prune used. ``verify`` starts from the
newest anchor, so a pruned log still verifies. It checks each anchor's row
against its hash and its age against that prune's recorded retention, so rows
deleted earlier than the prune claims are found. Anchors written before the
retention was recorded are checked against the current retention setting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from models.store import home_dir
from serving.api_models import MAX_PUPIL_ID_CHARS

logger = logging.getLogger(__name__)

ACCESS_LOG_ENV = "AJOISSA_ACCESS_LOG"
RETENTION_ENV = "AJOISSA_ACCESS_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 183
MAX_RETENTION_DAYS = 36_525
"""Upper limit of a retention in days: 100 years. Python's dates end in the
year 9999, so a prune's cutoff date stays computable."""
GENESIS = "0" * 64
"""``prev_hash`` of the first row ever written."""
MAX_ID_CHARS = MAX_PUPIL_ID_CHARS
"""Characters of a pupil or school id that a row keeps. Ids come from request
paths, so a rejected request can carry any text of any length. Valid pupil ids
have at most ``MAX_PUPIL_ID_CHARS`` characters."""

FIELDS = (
    "seq",
    "time",
    "token_id",
    "role",
    "pupil_id",
    "school_id",
    "model_version",
    "endpoint",
    "outcome",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    token_id TEXT,
    role TEXT,
    pupil_id TEXT,
    school_id TEXT,
    model_version TEXT,
    endpoint TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    row_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anchors (
    id INTEGER PRIMARY KEY,
    pruned_at TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    last_row TEXT,
    retention_days INTEGER
);
CREATE TABLE IF NOT EXISTS prune_permit (upto_seq INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'the access log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
WHEN old.seq > (SELECT coalesce(max(upto_seq), 0) FROM prune_permit)
BEGIN
    SELECT RAISE(ABORT, 'the access log is append-only; use prune for retention');
END;
"""


@dataclass(frozen=True)
class AccessEvent:
    """One access to record. Fields that do not apply are None."""

    endpoint: str
    outcome: str
    token_id: str | None = None
    role: str | None = None
    pupil_id: str | None = None
    school_id: str | None = None
    model_version: str | None = None


def loggable_id(value: str | None) -> str | None:
    """Return ``value`` cut to ``MAX_ID_CHARS`` with control characters escaped.

    A cut value ends with "…" and its full length, such as
    ``"xxx…(8000 characters)"``, so a reader sees that it was cut. Valid ids
    are returned unchanged.
    """
    if value is None:
        return None
    kept = "".join(_escape_control(character) for character in value[:MAX_ID_CHARS])
    if len(value) > MAX_ID_CHARS:
        kept += f"…({len(value)} characters)"
    return kept


def _escape_control(character: str) -> str:
    if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp"):
        return character.encode("unicode_escape").decode("ascii")
    return character


@dataclass
class VerifyResult:
    """Result of :func:`verify`: rows checked, the chain head and every problem."""

    rows_checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)
    prunes: list[str] = field(default_factory=list)
    """One line per prune: which rows it deleted, when, the newest row's time
    and the retention it used."""
    short_prunes: list[str] = field(default_factory=list)
    """One line per prune whose recorded retention was shorter than
    ``DEFAULT_RETENTION_DAYS``. These are not problems, because such a prune
    needs a confirmation, but the person verifying the log should check that
    each was intended."""

    @property
    def ok(self) -> bool:
        return not self.problems


def access_log_path() -> Path:
    """Return ``AJOISSA_ACCESS_LOG``, or ``access-log.db`` in ``AJOISSA_HOME``."""
    configured = os.environ.get(ACCESS_LOG_ENV)
    if configured:
        return Path(configured).resolve()
    return home_dir() / "access-log.db"


_RETENTION_EXPECTED = f"expected a whole number of days from 1 to {MAX_RETENTION_DAYS}"


def retention_days() -> int:
    """Return ``AJOISSA_ACCESS_LOG_RETENTION_DAYS`` or ``DEFAULT_RETENTION_DAYS``.

    Raises
    ------
    ValueError
        If the setting is not a whole number of days from 1 to
        ``MAX_RETENTION_DAYS``.
    """
    raw = os.environ.get(RETENTION_ENV)
    if raw is None:
        return DEFAULT_RETENTION_DAYS
    if not raw.strip().isdigit():
        raise ValueError(f"invalid {RETENTION_ENV}={raw!r}: {_RETENTION_EXPECTED}")
    return check_retention(int(raw), f"{RETENTION_ENV}={raw!r}")


def check_retention(days: int, source: str) -> int:
    """Return ``days``, or raise a ValueError naming ``source`` if it is invalid.

    Raises
    ------
    ValueError
        If ``days`` is outside 1 to ``MAX_RETENTION_DAYS``.
    """
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"invalid {source}: {_RETENTION_EXPECTED}")
    return days


class AccessLog:
    """Append to, verify and prune the access log in the SQLite file at ``path``."""

    def __init__(
        self, path: Path | None = None, create: bool = True, read_only: bool = False
    ) -> None:
        """Open the log at ``path``, creating the file and its tables with ``create``.

        Without ``create`` the file must already be an access log. With
        ``read_only`` the file is opened read-only, so checking it never
        changes it.

        Raises
        ------
        ValueError
            Without ``create``, if the file is missing, is not an SQLite
            database or has no access-log table.
        """
        self.path = path or access_log_path()
        self.read_only = read_only
        if create and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
                _add_anchor_columns(connection)
        else:
            self._check_is_log()
        self._append_lock = threading.Lock()
        self._append_connection: sqlite3.Connection | None = None
        self._append_pid: int | None = None

    def _check_is_log(self) -> None:
        if not self.path.is_file():
            raise ValueError(f"no access log at {self.path}")
        try:
            connection = self._connect()
            try:
                tables = {
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                }
            finally:
                connection.close()
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{self.path} is not an SQLite database ({exc}); give the access "
                "log's file"
            ) from exc
        missing = {"access_log", "chain_head", "anchors"} - tables
        if missing:
            raise ValueError(
                f"{self.path} is not an access log: it has no "
                f"{', '.join(sorted(missing))} table; give the access log's file"
            )

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=30,
                isolation_level=None,
            )
            return connection
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _writer(self) -> sqlite3.Connection:
        # One connection per process serves every append. Opening and closing a
        # connection per row cost about 15 ms, because the last connection to
        # close checkpoints the WAL. A connection is not carried across fork.
        if self._append_connection is None or self._append_pid != os.getpid():
            self._append_connection = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._append_connection.execute("PRAGMA synchronous=NORMAL")
            self._append_pid = os.getpid()
        return self._append_connection

    def close(self) -> None:
        """Close the connection that appends use; the next append reopens it."""
        with self._append_lock:
            if self._append_connection is not None:
                self._append_connection.close()
                self._append_connection = None

    def append(self, event: AccessEvent, now: dt.datetime | None = None) -> int:
        """Append ``event`` and return its sequence number.

        The pupil and school ids are stored through :func:`loggable_id`, so
        text from a request path is stored shortened and readable.

        The write lock is taken before the head is read, so concurrent writers
        (several server workers) extend the chain one at a time. In WAL mode
        with ``synchronous=NORMAL`` a commit survives a crash of the process but
        the last commits can be lost if the machine loses power.
        """
        time = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
        with self._append_lock:
            return self._append(self._writer(), event, time)

    def _append(
        self, connection: sqlite3.Connection, event: AccessEvent, time: str
    ) -> int:
        try:
            connection.execute("BEGIN IMMEDIATE")
            head = connection.execute(
                "SELECT seq, row_hash FROM chain_head WHERE id = 1"
            ).fetchone()
            seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
            values = {
                "seq": seq,
                "time": time,
                "token_id": event.token_id,
                "role": event.role,
                "pupil_id": loggable_id(event.pupil_id),
                "school_id": loggable_id(event.school_id),
                "model_version": event.model_version,
                "endpoint": event.endpoint,
                "outcome": event.outcome,
            }
            row_hash = _row_hash(prev_hash, values)
            connection.execute(
                f"INSERT INTO access_log ({', '.join(FIELDS)}, prev_hash, row_hash) "
                f"VALUES ({', '.join('?' * (len(FIELDS) + 2))})",
                (*values.values(), prev_hash, row_hash),
            )
            connection.execute(
                "INSERT INTO chain_head (id, seq, row_hash) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, "
                "row_hash = excluded.row_hash",
                (seq, row_hash),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return seq

    def rows(self) -> list[dict[str, object]]:
        """Return every row in sequence order, hashes included."""
        with self._connect() as connection:
            connection.row_factory = sqlite3.Row
            return [
                dict(row)
                for row in connection.execute("SELECT * FROM access_log ORDER BY seq")
            ]

    def query(
        self,
        pupil_id: str | None = None,
        token_id: str | None = None,
        since: dt.date | None = None,
        limit: int = 50,
    ) -> list[dict[str, object]]:
        """Return up to ``limit`` rows, newest first, that match every given filter.

        ``since`` keeps rows from the start of that day in UTC on.
        """
        conditions, values = [], []
        if pupil_id is not None:
            conditions.append("pupil_id = ?")
            values.append(pupil_id)
        if token_id is not None:
            conditions.append("token_id = ?")
            values.append(token_id)
        if since is not None:
            # Times are stored as ISO 8601 in UTC, so text order is time order.
            conditions.append("time >= ?")
            values.append(since.isoformat())
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        connection = self._connect()
        connection.row_factory = sqlite3.Row
        try:
            rows = connection.execute(
                f"SELECT {', '.join(FIELDS)} FROM access_log {where} "
                "ORDER BY seq DESC LIMIT ?",
                (*values, limit),
            ).fetchall()
        finally:
            connection.close()
        return [dict(row) for row in rows]

    def verify(
        self, now: dt.datetime | None = None, retention: int | None = None
    ) -> VerifyResult:
        """Recompute the hash chain from the newest anchor and report every break.

        Each prune is also checked (:func:`_anchor_problems`): the deleted rows
        must have been older than the retention that the prune recorded when
        they were deleted. Anchors without a recorded retention, written before
        it was recorded, are checked against ``retention``, which defaults to
        :func:`retention_days`.

        Raises
        ------
        ValueError
            If ``retention`` is None and ``AJOISSA_ACCESS_LOG_RETENTION_DAYS``
            is invalid, even when the log has no anchors.
        """
        fallback = retention if retention is not None else retention_days()
        result = VerifyResult()
        connection = self._connect()
        connection.row_factory = sqlite3.Row
        try:
            columns = {
                row["name"] for row in connection.execute("PRAGMA table_info(anchors)")
            }
            if "last_row" in columns:
                anchors = connection.execute(
                    "SELECT * FROM anchors ORDER BY id"
                ).fetchall()
                for anchor in anchors:
                    recorded = _recorded_retention(anchor)
                    result.prunes.append(_describe_prune(anchor, recorded))
                    if recorded is not None and recorded < DEFAULT_RETENTION_DAYS:
                        result.short_prunes.append(
                            f"prune anchor {anchor['id']} used a retention of "
                            f"{recorded} days, shorter than the default of "
                            f"{DEFAULT_RETENTION_DAYS} days"
                        )
                    result.problems += _anchor_problems(
                        anchor,
                        recorded if recorded is not None else fallback,
                        now or dt.datetime.now(dt.UTC),
                    )
            anchor = connection.execute(
                "SELECT first_seq, prev_hash FROM anchors ORDER BY id DESC LIMIT 1"
            ).fetchone()
            expected_seq, prev_hash = (
                (anchor["first_seq"], anchor["prev_hash"]) if anchor else (1, GENESIS)
            )
            rows = connection.execute("SELECT * FROM access_log ORDER BY rowid")
            for row in rows:
                values = {name: row[name] for name in FIELDS}
                if row["seq"] != expected_seq:
                    result.problems.append(
                        f"row seq {row['seq']}: expected seq {expected_seq}; rows "
                        "were deleted or reordered"
                    )
                if row["prev_hash"] != prev_hash:
                    result.problems.append(
                        f"row seq {row['seq']}: prev_hash does not match the row "
                        "before it; a row before it was deleted, edited or moved"
                    )
                if _row_hash(row["prev_hash"], values) != row["row_hash"]:
                    result.problems.append(
                        f"row seq {row['seq']}: row_hash does not match its fields; "
                        "the row was edited"
                    )
                result.rows_checked += 1
                prev_hash = row["row_hash"]
                expected_seq = row["seq"] + 1
            head = connection.execute(
                "SELECT seq, row_hash FROM chain_head WHERE id = 1"
            ).fetchone()
        finally:
            connection.close()
        head_seq, head_hash = (head["seq"], head["row_hash"]) if head else (0, GENESIS)
        if (head_seq, head_hash) != (expected_seq - 1, prev_hash):
            result.problems.append(
                f"the chain head is seq {head_seq}, but the last row is seq "
                f"{expected_seq - 1}; rows at the end were deleted or the head "
                "was edited"
            )
        result.head_seq = head_seq
        result.head_hash = head_hash
        return result

    def prune_preview(
        self, retention: int, now: dt.datetime | None = None
    ) -> PrunePreview:
        """Return what :meth:`prune` with ``retention`` days would delete now."""
        cutoff = _prune_cutoff(retention, now)
        with self._connect() as connection:
            count, oldest, newest = connection.execute(
                "SELECT count(*), min(time), max(time) FROM access_log WHERE time < ?",
                (cutoff.isoformat(timespec="microseconds"),),
            ).fetchone()
        return PrunePreview(retention, cutoff, count, oldest, newest)

    def prune(
        self, retention: int | None = None, now: dt.datetime | None = None
    ) -> int:
        """Delete rows older than ``retention`` days and anchor the chain; return
        how many rows were deleted.

        ``retention`` defaults to :func:`retention_days`. The anchor records it,
        so ``verify`` checks this prune against it.
        """
        days = retention if retention is not None else retention_days()
        check_retention(days, f"retention of {days} days")
        now = now or dt.datetime.now(dt.UTC)
        cutoff = _prune_cutoff(days, now)
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            last = connection.execute(
                "SELECT max(seq) FROM access_log WHERE time < ?",
                (cutoff.isoformat(timespec="microseconds"),),
            ).fetchone()[0]
            if last is None:
                connection.execute("COMMIT")
                return 0
            connection.row_factory = sqlite3.Row
            last_row = connection.execute(
                "SELECT * FROM access_log WHERE seq = ?", (last,)
            ).fetchone()
            last_hash = last_row["row_hash"]
            # The last deleted row, kept whole so that verify can check its
            # hash and its age when it was deleted.
            last_deleted = {name: last_row[name] for name in (*FIELDS, "prev_hash")}
            connection.execute("INSERT INTO prune_permit VALUES (?)", (last,))
            deleted = connection.execute(
                "DELETE FROM access_log WHERE seq <= ?", (last,)
            ).rowcount
            connection.execute("DELETE FROM prune_permit")
            connection.execute(
                "INSERT INTO anchors "
                "(pruned_at, first_seq, prev_hash, last_row, retention_days) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    now.isoformat(),
                    last + 1,
                    last_hash,
                    json.dumps(last_deleted),
                    days,
                ),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()
        logger.info(
            "pruned %d access-log rows older than %d days (before %s)",
            deleted,
            days,
            cutoff.date(),
        )
        return deleted


@dataclass(frozen=True)
class PrunePreview:
    """The rows that a prune with ``retention`` days would delete."""

    retention: int
    cutoff: dt.datetime
    """Rows with a time before this are deleted."""
    rows: int
    oldest: str | None
    """Time of the oldest row to delete, None if there is none."""
    newest: str | None
    """Time of the newest row to delete, None if there is none."""


def _prune_cutoff(retention: int, now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention)


def _add_anchor_columns(connection: sqlite3.Connection) -> None:
    """Add the anchor columns that logs created by older versions lack."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(anchors)")}
    if "last_row" not in columns:
        connection.execute("ALTER TABLE anchors ADD COLUMN last_row TEXT")
    if "retention_days" not in columns:
        connection.execute("ALTER TABLE anchors ADD COLUMN retention_days INTEGER")


def _recorded_retention(anchor: sqlite3.Row) -> int | None:
    """Return the retention in days that the prune recorded, None if it has none."""
    if "retention_days" not in anchor.keys():
        return None
    value = anchor["retention_days"]
    return value if isinstance(value, int) else None


def _describe_prune(anchor: sqlite3.Row, retention: int | None) -> str:
    last = json.loads(anchor["last_row"]) if anchor["last_row"] else None
    newest = f", the newest from {last['time']}" if last else ""
    used = (
        f", retention {retention} days"
        if retention is not None
        else ", retention not recorded"
    )
    return (
        f"prune anchor {anchor['id']}: rows before seq {anchor['first_seq']} were "
        f"pruned at {anchor['pruned_at']}{newest}{used}"
    )


def _anchor_problems(
    anchor: sqlite3.Row, retention: int, now: dt.datetime
) -> list[str]:
    """Return what is wrong with one prune's anchor row.

    The anchor keeps the last deleted row. Its hash must be the anchor's
    ``prev_hash``, which the first kept row links to, so its time cannot be
    changed. That row must have been older than ``retention`` days when the
    prune ran, and the prune cannot lie in the future. ``retention`` is the
    prune's recorded retention, or the current setting for an anchor that
    has none.
    """
    where = f"prune anchor {anchor['id']} (rows before seq {anchor['first_seq']})"
    if not anchor["last_row"]:
        return [
            f"{where}: it does not keep the last deleted row, so its retention "
            "cannot be checked; it was written by an older version or forged"
        ]
    last = json.loads(anchor["last_row"])
    values = {name: last.get(name) for name in FIELDS}
    problems = []
    if (
        last.get("seq") != anchor["first_seq"] - 1
        or _row_hash(last.get("prev_hash", ""), values) != anchor["prev_hash"]
    ):
        problems.append(
            f"{where}: its copy of the last deleted row does not match the "
            "anchor's hash, so the anchor was edited or forged"
        )
        return problems
    pruned_at = dt.datetime.fromisoformat(anchor["pruned_at"])
    newest = dt.datetime.fromisoformat(str(last["time"]))
    if pruned_at > now + dt.timedelta(minutes=5):
        problems.append(
            f"{where}: its prune time {anchor['pruned_at']} is in the future; "
            "the anchor was edited or forged"
        )
    age = pruned_at - newest
    if retention < 1:
        problems.append(
            f"{where}: its recorded retention of {retention} days is invalid; "
            "the anchor was edited or forged"
        )
    elif age < dt.timedelta(days=retention):
        problems.append(
            f"{where}: the newest deleted row, from {last['time']}, was "
            f"{age.days} days old when it was pruned, less than the retention of "
            f"{retention} days; rows were deleted early"
        )
    return problems


def _row_hash(prev_hash: str, values: dict[str, object]) -> str:
    payload = json.dumps([prev_hash, *(values[name] for name in FIELDS)])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
