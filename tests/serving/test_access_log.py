"""The hash-chained access log: appends, tamper detection, retention, CLI."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from typer.testing import CliRunner

from ajoissa.cli import app
from serving.accesslog import AccessEvent, AccessLog, retention_days

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def log(tmp_path) -> AccessLog:
    log = AccessLog(tmp_path / "access-log.db")
    for day in range(10):
        event = AccessEvent(
            endpoint="/v1/pupils/{id}/explanation",
            outcome="200 ok",
            token_id=f"token{day % 3}",
            role="staff",
            pupil_id=f"pupil{day}",
            school_id="AAA_2014J",
            model_version="3",
        )
        log.append(event, now=NOW - dt.timedelta(days=300 - 30 * day))
    return log


def _tamper(log: AccessLog, *statements: str) -> None:
    # An attacker with write access to the file can drop the triggers first.
    with sqlite3.connect(log.path) as connection:
        connection.execute("DROP TRIGGER access_log_no_update")
        connection.execute("DROP TRIGGER access_log_no_delete")
        for statement in statements:
            connection.execute(statement)


def test_intact_log_verifies(log):
    result = log.verify()
    assert result.ok, result.problems
    assert result.rows_checked == 10
    assert result.head_seq == 10


def test_update_rejected(log):
    connection = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("UPDATE access_log SET outcome = 'x' WHERE seq = 2")
    connection.close()


def test_delete_rejected(log):
    connection = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute("DELETE FROM access_log WHERE seq = 2")
    connection.close()


def test_edit_detected(log):
    _tamper(log, "UPDATE access_log SET pupil_id = 'other' WHERE seq = 4")
    result = log.verify()
    assert not result.ok
    assert "row seq 4: row_hash does not match its fields" in result.problems[0]


def test_delete_detected(log):
    _tamper(log, "DELETE FROM access_log WHERE seq = 5")
    problems = log.verify().problems
    assert any("row seq 6: expected seq 5" in p for p in problems)


def test_tail_delete_detected(log):
    _tamper(log, "DELETE FROM access_log WHERE seq = 10")
    problems = log.verify().problems
    assert problems == [
        (
            "the chain head is seq 10, but the last row is seq 9; rows at the end "
            "were deleted or the head was edited"
        )
    ]


def test_reorder_detected(log):
    # Swap the contents of rows 3 and 7, keeping their sequence numbers.
    rows = {row["seq"]: row for row in log.rows()}
    swaps = []
    for target, source in ((3, 7), (7, 3)):
        row = rows[source]
        swaps.append(
            f"UPDATE access_log SET time = '{row['time']}', "
            f"pupil_id = '{row['pupil_id']}', token_id = '{row['token_id']}', "
            f"prev_hash = '{row['prev_hash']}', row_hash = '{row['row_hash']}' "
            f"WHERE seq = {target}"
        )
    _tamper(log, *swaps)
    problems = log.verify().problems
    assert any(p.startswith("row seq 3: prev_hash does not match") for p in problems)
    assert any(p.startswith("row seq 7: row_hash does not match") for p in problems)


def test_prune_keeps_chain_valid(log):
    deleted = log.prune(retention=183, now=NOW)
    assert deleted == 4
    assert next(row["seq"] for row in log.rows()) == 5
    result = log.verify()
    assert result.ok, result.problems
    log.append(AccessEvent(endpoint="/v1/score", outcome="200 ok"), now=NOW)
    assert log.verify().ok


def test_prune_then_delete_detected(log):
    log.prune(retention=183, now=NOW)
    _tamper(log, "DELETE FROM access_log WHERE seq = 5")
    problems = log.verify().problems
    assert any("row seq 6: expected seq 5" in p for p in problems)


def test_early_prune_detected(log):
    # Deleting young rows through the prune path, as a prune with a forged
    # retention would, keeps the chain intact but not the retention.
    log.prune(retention=10, now=NOW)
    problems = log.verify(now=NOW).problems
    assert len(problems) == 1
    assert "rows were deleted early" in problems[0]


def test_forged_anchor_detected(log):
    log.prune(retention=183, now=NOW)
    with sqlite3.connect(log.path) as connection:
        connection.execute(
            "UPDATE anchors SET last_row = json_set(last_row, '$.time', ?)",
            ((NOW - dt.timedelta(days=400)).isoformat(),),
        )
    problems = log.verify(now=NOW).problems
    assert any("does not match the anchor's hash" in p for p in problems)


def test_anchor_without_row_reported(log):
    log.prune(retention=183, now=NOW)
    with sqlite3.connect(log.path) as connection:
        connection.execute("UPDATE anchors SET last_row = NULL")
    problems = log.verify(now=NOW).problems
    assert any("does not keep the last deleted row" in p for p in problems)


def test_prune_listed_by_verify(log):
    log.prune(retention=183, now=NOW)
    prunes = log.verify(now=NOW).prunes
    assert len(prunes) == 1
    assert prunes[0].startswith("rows before seq 5 were pruned at 2026-06-01")


def test_retention_default(monkeypatch):
    monkeypatch.delenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", raising=False)
    assert retention_days() == 183


def test_retention_invalid(monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", "six months")
    with pytest.raises(ValueError, match="expected a whole number of days"):
        retention_days()


def test_cli_verify(log, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(log.path))
    ok = CliRunner().invoke(app, ["access-log", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "verified: 10 rows" in ok.output
    _tamper(log, "UPDATE access_log SET outcome = '403' WHERE seq = 2")
    bad = CliRunner().invoke(app, ["access-log", "verify"])
    assert bad.exit_code == 1
    assert "FAILED verification" in bad.output


def test_cli_verify_missing_log_exits(tmp_path, monkeypatch):
    missing = tmp_path / "typo.db"
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(missing))
    result = CliRunner().invoke(app, ["access-log", "verify"])
    assert result.exit_code == 2
    assert f"No access log at {missing}" in result.output
    assert not missing.exists()


@pytest.mark.parametrize("content", [b"not a database", None])
def test_cli_verify_other_file_unchanged(tmp_path, monkeypatch, content):
    other = tmp_path / "other.db"
    if content is None:
        with sqlite3.connect(other) as connection:
            connection.execute("CREATE TABLE notes (text)")
    else:
        other.write_bytes(content)
    before = other.read_bytes()
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(other))
    result = CliRunner().invoke(app, ["access-log", "verify"])
    assert result.exit_code == 2
    assert "Cannot verify" in result.output
    assert other.read_bytes() == before


def test_commands_outside_store_exit(tmp_path, monkeypatch):
    # A command run in the wrong folder must not create an empty store there.
    monkeypatch.chdir(tmp_path)
    for variable in ("AJOISSA_HOME", "AJOISSA_ACCESS_LOG", "AJOISSA_ACCESS_DB"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("AJOISSA_SCORE_STORE_URL", raising=False)
    monkeypatch.delenv("AJOISSA_UI_DB", raising=False)
    commands = [
        ["access-log", "prune"],
        ["tokens", "list"],
        ["tokens", "create", "--role", "platform"],
        ["scores", "prune", "--retention-days", "30"],
        ["reviews", "capacity", "S1", "20"],
        ["reviews", "export", "--out", "reviews.csv"],
    ]
    for command in commands:
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, command
        assert "ajoissa-store" in result.output, command
    assert list(tmp_path.iterdir()) == []
