"""Command-line checks of retrain and promote that need no training."""

import pytest
from typer.testing import CliRunner

from ajoissa.cli import app

runner = CliRunner()


def test_skip_gate_needs_reviewer():
    result = runner.invoke(
        app, ["promote", "--model-name", "m", "--skip-fairness-gate"]
    )
    assert result.exit_code == 2
    assert "--reviewer" in result.output


def test_promote_unknown_model_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["promote", "--model-name", "absent"])
    assert result.exit_code == 2
    assert (
        "Cannot promote: no registered model is named 'absent'; registered "
        "models: none" in result.output
    )
    assert "Refused to promote" not in result.output


def test_accept_label_change_needs_reviewer():
    result = runner.invoke(
        app, ["promote", "--model-name", "m", "--accept-label-change"]
    )
    assert result.exit_code == 2
    assert "--accept-label-change needs --reviewer NAME" in result.output


def test_promote_reviewer_needs_flag():
    result = runner.invoke(app, ["promote", "--model-name", "m", "--reviewer", "X"])
    assert result.exit_code == 2
    assert "--reviewer names the person who skips the fairness gate" in result.output
    assert "--accept-label-change" in result.output


def test_retrain_help_lists_options():
    result = runner.invoke(app, ["retrain", "--help"])
    assert result.exit_code == 0
    for option in ("--cutoff", "--history-days", "--label-window-days", "--k-per-unit"):
        assert option in result.output


@pytest.mark.parametrize("option", ["--history-days", "--test-window-days"])
def test_retrain_rejects_negative_days(tmp_path, option):
    result = runner.invoke(
        app,
        ["retrain", "--source", "oulad", "--out", str(tmp_path / "o"), option, "-10"],
    )
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    assert not (tmp_path / "o").exists()
