"""Synthetic records through ``ajoissa synth`` and ``ajoissa run --source records``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

AJOISSA = str(Path(sys.executable).with_name("ajoissa"))

pytestmark = pytest.mark.e2e


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env | {
        "AJOISSA_HOME": str(home),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
    }


def _ajoissa(*args: str, home: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [AJOISSA, *args], env=_env(home), capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("records")
    data, out, home = base / "data", base / "out", base / "home"
    _ajoissa(
        "synth",
        "--pupils",
        "800",
        "--years",
        "3",
        "--seed",
        "5",
        "--lessons-per-day",
        "1",
        "--out",
        str(data),
        home=home,
    )
    run = _ajoissa(
        "run",
        "--source",
        "records",
        "--data",
        str(data),
        "--out",
        str(out),
        "--label-window-days",
        "183",
        home=home,
    )
    result = json.loads((out / "summary.json").read_text())
    result["data"], result["home"] = str(data), str(home)
    result["stdout"] = run.stdout
    return result


def test_records_asof_dates(summary):
    assert set(summary["metrics"]) == {"oct_1", "dec_1", "feb_1"}
    assert summary["rows"]["asof_without_evaluation_rows"] == []


def test_records_split_by_school_year(summary):
    # The export's school years are 2022 to 2024. The labels of 2024 are not
    # known by the data end, so 2023 is the latest year with labelled rows.
    assert summary["validation"]["cutoff"] == "2023-08-01"
    assert summary["validation"]["test_cohorts"] == ["2023"]
    assert summary["validation"]["train_cohorts"] == ["2022"]


def test_records_windows_end_before_data_end(summary):
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records

    tables = to_input_tables(read_records(Path(summary["data"])))
    last_record = max(
        tables.study_right_states["state_from"].max(),
        tables.attendance["date"].max(),
        tables.assessments["submitted_date"].max(),
    )
    assert summary["rows"]["data_end"] == str(last_record.date())
    horizon = pd.Timedelta(days=183 + 120)
    with open(summary["reason_codes"], encoding="utf-8") as lines:
        asof = pd.to_datetime([json.loads(line)["asof_date"] for line in lines])
    assert len(asof) == summary["rows"]["evaluation_rows"]
    assert (asof + horizon <= last_record).all()


def test_records_reports_rows_left_out(summary):
    left_out = summary["rows"]["left_out_label_window_past_data_end"]
    assert left_out > 0
    assert f"Left out {left_out:,} feature rows" in summary["stdout"]
    card = Path(summary["model_card"]).read_text(encoding="utf-8")
    assert f"Left out: {left_out} feature rows" in card


def test_records_learner_features(summary):
    assert "absence_streak_year" in summary["features"]
    assert "grade_change_term" in summary["features"]


def test_records_model_registered(summary):
    assert summary["model_name"] == "ajoissa-records"


@pytest.fixture(scope="module")
def scored(summary: dict) -> subprocess.CompletedProcess:
    return _ajoissa(
        "score",
        "--source",
        "records",
        "--data",
        summary["data"],
        "--as-of",
        "2025-02-03",
        "--model-name",
        "ajoissa-records",
        home=Path(summary["home"]),
    )


def test_records_model_scores_asof(summary, scored):
    # The model reads learner features, which scheduled scoring must build too.
    assert "ajoissa-records" in scored.stdout
    assert (Path(summary["home"]) / "scores.db").exists()


def test_records_scores_keyed_by_school(summary, scored):
    # Staff tokens name schools, so a score's school must not change each year.
    import sqlite3

    schools = set(
        pd.read_parquet(Path(summary["data"]) / "schools.parquet")["school_id"]
    )
    with sqlite3.connect(Path(summary["home"]) / "scores.db") as db:
        rows = pd.read_sql("SELECT school_id, school_rank, school_size FROM scores", db)
    assert len(rows) > 0
    assert set(rows["school_id"]) <= schools
    for school, group in rows.groupby("school_id"):
        assert sorted(group["school_rank"]) == list(range(1, len(group) + 1)), school
        assert (group["school_size"] == len(group)).all(), school


def test_synth_rejects_bad_format(tmp_path):
    result = subprocess.run(
        [
            AJOISSA,
            "synth",
            "--pupils",
            "5",
            "--format",
            "xlsx",
            "--out",
            str(tmp_path / "x"),
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Invalid value for '--format'" in result.stderr
    assert "'xlsx' is not one of" in result.stderr


def test_records_purge_covers_transfer_gap(summary):
    # The run uses the default 120-day transfer gap after its 183-day window.
    assert summary["validation"]["label_known_after_days"] == 183 + 120


def test_records_label_definition(summary):
    definition = summary["label_definition"]
    assert "within 183 days after the as-of date" in definition
    assert "considered resigned" in definition
    assert "withdrawing" not in definition


def test_records_audit_rows_match_the_run(summary, monkeypatch):
    """The version audit rebuilds the run's own test rows and labels."""
    from fairness.registry import load_audit
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records
    from training.version_audit import evaluation_rows, load_version

    monkeypatch.setenv("AJOISSA_HOME", summary["home"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    version = load_version(summary["model_name"], summary["model_version"])
    tables = to_input_tables(read_records(Path(summary["data"])))
    rows = evaluation_rows(tables, version)
    stored, _ = load_audit(summary["model_name"], summary["model_version"])
    assert len(rows.data) == stored["data"]["rows"]
    assert rows.y.mean() == pytest.approx(stored["data"]["label_rate"])
    assert "drops out within 183 days" in stored["data"]["label"]
    left_out = summary["rows"]["left_out_label_window_past_data_end"]
    assert left_out > 0
    assert rows.notes == (
        f"{left_out} feature rows were left out because their label window, plus "
        "the transfer gap in which a new study right can still start, runs past "
        f"the data end {summary['rows']['data_end']}, so their labels are not "
        "known yet.",
    )


def test_records_audit_age_and_support(summary, monkeypatch):
    """Age band and support status are audited at each as-of date."""
    from fairness.registry import load_audit

    monkeypatch.setenv("AJOISSA_HOME", summary["home"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stored, _ = load_audit(summary["model_name"], summary["model_version"])
    audited = stored["audit"]["attributes"]
    assert "age_band" in audited
    assert "support_status" in audited
    assert "age_band" not in stored["audit"]["absent_attributes"]
    assert set(stored["derived_attributes"]) == {"age_band", "support_status"}
    report = Path(summary["fairness_report"]).read_text()
    assert "The age_band groups are not a learner column" in report
    assert "16 to 17" in report or "13 to 15" in report


def test_records_features_within_api_ranges(summary, monkeypatch):
    """Every built feature value passes the scoring API's range check."""
    from features.bounds import feature_ranges
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records
    from training.version_audit import evaluation_rows, load_version

    monkeypatch.setenv("AJOISSA_HOME", summary["home"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    version = load_version(summary["model_name"], summary["model_version"])
    tables = to_input_tables(read_records(Path(summary["data"])))
    data = evaluation_rows(tables, version).data
    ranges = feature_ranges()
    checked = [name for name in summary["features"] if name in ranges]
    assert {"attr_grade_level", "attr_support_level", "age_years"} <= set(checked)
    for name in checked:
        values = data[name].dropna().astype(float)
        outside = values[[not ranges[name].contains(v) for v in values]]
        assert outside.empty, f"{name}: {outside.head().tolist()}"


def _export_without(summary: dict, table: str, folder: Path) -> Path:
    """Copy the synthetic export into ``folder`` without ``table``'s file."""
    import shutil

    shutil.copytree(summary["data"], folder)
    (folder / f"{table}.parquet").unlink()
    return folder


def _stored_runs(home: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(home / "scores.db") as db:
        return db.execute(
            "SELECT run_id, COUNT(*) FROM scores GROUP BY run_id ORDER BY run_id"
        ).fetchall()


def test_score_rejects_missing_optional_table(summary, scored, tmp_path):
    assert "attr_behaviour_notes" in summary["features"]
    home = Path(summary["home"])
    data = _export_without(summary, "behaviour_notes", tmp_path / "copy")
    before = _stored_runs(home)
    args = ["score", "--source", "records", "--data", str(data)]
    args += ["--as-of", "2025-02-03", "--model-name", "ajoissa-records"]
    result = subprocess.run(
        [AJOISSA, *args], env=_env(home), capture_output=True, text=True, timeout=900
    )
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "- behaviour_notes: no behaviour_notes.csv" in message
    assert "the features attr_behaviour_notes," in message
    assert "pass --allow-missing behaviour_notes" in message
    assert "Nothing was stored." in message
    assert _stored_runs(home) == before


def test_score_allows_named_missing_table(summary, scored, tmp_path):
    home = Path(summary["home"])
    data = _export_without(summary, "behaviour_notes", tmp_path / "copy")
    allowed = _ajoissa(
        "score",
        "--source",
        "records",
        "--data",
        str(data),
        "--as-of",
        "2025-02-03",
        "--model-name",
        "ajoissa-records",
        "--allow-missing",
        "behaviour_notes",
        home=home,
    )
    warning = " ".join(allowed.stderr.split())
    assert "Warning: the data has no behaviour_notes table" in warning
    assert "attr_behaviour_notes" in warning


def test_run_names_absent_optional_table(tmp_path):
    data, out, home = tmp_path / "data", tmp_path / "out", tmp_path / "home"
    _ajoissa(
        "synth",
        "--pupils",
        "300",
        "--years",
        "3",
        "--seed",
        "2",
        "--lessons-per-day",
        "1",
        "--out",
        str(data),
        home=home,
    )
    (data / "behaviour_notes.parquet").unlink()
    run = _ajoissa(
        "run",
        "--source",
        "records",
        "--data",
        str(data),
        "--out",
        str(out),
        "--label-window-days",
        "183",
        home=home,
    )
    output = " ".join(run.stdout.split())
    assert "Note: the data has no behaviour_notes table" in output
    assert "(attr_behaviour_notes)" in output
    result = json.loads((out / "summary.json").read_text())
    assert result["absent_tables"] == {"behaviour_notes": ["attr_behaviour_notes"]}


def test_optional_tables_feed_model_features(summary):
    from sources.school.mapping import OPTIONAL_TABLE_FEATURES
    from sources.school.tables import TABLES

    optional = {name for name, spec in TABLES.items() if spec.optional}
    assert set(OPTIONAL_TABLE_FEATURES) == optional
    for features in OPTIONAL_TABLE_FEATURES.values():
        assert set(features) <= set(summary["features"])
