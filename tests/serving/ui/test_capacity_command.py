"""`ajoissa reviews capacity` checks school ids by the rule for staff tokens."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from ajoissa.cli import app
from serving.ui.store import UiStore


@pytest.fixture
def ui_db(tmp_path, monkeypatch):
    path = tmp_path / "ui.db"
    monkeypatch.setenv("AJOISSA_UI_DB", str(path))
    # Without a score store the command adds no note about unscored schools.
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    monkeypatch.delenv("AJOISSA_SCORE_STORE_URL", raising=False)
    return path


def _capacities(path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM school_settings").fetchall()


@pytest.mark.parametrize(
    "school", ["X Y;<script>", "SCHOOL01/", "A//B", "line\nbreak", "S" * 101]
)
def test_invalid_school_exit_2(ui_db, school):
    result = CliRunner().invoke(app, ["reviews", "capacity", school, "20"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"invalid school id {school!r}" in lines[0]
    assert "letters, digits" in lines[0]
    assert not ui_db.exists()


def test_invalid_capacity_no_database(ui_db):
    result = CliRunner().invoke(app, ["reviews", "capacity", "AAA-2014J", "0"])
    assert result.exit_code == 2, result.output
    assert "invalid capacity 0" in result.output
    assert not ui_db.exists()


@pytest.mark.parametrize("school", ["AAA-2014J", "VOC00001/2024", "unit-north@2023/24"])
def test_valid_school_stored(ui_db, school):
    result = CliRunner().invoke(app, ["reviews", "capacity", school, "20"])
    assert result.exit_code == 0, result.output
    assert f"School {school}: 20 pupils per scoring run." in result.output
    assert _capacities(ui_db) == [(school, 20)]


def test_store_rejects_invalid_school(tmp_path):
    store = UiStore(tmp_path / "ui.db")
    with pytest.raises(ValueError, match="invalid school id 'X Y'"):
        store.set_capacity("X Y", 10)


def test_capacity_of_one_singular(ui_db):
    result = CliRunner().invoke(app, ["reviews", "capacity", "AAA-2014J", "1"])
    assert result.exit_code == 0, result.output
    assert "School AAA-2014J: 1 pupil per scoring run." in result.output
