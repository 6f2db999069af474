"""The hash-chained access log: appends, tamper detection, retention, CLI."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import re
import shutil
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


def test_short_prune_listed_not_failed(log):
    log.prune(retention=10, now=NOW)
    result = log.verify(now=NOW, retention=183)
    assert result.ok, result.problems
    assert len(result.short_prunes) == 1
    assert "retention of 10 days" in result.short_prunes[0]


def test_prune_checked_against_own_retention(log):
    # A prune with 183 days stays valid when the setting grows to 365 later.
    log.prune(retention=183, now=NOW)
    result = log.verify(now=NOW, retention=365)
    assert result.ok, result.problems
    assert result.short_prunes == []
    assert "retention 183 days" in result.prunes[0]


def test_early_prune_detected(log):
    # The recorded retention is raised after a prune with 10 days, as someone
    # hiding an early prune would do.
    log.prune(retention=10, now=NOW)
    with sqlite3.connect(log.path) as connection:
        connection.execute("UPDATE anchors SET retention_days = 183")
    problems = log.verify(now=NOW, retention=183).problems
    assert len(problems) == 1
    assert "less than the retention of 183 days" in problems[0]
    assert "rows were deleted early" in problems[0]


def test_invalid_recorded_retention_detected(log):
    log.prune(retention=183, now=NOW)
    with sqlite3.connect(log.path) as connection:
        connection.execute("UPDATE anchors SET retention_days = 0")
    problems = log.verify(now=NOW, retention=183).problems
    assert len(problems) == 1
    assert "recorded retention of 0 days is invalid" in problems[0]


def test_old_anchor_checked_against_setting(log, monkeypatch):
    # Anchors written before the retention was recorded have NULL there.
    log.prune(retention=183, now=NOW)
    with sqlite3.connect(log.path) as connection:
        connection.execute("UPDATE anchors SET retention_days = NULL")
    assert log.verify(now=NOW, retention=183).ok
    problems = log.verify(now=NOW, retention=365).problems
    assert len(problems) == 1
    assert "less than the retention of 365 days" in problems[0]
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", "365")
    assert not log.verify(now=NOW).ok
    assert "retention not recorded" in log.verify(now=NOW).prunes[0]


def test_old_log_gets_retention_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE anchors (id INTEGER PRIMARY KEY, pruned_at TEXT NOT NULL, "
            "first_seq INTEGER NOT NULL, prev_hash TEXT NOT NULL)"
        )
    log = AccessLog(path)
    log.append(AccessEvent(endpoint="/v1/score", outcome="200 ok"), now=NOW)
    assert log.prune(retention=1, now=NOW + dt.timedelta(days=2)) == 1
    with sqlite3.connect(path) as connection:
        stored = connection.execute("SELECT retention_days FROM anchors").fetchall()
    assert stored == [(1,)]


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
    assert prunes[0].startswith(
        "prune anchor 1: rows before seq 5 were pruned at 2026-06-01"
    )


def test_retention_default(monkeypatch):
    monkeypatch.delenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", raising=False)
    assert retention_days() == 183


@pytest.mark.parametrize("value", ["six months", "0", "36526", "9" * 20])
def test_retention_invalid(monkeypatch, value):
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", value)
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


@pytest.fixture
def recent_log(tmp_path, monkeypatch) -> AccessLog:
    """A log with one row a day for the last 300 days, set as AJOISSA_ACCESS_LOG."""
    log = AccessLog(tmp_path / "recent-log.db")
    now = dt.datetime.now(dt.UTC)
    for age in range(300, 0, -1):
        event = AccessEvent(endpoint="/v1/score", outcome="200 ok", token_id="t1")
        log.append(event, now=now - dt.timedelta(days=age) + dt.timedelta(hours=1))
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(log.path))
    monkeypatch.delenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", raising=False)
    return log


@pytest.mark.parametrize("pruned", [False, True])
def test_cli_verify_invalid_retention_exits(recent_log, monkeypatch, pruned):
    if pruned:
        recent_log.prune(retention=183)
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", "abc")
    result = CliRunner().invoke(app, ["access-log", "verify"])
    assert result.exit_code == 2, result.output
    assert "Cannot verify: invalid AJOISSA_ACCESS_LOG_RETENTION_DAYS='abc'" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_cli_verify_after_longer_setting(recent_log, monkeypatch):
    recent_log.prune(retention=183)
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", "365")
    result = CliRunner().invoke(app, ["access-log", "verify"])
    assert result.exit_code == 0, result.output
    assert "retention 183 days" in result.output
    assert "verified: 183 rows" in result.output


def test_cli_prune_default_retention(recent_log):
    result = CliRunner().invoke(app, ["access-log", "prune"])
    assert result.exit_code == 0, result.output
    assert "Will delete 117 access-log row(s) older than 183 days" in result.output
    assert "Pruned 117 access-log rows." in result.output
    assert len(recent_log.rows()) == 183


def test_cli_short_prune_needs_yes(recent_log):
    result = CliRunner().invoke(app, ["access-log", "prune", "--retention-days", "50"])
    assert result.exit_code == 2, result.output
    assert "Will delete 250 access-log row(s) older than 50 days" in result.output
    assert "shorter than the default of 183 days" in result.output
    assert "Pass --yes to prune; nothing was deleted." in result.output
    assert len(recent_log.rows()) == 300

    confirmed = CliRunner().invoke(
        app, ["access-log", "prune", "--retention-days", "50", "--yes"]
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert "Pruned 250 access-log rows." in confirmed.output
    assert len(recent_log.rows()) == 50


@pytest.mark.parametrize(("answer", "kept"), [("n\n", 300), ("y\n", 50)])
def test_cli_short_prune_confirmation(recent_log, monkeypatch, answer, kept):
    monkeypatch.setattr("ajoissa.access_commands._stdin_is_terminal", lambda: True)
    result = CliRunner().invoke(
        app, ["access-log", "prune", "--retention-days", "50"], input=answer
    )
    assert "Delete these rows?" in result.output
    assert result.exit_code == (0 if kept == 50 else 1), result.output
    assert len(recent_log.rows()) == kept


@pytest.mark.parametrize("value", ["36526", "9" * 20])
def test_cli_prune_too_long_retention_option_exits(recent_log, value):
    result = CliRunner().invoke(app, ["access-log", "prune", "--retention-days", value])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(recent_log.rows()) == 300


def test_cli_prune_invalid_retention_exits(recent_log, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_LOG_RETENTION_DAYS", "abc")
    result = CliRunner().invoke(app, ["access-log", "prune"])
    assert result.exit_code == 2, result.output
    assert "Cannot prune: invalid AJOISSA_ACCESS_LOG_RETENTION_DAYS" in result.output
    assert len(recent_log.rows()) == 300


def test_cli_verify_copy_without_wal(tmp_path, monkeypatch):
    path = tmp_path / "live.db"
    AccessLog(path)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # The appending connection stays open, so its rows stay in the -wal file.
    live = AccessLog(path)
    live.append(AccessEvent(endpoint="/v1/score", outcome="200 1 record(s)"))
    copy = tmp_path / "copy.db"
    shutil.copyfile(live.path, copy)
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(copy))
    result = CliRunner().invoke(app, ["access-log", "verify"])
    live.close()
    assert result.exit_code == 0, result.output
    assert "verified: 0 rows" in result.output
    assert "The access log is empty" in result.output
    assert 'sqlite3 copy.db ".backup COPY"' in result.output


def test_cli_verify_rows_no_empty_note(log, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(log.path))
    result = CliRunner().invoke(app, ["access-log", "verify"])
    assert result.exit_code == 0, result.output
    assert "The access log is empty" not in result.output


def _show(log, monkeypatch, *options: str) -> tuple[list[dict[str, str]], str]:
    """Run ``access-log show`` and return its tab-separated rows and its output."""
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(log.path))
    result = CliRunner().invoke(app, ["access-log", "show", *options])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]], (
        result.output
    )


def test_cli_show_newest_first(log, monkeypatch):
    rows, _ = _show(log, monkeypatch)
    assert [row["pupil"] for row in rows] == [f"pupil{day}" for day in range(9, -1, -1)]
    assert rows[0]["token"] == "token0"
    assert rows[0]["school"] == "AAA_2014J"
    assert rows[0]["model version"] == "3"
    assert rows[0]["endpoint"] == "/v1/pupils/{id}/explanation"
    assert rows[0]["outcome"] == "200 ok"


def test_cli_show_filters(log, monkeypatch):
    by_token, _ = _show(log, monkeypatch, "--token", "token1")
    by_pupil, _ = _show(log, monkeypatch, "--pupil", "pupil3")
    since = (NOW - dt.timedelta(days=60)).date().isoformat()
    recent, _ = _show(log, monkeypatch, "--since", since)
    both, _ = _show(log, monkeypatch, "--token", "token1", "--pupil", "pupil3")
    assert [row["pupil"] for row in by_token] == ["pupil7", "pupil4", "pupil1"]
    assert [row["pupil"] for row in by_pupil] == ["pupil3"]
    # The two earlier runs of show are recorded after the rows they printed.
    assert [row["pupil"] for row in recent] == ["pupil3", "", "pupil9", "pupil8"]
    assert both == []


def test_cli_show_limit_noted(log, monkeypatch):
    rows, output = _show(log, monkeypatch, "--limit", "2")
    assert [row["pupil"] for row in rows] == ["pupil9", "pupil8"]
    assert "pass --limit for more" in output


def test_cli_show_help_names_audit():
    result = CliRunner().invoke(app, ["access-log", "show", "--help"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "data protection officer" in text
    assert "pupil ids on purpose" in text


def test_cli_show_recorded_in_log(log, monkeypatch):
    since = (NOW - dt.timedelta(days=60)).date()
    rows, _ = _show(
        log,
        monkeypatch,
        *("--pupil", "pupil3", "--token", "token1", "--since", since.isoformat()),
        *("--limit", "5"),
    )
    recorded = log.rows()[-1]
    assert rows == []
    assert recorded["seq"] == 11
    assert recorded["endpoint"] == (
        f"ajoissa access-log show --pupil {{id}} --token token1 --since {since} "
        "--limit 5"
    )
    assert recorded["outcome"] == "shown 0 rows"
    assert recorded["token_id"] == pwd.getpwuid(os.geteuid()).pw_name
    assert recorded["role"] == "os-user"
    assert recorded["pupil_id"] == "pupil3"
    assert recorded["school_id"] is None


def test_cli_show_rows_verify(log, monkeypatch):
    _show(log, monkeypatch)
    _show(log, monkeypatch, "--token", "two words; rm")
    result = CliRunner().invoke(app, ["access-log", "verify"])
    recorded = log.rows()[-2:]
    assert result.exit_code == 0, result.output
    assert "verified: 12 rows" in result.output
    assert recorded[0]["endpoint"] == "ajoissa access-log show --limit 50"
    assert recorded[0]["outcome"] == "shown 10 rows"
    assert recorded[1]["endpoint"] == (
        "ajoissa access-log show --token 'two words; rm' --limit 50"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_cli_show_unwritable_log_exits(log, monkeypatch):
    log.close()
    log.path.chmod(0o444)
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(log.path))
    result = CliRunner().invoke(app, ["access-log", "show"])
    assert result.exit_code == 2
    assert "recording this read" in result.output
    assert "pupil9" not in result.stdout


def test_id_limit_one_constant():
    from serving import accesslog, api_models

    limit = api_models.MAX_PUPIL_ID_CHARS
    assert accesslog.MAX_ID_CHARS == limit
    assert re.fullmatch(api_models.PUPIL_ID_PATTERN, "x" * limit)
    assert not re.fullmatch(api_models.PUPIL_ID_PATTERN, "x" * (limit + 1))
