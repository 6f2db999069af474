"""The server's score store connection: opened in the background, retried, never fatal."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time

import pytest

from serving.scorestore import RunKey, ScoreStore, StoredScore, metadata
from serving.storeconnection import (
    RETRY_SECONDS_ENV,
    ScoreStoreConnection,
    ScoreStoreUnavailableError,
    retry_seconds,
)

LOGGER_NAME = "serving.storeconnection"
ROW = StoredScore("p1", "S1", "p1-e1", 0.3, 1, 1, [], {}, {})
KEY = RunKey("records", dt.date(2025, 2, 3), "m", "1")


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _messages(caplog, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER_NAME and record.levelno == level
    ]


@pytest.fixture
def blocked_url(tmp_path):
    """A SQLite store whose folder cannot be created, because a file has its name."""
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store's folder belongs", encoding="utf-8")
    return blocker, f"sqlite:///{blocker / 'scores.db'}"


def test_blocked_store_unavailable_then_opens(blocked_url, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    blocker, url = blocked_url
    connection = ScoreStoreConnection(url, retry=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(ScoreStoreUnavailableError, match="cannot reach"):
            connection.store()
        assert time.monotonic() - started < 5
        assert connection.state == "unavailable"
        errors = _messages(caplog, logging.ERROR)
        assert len(errors) == 1
        assert f"failed to open the score store sqlite:///{blocker}" in errors[0]
        assert "tries again every 0.1 s" in errors[0]

        blocker.unlink()
        assert _wait_until(lambda: connection.state == "available")
        with connection.reading() as store:
            assert store.pupil_scores("p1", None) == []
        opened = [m for m in _messages(caplog, logging.INFO) if "opened after" in m]
        assert len(opened) == 1
        assert len(_messages(caplog, logging.ERROR)) == 1
    finally:
        connection.stop()


def test_password_not_logged(caplog):
    pytest.importorskip("psycopg")
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    # Nothing listens on the port, so the connection is refused at once.
    url = f"postgresql+psycopg://ajoissa:s3cret-word@127.0.0.1:{_unused_port()}/x"
    connection = ScoreStoreConnection(url, retry=60)
    try:
        with pytest.raises(ScoreStoreUnavailableError) as excinfo:
            connection.store()
    finally:
        connection.stop()
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "postgresql+psycopg://ajoissa:***@127.0.0.1" in errors[0]
    assert "OperationalError" in errors[0]
    assert "\n" not in errors[0]
    assert "s3cret-word" not in caplog.text
    assert "127.0.0.1" not in str(excinfo.value)


def test_invalid_url_not_retried(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    connection = ScoreStoreConnection("not a database url", retry=0.05)
    try:
        with pytest.raises(ScoreStoreUnavailableError, match="configuration"):
            connection.store()
        time.sleep(0.3)
    finally:
        connection.stop()
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "invalid AJOISSA_SCORE_STORE_URL" in errors[0]
    assert not _messages(caplog, logging.WARNING)


def test_failed_read_unavailable_then_recovers(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    writer = ScoreStore(url)
    writer.replace_run(KEY, [ROW])
    connection = ScoreStoreConnection(url, retry=60)
    try:
        with connection.reading() as store:
            assert len(store.pupil_scores("p1", None)) == 1
        # Without its tables every read fails with "no such table".
        writer.drop_tables()
        with pytest.raises(ScoreStoreUnavailableError), connection.reading() as store:
            store.pupil_scores("p1", None)
        assert connection.state == "unavailable"
        with pytest.raises(ScoreStoreUnavailableError), connection.reading() as store:
            store.pupil_scores("p1", None)

        metadata.create_all(writer.engine)
        with connection.reading() as store:
            assert store.pupil_scores("p1", None) == []
        assert connection.state == "available"
    finally:
        connection.stop()
        writer.dispose()
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1
    assert "failed to read from the score store" in errors[0]
    assert len(_messages(caplog, logging.WARNING)) == 1
    assert any(
        "available again after 2 failed read(s)" in message
        for message in _messages(caplog, logging.INFO)
    )


def test_retry_seconds_default(monkeypatch):
    monkeypatch.delenv(RETRY_SECONDS_ENV, raising=False)
    assert retry_seconds() == 30.0


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "inf", "nan"])
def test_retry_seconds_invalid(monkeypatch, raw):
    monkeypatch.setenv(RETRY_SECONDS_ENV, raw)
    with pytest.raises(ValueError, match=f"invalid {RETRY_SECONDS_ENV}"):
        retry_seconds()
