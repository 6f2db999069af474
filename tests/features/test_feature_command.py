"""The ``ajoissa features`` command on DuckDB, and its input checks."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ajoissa.cli import app
from sources.school.synth import SynthConfig, generate


def test_command_writes_features(tmp_path):
    export = tmp_path / "export"
    # The labels of the last school year are not known yet, so one year
    # would give no rows.
    generate(SynthConfig(pupils=30, years=2, seed=2, lessons_per_day=1), export)
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(
        app, ["features", "--data", str(export), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "plus the transfer gap" in result.output
    assert "runs past the data end" in result.output
    frame = pd.read_parquet(out)
    assert len(frame) > 0
    assert frame["age_for_grade_months"].notna().all()


def test_label_options_change_labels(tmp_path):
    export = tmp_path / "export"
    generate(SynthConfig(pupils=300, years=3, seed=4, lessons_per_day=1), export)
    labels = {}
    for name, options in {
        "default": [],
        "short window": ["--label-window-days", "60"],
        "short gap": ["--transfer-gap-days", "0", "--label-window-days", "60"],
    }.items():
        out = tmp_path / f"{len(labels)}.parquet"
        result = CliRunner().invoke(
            app, ["features", "--data", str(export), "--out", str(out), *options]
        )
        assert result.exit_code == 0, result.output
        frame = pd.read_parquet(out).set_index(["learner_id", "asof_date"])
        labels[name] = frame["withdraws_after"]
    default, short = labels["default"], labels["short window"]
    # A shorter window labels fewer rows but makes more rows' labels known.
    common = default.index.intersection(short.index)
    assert (short[common] <= default[common]).all()
    assert short[common].sum() < default[common].sum()
    # Without a gap, every ended right with no new right the next day counts.
    gap = labels["short gap"]
    common = gap.index.intersection(short.index)
    assert (gap[common] >= short[common]).all()
    assert gap[common].sum() > short[common].sum()


def test_bad_export_exits_2(tmp_path):
    export = tmp_path / "export"
    generate(SynthConfig(pupils=5, years=1, seed=2, lessons_per_day=1), export)
    (export / "pupils.parquet").unlink()
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(
        app, ["features", "--data", str(export), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.startswith("Input data error: ")
    assert "pupils.csv or pupils.parquet not found" in result.output
    assert not out.exists()


def test_unknown_engine_rejected(tmp_path):
    result = CliRunner().invoke(
        app, ["features", "--engine", "polars", "--out", str(tmp_path / "f.parquet")]
    )
    assert result.exit_code == 2
    assert "Invalid --engine 'polars'" in result.output


def test_spark_without_learner_features(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "features",
            "--source",
            "oulad",
            "--engine",
            "spark",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert result.exit_code == 2
    assert "no declarative learner features" in result.output


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("folder", "it is a folder"),
        ("file.txt/f.parquet", "is not a folder"),
        ("features.csv", "must end in .parquet"),
    ],
)
def test_bad_out_rejected_before_build(tmp_path, name, expected):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("keep", encoding="utf-8")
    out = tmp_path / name
    result = CliRunner().invoke(
        app, ["features", "--source", "oulad", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert f"Invalid --out {out}" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]


def test_missing_out_folder_created(tmp_path):
    out = tmp_path / "new" / "deeper" / "f.parquet"
    result = CliRunner().invoke(
        app, ["features", "--source", "oulad", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_unwritable_out_folder_rejected():
    result = CliRunner().invoke(
        app, ["features", "--source", "oulad", "--out", "/proc/nope.parquet"]
    )
    assert result.exit_code == 2
    assert "cannot create a file in the folder /proc" in result.output
