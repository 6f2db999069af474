"""The main job on mapped tables: the command line, temporal splits, and the
UCI dropout mapping against the dedicated ``uci-dropout`` source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ajoissa.catalog import SOURCES
from ajoissa.cli import app
from features.build import asof_points_by_offset, build_features
from sources.table import read_mapped_table
from sources.table_inspect import inspect_mapped_table
from training.run import run_main_job
from training.split import predict_stratified

REPO_ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = REPO_ROOT / "ajoissa" / "mappings"
UCI_DROPOUT = REPO_ROOT / "ajoissa" / "data" / "uci-dropout-academic-success"


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "store"
    monkeypatch.setenv("AJOISSA_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return home


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def dropout_frames():
    """Feature frames of the dedicated UCI dropout source and of its mapping."""
    frames = []
    for name, path in (
        ("uci-dropout", UCI_DROPOUT),
        ("table", MAPPINGS / "uci-dropout.yaml"),
    ):
        entry = SOURCES[name]
        tables = entry.load(path).validated()
        config = entry.run_config(path)
        points = asof_points_by_offset(tables.units, config.asof_offsets_days)
        frames.append(build_features(tables, points))
    return frames


def test_dropout_mapping_same_features():
    dedicated, mapped = dropout_frames()
    assert len(dedicated.feature_names) == len(mapped.feature_names)
    assert (dedicated.y == mapped.y).all()
    for left, right in zip(dedicated.feature_names, mapped.feature_names, strict=True):
        a, b = dedicated.data[left], mapped.data[right]
        if isinstance(a.dtype, pd.CategoricalDtype):
            assert list(a.cat.categories) == list(b.cat.categories), left
            assert (a.cat.codes.to_numpy() == b.cat.codes.to_numpy()).all(), left
        else:
            assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True), left


def test_dropout_mapping_same_order():
    dedicated, mapped = dropout_frames()
    left = dedicated.data["learner_id"].str.removeprefix("uci-")
    right = mapped.data["learner_id"].str.removeprefix("row-")
    assert (left.to_numpy() == right.to_numpy()).all()


def test_dropout_mapping_same_config():
    dedicated = SOURCES["uci-dropout"].run_config(UCI_DROPOUT)
    mapped = SOURCES["table"].run_config(MAPPINGS / "uci-dropout.yaml")
    assert (mapped.validation, mapped.folds, mapped.seed) == (
        dedicated.validation,
        dedicated.folds,
        dedicated.seed,
    )
    assert mapped.asof_offsets_days == dedicated.asof_offsets_days
    assert mapped.sensitive_features == ["gender", "age_band", "disability"]


def dropout_subset(tmp_path: Path, rows: int) -> tuple[Path, Path]:
    """Write the first ``rows`` rows of the UCI dropout file and a mapping for them."""
    lines = (UCI_DROPOUT / "data.csv").read_bytes().splitlines(keepends=True)
    data = tmp_path / "data.csv"
    data.write_bytes(b"".join(lines[: rows + 1]))
    mapping = yaml.safe_load(
        (MAPPINGS / "uci-dropout.yaml").read_text(encoding="utf-8")
    )
    mapping["file"]["path"] = str(data)
    path = tmp_path / "uci-dropout.yaml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    return data, path


@pytest.mark.e2e
def test_dropout_mapping_same_scores(tmp_path):
    # Equal out-of-fold scores of all three models give equal metrics. The
    # first 400 rows keep the test short; on the whole file the two main-job
    # summaries have equal metrics too, but each run takes minutes.
    data, mapping = dropout_subset(tmp_path, rows=400)
    predictions = []
    for name, path in (("uci-dropout", data), ("table", mapping)):
        entry = SOURCES[name]
        config = entry.run_config(path)
        tables = entry.load(path).validated()
        points = asof_points_by_offset(tables.units, config.asof_offsets_days)
        frame = build_features(tables, points)
        predictions.append(
            predict_stratified(frame, folds=config.folds, seed=config.seed)
        )
    dedicated, mapped = predictions
    for model in ("model", "rule", "logistic"):
        assert np.array_equal(dedicated.scores[model], mapped.scores[model]), model
    assert mapped.details == dedicated.details


@pytest.mark.e2e
def test_cli_student_mapping(tmp_path, store):
    out = tmp_path / "out"
    mapping = MAPPINGS / "uci-student-mat-c.yaml"
    result = invoke(
        "run", "--source", "table", "--mapping", str(mapping), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] == "table"
    assert summary["validation"]["kind"] == "stratified"
    assert summary["model_name"] == "ajoissa-table-uci-student-mat-c"
    assert summary["source_details"]["outcome"] == "adverse when G3 < 10"
    assert summary["label_settings"] == {
        "source": "table",
        "label_window_days": None,
        "outcome": "adverse when G3 < 10",
    }
    assert summary["metrics"]["snapshot"]["model"]["roc_auc"] > 0.5
    assert "attr_g1" not in summary["features"]
    assert "attr_sex" not in summary["features"]
    assert "ranks no one" in summary["baselines_not_applicable"]["rule"]
    assert "Baseline rule: not applicable" in " ".join(result.output.split())
    comparison = summary["fairness_against_reference"]["address"]
    assert comparison["reference"] == "urban"
    assert set(comparison["groups"]) == {"rural"}
    report = Path(summary["fairness_report"]).read_text()
    assert "age_band" in report


def periods_case(tmp_path: Path) -> Path:
    """Write a synthetic table over three school years and its mapping."""
    rng = np.random.default_rng(3)
    rows = 180
    absences = rng.integers(0, 40, rows)
    table = pd.DataFrame(
        {
            # Ten pupils of 2023 have rows in 2024 too.
            "pupil": [f"p{i:03d}" for i in range(120)]
            + [f"p{i:03d}" for i in range(110, 170)],
            "year": np.repeat([2022, 2023, 2024], 60),
            "school": rng.choice(["north", "south"], rows),
            "gender": rng.choice(["girl", "boy"], rows),
            "absences": absences,
            "left": np.where(absences + rng.integers(0, 20, rows) > 40, "yes", "no"),
        }
    )
    table.to_csv(tmp_path / "pupils.csv", index=False)
    mapping = {
        "name": "synthetic-years",
        "file": {"path": "pupils.csv"},
        "id_column": "pupil",
        "group_column": "school",
        "period": {"column": "year", "kind": "year"},
        "outcome": {"column": "left", "adverse_values": ["yes"]},
        "sensitive": [{"column": "gender", "reference": "girl"}],
        "min_group_size": 5,
    }
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    return path


@pytest.mark.e2e
def test_period_runs_temporal(tmp_path, store):
    path = periods_case(tmp_path)
    entry = SOURCES["table"]
    summary = run_main_job(entry.load(path), entry.run_config(path), tmp_path / "out")
    validation = summary["validation"]
    assert validation["kind"] == "temporal"
    assert validation["cutoff"] == "2024-01-01"
    assert validation["train_cohorts"] == ["2022", "2023"]
    assert validation["test_cohorts"] == ["2024"]
    assert validation["test_rows_dropped_learner_in_training"] == 10
    assert validation["test_rows"] == 50


def test_period_overlap_warning(tmp_path):
    report = inspect_mapped_table(read_mapped_table(periods_case(tmp_path)))
    assert any("10 of 60 rows in the test periods" in w for w in report.warnings)


def test_cli_table_needs_mapping(tmp_path):
    result = invoke("run", "--source", "table", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "needs --mapping" in result.output


def test_cli_mapping_only_table(tmp_path):
    mapping = MAPPINGS / "uci-dropout.yaml"
    result = invoke(
        "run", "--source", "oulad", "--mapping", str(mapping), "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert "applies only to --source table" in result.output


def test_cli_bad_mapping_key(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("name: x\nfile: {path: a.csv}\noutcome: {rule: G3 below 10}\n")
    result = invoke(
        "run", "--source", "table", "--mapping", str(path), "--out", str(tmp_path)
    )
    assert result.exit_code == 2
    assert "key 'outcome'" in result.output
    assert not (tmp_path / "summary.json").exists()


def test_cli_inspect_excel_format_on_csv(tmp_path):
    (tmp_path / "pupils.csv").write_text("id;school;out\na1;k;yes\n", "utf-8")
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "name: pilot\n"
        "file: {path: pupils.csv, format: excel}\n"
        "id_column: id\n"
        "group_column: school\n"
        "outcome: {column: out, adverse_values: ['yes']}\n"
    )
    result = invoke("inspect", "--mapping", str(path))
    assert result.exit_code == 2
    assert "pupils.csv" in result.output
    assert "could not be read as excel" in result.output


def test_cli_inspect(tmp_path):
    result = invoke("inspect", "--mapping", str(MAPPINGS / "uci-student-por-a.yaml"))
    assert result.exit_code == 0, result.output
    assert "Rows: 649" in result.output
    assert "100 rows adverse (15.4%)" in result.output
    assert "'G2' alone separates" in result.output
