"""The server's connection to the score store, opened in the background and retried.

Scoring (``POST /v1/score``) does not read the score store, so a worker starts
and scores whether or not the store is reachable. :meth:`ScoreStoreConnection.start`
opens the store in a thread. After a failure the thread tries again every
``AJOISSA_SCORE_STORE_RETRY_SECONDS`` seconds (default ``DEFAULT_RETRY_SECONDS``)
until the store opens, so the pupil reads and the review pages recover without a
restart once the database is up. An invalid URL or a missing database driver
is not retried, because only a restart with a fixed setting can change it.

Until the store opens, and when a read fails because the database cannot be
reached, :meth:`ScoreStoreConnection.store` and :meth:`ScoreStoreConnection.reading`
raise :class:`ScoreStoreUnavailableError`. The read endpoints and the review
pages return it as 503.

The first failure of an outage is logged at ERROR with the store's URL (without
its password) and what to check. Later failures are logged at WARNING at most
once every ``REPEAT_LOG_SECONDS`` seconds, and at DEBUG in between. Each such
WARNING after the first ends with the number of failures since the previous one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Literal

import sqlalchemy as sa

from serving.champion import redact_credentials
from serving.ratelimitedlog import RateLimitedWarning
from serving.scorestore import SCORE_STORE_URL_ENV, ScoreStore, describe_url, store_url

logger = logging.getLogger(__name__)

RETRY_SECONDS_ENV = "AJOISSA_SCORE_STORE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 30.0
FIRST_ATTEMPT_WAIT_SECONDS = 10.0
"""Seconds that a read waits for the first attempt to open the store to end.

A reachable store usually opens well within this, so requests that arrive
just after the worker starts get their data and not a 503. A host that drops
packets can make one attempt last until the operating system's connect
timeout (about two minutes with Linux's default ``tcp_syn_retries`` of 6),
and no request waits that long. A ``connect_timeout`` in a PostgreSQL URL
shortens such an attempt."""
REPEAT_LOG_SECONDS = 600.0
"""Minimum seconds between WARNINGs about repeated failures. The interval runs
across outages, because one limiter serves the whole connection."""

StoreState = Literal["connecting", "available", "unavailable"]

_UNAVAILABLE_ERRORS = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)
"""Errors of a read that mean the database cannot be reached or used right now,
such as a refused or dropped connection, a locked SQLite file or a full pool."""


class ScoreStoreUnavailableError(Exception):
    """Raised when the score store is not open or a read from it failed.

    The message is for the client. It does not name the store, because the
    server log does that.
    """


def retry_seconds() -> float:
    """Return ``AJOISSA_SCORE_STORE_RETRY_SECONDS`` or ``DEFAULT_RETRY_SECONDS``.

    Raises
    ------
    ValueError
        If the setting is not a positive, finite number of seconds.
    """
    raw = os.environ.get(RETRY_SECONDS_ENV)
    if raw is None:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValueError(
            f"invalid {RETRY_SECONDS_ENV}={raw!r}: expected a positive number of "
            "seconds, such as 30"
        )
    return seconds


def error_text(exc: BaseException) -> str:
    """Return an error's type and text on one line, without credentials.

    A driver error's ``str()`` in SQLAlchemy adds the statement and a link to
    its error page, so only the driver's message, which names its type, is kept.
    """
    if isinstance(exc, sa.exc.DBAPIError) and exc.args:
        # Such as "(psycopg.OperationalError) connection failed: ...".
        text = str(exc.args[0])
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact_credentials(" ".join(text.split()).rstrip("."))


def redacted_url(url: str) -> str:
    """Return ``url`` without its password, or a note when it is not a valid URL."""
    try:
        return describe_url(url)
    except sa.exc.ArgumentError:
        return f"in {SCORE_STORE_URL_ENV} (not a valid URL)"


class ScoreStoreConnection:
    """The score store at ``url``, opened by a background thread and retried."""

    def __init__(self, url: str | None = None, retry: float | None = None) -> None:
        self.url = url or store_url()
        self.retry_seconds = retry if retry is not None else retry_seconds()
        self._store: ScoreStore | None = None
        self._error: str | None = None
        """The last failure to open or read the store; None after a success."""
        self._permanent = False
        """True when the setting itself is wrong, so no retry can succeed."""
        self._failures = 0
        self._attempted = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._repeat_warning = RateLimitedWarning(logger, REPEAT_LOG_SECONDS)

    @property
    def described_url(self) -> str:
        """The store's URL without its password, for log lines."""
        return redacted_url(self.url)

    @property
    def state(self) -> StoreState:
        """The store's state: ``connecting`` before the first attempt to open it
        ends, then ``available`` or ``unavailable`` by the last open or read."""
        if not self._attempted.is_set():
            return "connecting"
        if self._store is None or self._error is not None:
            return "unavailable"
        return "available"

    def start(self) -> None:
        """Start the thread that opens the store, unless it has been started."""
        with self._start_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._open_until_done, name="score-store-open", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop retrying and close the store's connections."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            # An attempt that hangs in connect() is left to end on its own,
            # because the thread is a daemon and the worker is stopping.
            thread.join(timeout=5)
        if self._store is not None:
            self._store.dispose()

    def store(self) -> ScoreStore:
        """Return the open store, starting the opening thread if need be.

        Waits up to ``FIRST_ATTEMPT_WAIT_SECONDS`` for the first attempt.

        Raises
        ------
        ScoreStoreUnavailableError
            If the store is not open.
        """
        self.start()
        self._attempted.wait(FIRST_ATTEMPT_WAIT_SECONDS)
        store = self._store
        if store is None:
            raise ScoreStoreUnavailableError(self._client_message())
        return store

    @contextlib.contextmanager
    def reading(self) -> Iterator[ScoreStore]:
        """Yield the open store, and record whether the reads in the block worked.

        Raises
        ------
        ScoreStoreUnavailableError
            If the store is not open, or the block raised an error that means
            the database cannot be reached now (see ``_UNAVAILABLE_ERRORS``).
        """
        store = self.store()
        try:
            yield store
        except _UNAVAILABLE_ERRORS as exc:
            self._record_read_failure(exc)
            raise ScoreStoreUnavailableError(self._client_message()) from exc
        self._record_read_success()

    def _open_until_done(self) -> None:
        while not self._stop.is_set():
            self._open_once()
            self._attempted.set()
            if self._store is not None or self._permanent:
                return
            if self._stop.wait(self.retry_seconds):
                return

    def _open_once(self) -> None:
        try:
            store = ScoreStore(self.url)
        except sa.exc.ArgumentError as exc:
            self._record_permanent(
                f"invalid {SCORE_STORE_URL_ENV}: {error_text(exc)}. Give a database "
                "URL such as postgresql+psycopg://user@host/ajoissa or "
                "sqlite:////path/scores.db"
            )
        except ModuleNotFoundError as exc:
            self._record_permanent(
                f"the database driver {exc.name!r} is not installed. Install it, "
                "for PostgreSQL with pip install 'psycopg[binary]'"
            )
        except Exception as exc:  # noqa: BLE001 - any failure is retried, and the thread must not end
            self._record_open_failure(exc)
        else:
            with self._state_lock:
                failures, self._failures, self._error = self._failures, 0, None
                self._store = store
            if failures:
                logger.info(
                    "score store %s opened after %d failed attempt(s)",
                    self.described_url,
                    failures,
                )
            else:
                logger.info("score store %s opened", self.described_url)

    def _record_failure(self, exc: Exception) -> str | None:
        """Count a failure, and return its text if it starts an outage.

        A later failure is logged through the rate-limited WARNING and gives None.
        """
        error = error_text(exc)
        with self._state_lock:
            self._failures += 1
            self._error = error
            first = self._failures == 1
        if first:
            return error
        self._repeat_warning.log(
            "score store %s is still unavailable (%s)", self.described_url, error
        )
        return None

    def _record_open_failure(self, exc: Exception) -> None:
        error = self._record_failure(exc)
        if error is None:
            return
        logger.error(
            "failed to open the score store %s (%s). Check that the database is "
            "running and accepts connections from this host, and check %s. "
            "Scoring works without the store, but pupil reads and the school "
            "pages return 503 until it opens. The server tries again every %g s.",
            self.described_url,
            error,
            SCORE_STORE_URL_ENV,
            self.retry_seconds,
        )

    def _record_read_failure(self, exc: Exception) -> None:
        error = self._record_failure(exc)
        if error is None:
            return
        logger.error(
            "failed to read from the score store %s (%s). Check that the database "
            "is running and accepts connections from this host. Pupil reads and "
            "the school pages return 503 while reads fail, and each new request "
            "tries again.",
            self.described_url,
            error,
        )

    def _record_read_success(self) -> None:
        if self._error is None:
            return
        with self._state_lock:
            failures, self._failures, self._error = self._failures, 0, None
        logger.info(
            "score store %s available again after %d failed read(s)",
            self.described_url,
            failures,
        )

    def _record_permanent(self, reason: str) -> None:
        with self._state_lock:
            self._permanent = True
            self._failures += 1
            self._error = reason
        logger.error(
            "cannot open the score store %s: %s. Scoring works without the "
            "store, but pupil reads and the school pages return 503 until the "
            "setting is fixed and the server restarted.",
            self.described_url,
            reason,
        )

    def _client_message(self) -> str:
        if not self._attempted.is_set():
            return (
                "the server is still connecting to its score store, so stored "
                "scores cannot be read yet. Scoring (POST /v1/score) is not "
                "affected. Try again in a minute."
            )
        if self._permanent:
            return (
                "the server cannot open its score store because of its "
                "configuration, so stored scores cannot be read. Scoring (POST "
                "/v1/score) is not affected. Ask the operator to check the "
                f"server log and {SCORE_STORE_URL_ENV}."
            )
        return (
            "the server cannot reach its score store, so stored scores cannot be "
            "read now. Scoring (POST /v1/score) is not affected. Try again in a "
            "few minutes, and if this persists, ask the operator to check the "
            "server log."
        )


_worker_connection: ScoreStoreConnection | None = None


def set_worker_connection(connection: ScoreStoreConnection) -> None:
    """Make ``connection`` the one that the review pages and ``/readyz`` use.

    The service calls this at start, so each worker process opens the store
    once. The pages open their own connection when no service runs, as in
    tests that call them in process.
    """
    global _worker_connection
    _worker_connection = connection


def worker_connection() -> ScoreStoreConnection | None:
    """Return the connection of the service in this process, if one started."""
    return _worker_connection
