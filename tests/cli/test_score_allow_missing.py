"""`ajoissa score --allow-missing` takes only the optional tables' names."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ajoissa.cli import app


@pytest.mark.parametrize("table", ["foo", "behaviour_note"])
def test_unknown_table_exit_2(tmp_path, monkeypatch, table):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "home"))
    args = ["score", "--source", "records", "--data", str(tmp_path / "none")]
    args += ["--as-of", "2025-02-03", "--allow-missing", table]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"Invalid --allow-missing {table!r}" in lines[0]
    assert "behaviour_notes" in lines[0]
    assert "grade_levels" in lines[0]
    assert not (tmp_path / "home").exists()
