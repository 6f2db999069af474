"""Bearer tokens and roles: who may call which endpoint, and for which schools.

A token reads ``ajoissa_<token id>.<secret>``. The token id is public: it
appears in ``ajoissa tokens list`` and in the access log. The secret is 32
random bytes from :mod:`secrets` (256 bits), shown once at creation. Only its
SHA-256 digest is stored.

Why a plain SHA-256 digest and not a slow password hash such as scrypt: slow
hashes protect low-entropy secrets that people choose, by making each guess
expensive. A 256-bit random secret cannot be guessed, so a slow hash adds no
protection but would add its cost (tens of milliseconds by design) to every
request. A leaked token database therefore does not reveal usable tokens.

Roles
-----
``platform``
    Scores records: ``POST /v1/score``. Reads ``GET /v1/model``.
``staff``
    Reads stored scores, explanations and history of pupils in the schools
    listed on the token, and ``GET /v1/model``.
``reviewer``
    Reads the model description and its model card: ``GET /v1/model``.
``admin``
    Lists tokens over HTTP (``GET /v1/tokens``) and reads ``GET /v1/model``.
    Tokens are created and revoked with ``ajoissa tokens``.

The tokens live in a SQLite file, ``AJOISSA_ACCESS_DB`` (default
``access.db`` in ``AJOISSA_HOME``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.store import home_dir
from sources.contract import check_school_ids

logger = logging.getLogger(__name__)

ACCESS_DB_ENV = "AJOISSA_ACCESS_DB"
ROLES = ("platform", "staff", "reviewer", "admin")
TOKEN_PREFIX = "ajoissa_"
MIN_TOKEN_ID_PREFIX = 8
"""Shortest token id prefix that ``revoke`` accepts. Ids have 16 hex digits."""
_TOKEN = re.compile(r"ajoissa_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})")
_TOKEN_ID = re.compile(r"ajoissa_([0-9a-f]{16})\.")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role TEXT NOT NULL,
    schools TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


@dataclass(frozen=True)
class Principal:
    """The holder of a valid token: its id, role and schools."""

    token_id: str
    role: str
    schools: tuple[str, ...]


@dataclass(frozen=True)
class TokenCheck:
    """The result of checking a token: its principal if valid, else why not."""

    principal: Principal | None
    token_id: str | None
    """The token's id if it is stored, even when the token was rejected."""
    role: str | None
    """The stored role of ``token_id``, None if the id is not stored."""
    status: str
    """``ok``, ``revoked``, or ``invalid`` for a malformed token, an unknown id
    or a wrong secret."""


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    token_id: str
    role: str
    schools: tuple[str, ...]
    label: str
    created_at: str
    revoked_at: str | None


def access_db_path() -> Path:
    """Return ``AJOISSA_ACCESS_DB``, or ``access.db`` in ``AJOISSA_HOME``."""
    configured = os.environ.get(ACCESS_DB_ENV)
    if configured:
        return Path(configured).resolve()
    return home_dir() / "access.db"


class TokenStore:
    """Create, check, list and revoke tokens in the SQLite file at ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or access_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            # In WAL mode a reader does not wait for a writer such as
            # ``ajoissa tokens create``, so the server checks tokens on its
            # event loop (serving.auth).
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self._read_connection: sqlite3.Connection | None = None
        self._read_pid = 0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def _reader(self) -> sqlite3.Connection:
        # One connection per process serves every token check: opening one
        # per check took 0.09 ms of CPU time, and a check on an open one 0.01 ms.
        # Each query still reads the file, so a revocation applies to the next
        # request. A connection is not carried across fork.
        if self._read_connection is None or self._read_pid != os.getpid():
            self._read_connection = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False
            )
            self._read_pid = os.getpid()
        return self._read_connection

    def create(
        self, role: str, schools: Sequence[str] = (), label: str = ""
    ) -> tuple[str, TokenInfo]:
        """Create a token and return its full text (shown only now) and its info.

        Raises
        ------
        ValueError
            If ``role`` is unknown, a staff token has no school, another role
            is given schools, or a school id does not match ``SCHOOL_ID_PATTERN``
            of :mod:`sources.contract`.
        """
        if role not in ROLES:
            raise ValueError(
                f"invalid role {role!r}: expected one of {', '.join(ROLES)}"
            )
        cleaned = tuple(
            sorted({school.strip() for school in schools if school.strip()})
        )
        if role == "staff" and not cleaned:
            raise ValueError(
                "a staff token needs at least one school: pass --school SCHOOL_ID "
                "once per school the holder is responsible for"
            )
        if role != "staff" and cleaned:
            raise ValueError(
                f"only staff tokens are scoped to schools; a {role} token takes no "
                "--school"
            )
        check_school_ids(cleaned)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._connect() as connection:
            connection.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (token_id, _digest(secret), role, json.dumps(cleaned), label, created),
            )
        logger.info("created %s token %s", role, token_id)
        info = TokenInfo(token_id, role, cleaned, label, created, None)
        return f"{TOKEN_PREFIX}{token_id}.{secret}", info

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal of ``token``, or None if it is invalid or revoked."""
        return self.check(token).principal

    def check(self, token: str) -> TokenCheck:
        """Check ``token`` and return its principal, or why it was rejected.

        A rejected token whose id is stored (a revoked token, or a wrong
        secret) keeps its id and role in the result, so the access log can name
        it. The secret is never part of the result.
        """
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            # A token cut short or mistyped after its id still names a token.
            damaged = _TOKEN_ID.match(token.strip())
            if damaged is None:
                return TokenCheck(None, None, None, "invalid")
            token_id, secret = damaged.group(1), ""
        else:
            token_id, secret = match.groups()
        with self._read_lock:
            cursor = self._reader().execute(
                "SELECT secret_sha256, role, schools, revoked_at FROM tokens "
                "WHERE token_id = ?",
                (token_id,),
            )
            # fetchall ends the statement, so no read lock stays on the file.
            rows = cursor.fetchall()
        if not rows:
            return TokenCheck(None, None, None, "invalid")
        stored, role, schools, revoked = rows[0]
        if match is None or not hmac.compare_digest(stored, _digest(secret)):
            return TokenCheck(None, token_id, role, "invalid")
        if revoked is not None:
            return TokenCheck(None, token_id, role, "revoked")
        principal = Principal(token_id, role, tuple(json.loads(schools)))
        return TokenCheck(principal, token_id, role, "ok")

    def list(self) -> list[TokenInfo]:
        """Return every token, oldest first, without secrets."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT token_id, role, schools, label, created_at, revoked_at "
                "FROM tokens ORDER BY created_at, token_id"
            ).fetchall()
        return [
            TokenInfo(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5])
            for row in rows
        ]

    def revoke(self, token_id: str) -> str:
        """Revoke a token and return its full id. Requests with it get 401 from then on.

        ``token_id`` is the full id or a prefix of at least
        ``MIN_TOKEN_ID_PREFIX`` characters that matches exactly one token. A
        whole token is accepted too: only its id is used, and errors never
        contain its secret.

        Raises
        ------
        LookupError
            If no token has this id, or the prefix is shorter than the minimum
            or matches several tokens, or the token is already revoked.
        """
        full_id = self._resolve_id(token_id)
        earlier = next(i.revoked_at for i in self.list() if i.token_id == full_id)
        if earlier:
            raise LookupError(f"token {full_id} was already revoked at {earlier}")
        revoked = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self._connect() as connection:
            connection.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) "
                "WHERE token_id = ?",
                (revoked, full_id),
            )
        logger.info("revoked token %s", full_id)
        return full_id

    def _resolve_id(self, token_id: str) -> str:
        token_id = token_id_of(token_id)
        ids = [info.token_id for info in self.list()]
        if token_id in ids:
            return token_id
        rule = (
            f"give the full id or a unique prefix of at least {MIN_TOKEN_ID_PREFIX} "
            "characters, as shown by `ajoissa tokens list`"
        )
        if len(token_id) < MIN_TOKEN_ID_PREFIX:
            raise LookupError(f"no token with id {token_id!r} in {self.path}; {rule}")
        matches = [full for full in ids if full.startswith(token_id)]
        if not matches:
            raise LookupError(f"no token with id {token_id!r} in {self.path}; {rule}")
        if len(matches) > 1:
            raise LookupError(
                f"token id prefix {token_id!r} matches {len(matches)} tokens in "
                f"{self.path}: {', '.join(matches)}; {rule}"
            )
        return matches[0]


def token_id_of(text: str) -> str:
    """Return the id part of ``text`` if it is a whole token, else ``text``.

    Anything after the first ``.`` of a text that starts with ``TOKEN_PREFIX``
    is dropped, so a secret, even a mistyped one, is never passed on.
    """
    text = text.strip()
    if not text.startswith(TOKEN_PREFIX):
        return text
    return text.removeprefix(TOKEN_PREFIX).split(".", 1)[0]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
