"""Command-line inputs: the as-of date of `ajoissa score` and the export folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ajoissa.cli import app
from ajoissa.score_commands import parse_as_of

MAPPINGS = Path(__file__).resolve().parents[2] / "ajoissa" / "mappings"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02-03", dt.date(2025, 2, 3)),
        ("3.2.2025", dt.date(2025, 2, 3)),
        ("03.02.2025", dt.date(2025, 2, 3)),
        (" 31.12.2024 ", dt.date(2024, 12, 31)),
    ],
)
def test_accepts_iso_and_finnish_dates(text, expected):
    assert parse_as_of(text) == expected


@pytest.mark.parametrize("text", ["2025-02-30", "31.2.2025", "2.3.25", "tomorrow", ""])
def test_rejects_other_text(text):
    assert parse_as_of(text) is None


def test_command_names_the_accepted_notations(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    result = CliRunner().invoke(
        app, ["score", "--source", "oulad", "--as-of", "3/2/2025"]
    )
    assert result.exit_code == 2
    assert "Invalid --as-of '3/2/2025'" in result.output
    assert "dd.mm.yyyy" in result.output


def test_missing_records_folder_named_once(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    missing = tmp_path / "no-export"
    result = CliRunner().invoke(
        app,
        [
            "features",
            "--source",
            "records",
            "--data",
            str(missing),
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert result.exit_code != 0
    assert str(missing) in result.output
    assert (
        "give the folder of the school platform's export with --data" in result.output
    )
    assert "not found in the export folder" not in result.output


TABLE_NEEDS_MAPPING = (
    "--source table needs --mapping FILE and takes no --data; the mapping file "
    "names the data file."
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["score", "--source", "table", "--as-of", "2024-01-01"],
            TABLE_NEEDS_MAPPING,
        ),
        (["retrain", "--source", "table", "--out", "out"], TABLE_NEEDS_MAPPING),
        (
            ["retrain", "--source", "table", "--data", "t.yaml", "--out", "out"],
            TABLE_NEEDS_MAPPING,
        ),
        (
            ["run", "--source", "records", "--out", "out"],
            "--source records needs --data: the folder of the school-records export.",
        ),
        (
            ["retrain", "--source", "oulad", "--mapping", "t.yaml", "--out", "out"],
            "--mapping applies only to --source table.",
        ),
        (
            ["retrain", "--source", "oulad", "--transfer-gap-days", "30"]
            + ["--out", "out"],
            "--transfer-gap-days applies only to sources with study-right "
            "histories (records), not to oulad.",
        ),
        (
            ["retrain", "--source", "table", "--label-window-days", "100"]
            + ["--mapping", str(MAPPINGS / "uci-student-por-a.yaml")]
            + ["--out", "out"],
            "--label-window-days does not apply to table: a mapped table's "
            "outcome has no date",
        ),
        (
            ["run", "--source", "uci-dropout", "--label-window-days", "100"]
            + ["--out", "out"],
            "--label-window-days does not apply to uci-dropout: the file has no dates",
        ),
    ],
)
def test_source_options_checked(tmp_path, monkeypatch, args, expected):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_label_options_set_rule_or_window():
    from ajoissa.catalog import SOURCES
    from ajoissa.cli import apply_label_options

    records = SOURCES["records"].run_config(None)
    apply_label_options(records, 180, 30)
    assert records.label_rule.window_days == 180
    assert records.label_rule.transfer_gap_days == 30
    assert records.label_window_days is None

    oulad = SOURCES["oulad"].run_config(SOURCES["oulad"].default_data)
    apply_label_options(oulad, 60, None)
    assert oulad.label_window_days == 60
    assert oulad.label_rule is None


def test_retrain_table_source(tmp_path, monkeypatch):
    # The table source takes its run settings from the mapping file.
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mapping = Path(__file__).parents[2] / "ajoissa" / "mappings" / "uci-dropout.yaml"
    args = ["retrain", "--source", "table", "--mapping", str(mapping)]
    args += ["--out", str(tmp_path / "out"), "--trials", "0", "--bootstrap", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Registered challenger: models:/ajoissa-table" in result.output


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--cutoff", "2014-13-01", "is not a date as YYYY-MM-DD"),
        ("--top-share", "1.5", "greater than 0 and at most 1"),
        ("--trials", "-1", "greater than or equal to 0"),
        ("--bootstrap", "0", "greater than or equal to 1"),
        ("--k-per-unit", "0", "greater than or equal to 1"),
        ("--asof-days", "-5", "must be 0 or more"),
    ],
)
def test_retrain_rejects_bad_options(tmp_path, monkeypatch, option, value, expected):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "store"))
    result = CliRunner().invoke(
        app,
        ["retrain", "--source", "oulad", "--out", str(tmp_path / "o"), option, value],
    )
    assert result.exit_code == 2
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


AJOISSA = str(Path(sys.executable).with_name("ajoissa"))
"""The installed command beside this interpreter."""


def serve_env(home: Path) -> dict[str, str]:
    """Return the environment for an ``ajoissa serve`` with its store in ``home``."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env |= {
        "AJOISSA_HOME": str(home),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    return env


def test_serve_warns_without_champion(tmp_path):
    # A real `ajoissa serve`: the warning comes before the server starts, and
    # the server then runs unready, waiting for the model.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [AJOISSA, "serve", "--model-name", "no-such-model", "--port", str(port)]
    server = subprocess.Popen(
        command,
        env=serve_env(tmp_path),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )

    # A thread reads stderr, so that waiting for a line can time out.
    lines: queue.Queue[str] = queue.Queue()

    def read_stderr() -> None:
        for line in server.stderr:
            lines.put(line)

    threading.Thread(target=read_stderr, daemon=True).start()

    warning = ""
    try:
        deadline = time.monotonic() + 60
        while not warning.startswith("Warning") and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                warning = lines.get(timeout=1)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    assert warning.startswith("Warning: no model 'no-such-model' with alias 'champion'")
    assert "starts unready" in warning


@pytest.mark.parametrize(
    ("setting", "arguments", "message"),
    [
        (
            {"AJOISSA_SCORE_STORE_RETRY_SECONDS": "0"},
            [],
            "Cannot serve: invalid AJOISSA_SCORE_STORE_RETRY_SECONDS='0'",
        ),
        (
            {"AJOISSA_RELOAD_SECONDS": "soon"},
            [],
            "Cannot serve: invalid AJOISSA_RELOAD_SECONDS='soon'",
        ),
        ({}, ["--host", "localhost"], "Cannot serve: invalid host 'localhost'"),
    ],
)
def test_serve_bad_start_one_line(tmp_path, setting, arguments, message):
    # Settings and the host are checked before a server starts, so the
    # command exits at once.
    command = [AJOISSA, "serve", "--model-name", "no-such-model", *arguments]
    result = subprocess.run(
        command,
        env=serve_env(tmp_path) | setting,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_created_store_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    monkeypatch.delenv("AJOISSA_UMASK", raising=False)
    before = os.umask(0o022)
    try:
        result = CliRunner().invoke(app, ["tokens", "create", "--role", "admin"])
    finally:
        os.umask(before)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "access.db").stat().st_mode & 0o777 == 0o600


def test_invalid_umask_named(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    monkeypatch.setenv("AJOISSA_UMASK", "9")
    result = CliRunner().invoke(app, ["tokens", "list"])
    assert result.exit_code == 2
    assert (
        "Invalid AJOISSA_UMASK '9': expected an octal file-mode mask" in result.output
    )


def test_module_run_has_all_commands():
    result = subprocess.run(
        [sys.executable, "-m", "ajoissa.cli", "review-exception", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--reviewer" in result.stdout
