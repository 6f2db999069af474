"""Challenger registration, guarded promotion, and concurrent retrains on SQLite."""

import importlib.machinery
import json
import os
import sqlite3
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import make_tables
from typer.testing import CliRunner

from ajoissa.cli import app
from models.store import configure_mlflow
from training.promotion import NothingToPromoteError, compare, promote, retrain
from training.run import RunConfig, run_main_job

MODEL = "synthetic-model"
TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parents[1]
runner = CliRunner()


def _config(**changes):
    base = dict(
        source="synthetic",
        asof_offsets_days=[30, 60, 90],
        asof_labels={},
        validation="temporal",
        temporal_cutoff="2022-06-01",
        earlier_cutoffs=["2021-12-01"],
        tuning_trials=0,
        bootstrap_resamples=20,
        model_name=MODEL,
    )
    return RunConfig(**(base | changes))


@dataclass
class GateDecision:
    """The fields of fairness.gate.GateDecision that promotion reads."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exception: object = None
    audit_sha256: str | None = None
    policy_version: str | None = None
    audit_policy_version: str | None = None


def _install_gate(monkeypatch, passed, reasons=(), warnings=()):
    name = "fairness.gate_for_tests"
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.check_gate = lambda model_name, version: GateDecision(
        passed,
        list(reasons) + [f"warning: {text}" for text in warnings],
        warnings=list(warnings),
    )
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr("training.promotion.FAIRNESS_GATE_MODULE", name)


def _stratified_config(model_name: str) -> RunConfig:
    return _config(
        validation="stratified",
        temporal_cutoff=None,
        earlier_cutoffs=[],
        asof_offsets_days=[60],
        folds=3,
        bootstrap_resamples=10,
        model_name=model_name,
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path


@pytest.fixture(scope="module")
def tables():
    return make_tables(interaction=True, seed=3)


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tables):
    """One challenger in a store shared by the tests that only read it."""
    base = tmp_path_factory.mktemp("registered")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AJOISSA_HOME", str(base / "home"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        summary = retrain(tables, _config(), base / "out")
        yield summary, patch


def test_compare_requires_strict_win():
    figures = {
        "model": {"roc_auc": 0.8, "precision_at_k_share": 0.5},
        "logistic": {"roc_auc": 0.7, "precision_at_k_share": 0.5},
    }
    assert compare(figures) == [
        "precision_at_k_share: challenger 0.5000 does not beat logistic 0.5000"
    ]


def test_compare_accepts_clear_win():
    figures = {
        "model": {"roc_auc": 0.8, "precision_at_k_share": 0.6},
        "rule": {"roc_auc": 0.6, "precision_at_k_share": None},
    }
    assert compare(figures) == []


def test_promote_unknown_model(store):
    with pytest.raises(NothingToPromoteError) as raised:
        promote("nothing-here")
    assert str(raised.value) == (
        "no registered model is named 'nothing-here'; registered models: none"
    )

    result = runner.invoke(app, ["promote", "--model-name", "nothing-here"])
    assert result.exit_code == 2, result.output
    assert "Cannot promote: no registered model is named 'nothing-here'" in (
        result.output
    )
    assert "Refused" not in result.output


def test_promote_without_challenger(store):
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow()
    mlflow.MlflowClient().create_registered_model("no-challenger")
    with pytest.raises(NothingToPromoteError) as raised:
        promote("no-challenger")
    assert str(raised.value) == (
        "no 'challenger' version of no-challenger; run `ajoissa retrain` first"
    )

    result = runner.invoke(app, ["promote", "--model-name", "no-challenger"])
    assert result.exit_code == 2, result.output
    assert "Cannot promote: no 'challenger' version of no-challenger" in result.output
    assert "Refused" not in result.output


def test_missing_gate_refuses(registered, monkeypatch):
    monkeypatch.setattr("training.promotion.FAIRNESS_GATE_MODULE", "fairness.no_gate")
    decision = promote(MODEL)
    assert not decision.promoted
    assert any(r.startswith("fairness gate not evaluated") for r in decision.reasons)


def test_failed_gate_refuses(registered, monkeypatch):
    _install_gate(monkeypatch, passed=False, reasons=["recall gap 0.2 by gender"])
    decision = promote(MODEL)
    assert "fairness gate: recall gap 0.2 by gender" in decision.reasons


def test_gate_warnings_listed_apart(registered, monkeypatch):
    _install_gate(
        monkeypatch,
        passed=False,
        reasons=["breach: recall gap 0.2 by gender"],
        warnings=["gender = x against y: recall not assessed"],
    )
    decision = promote(MODEL)
    assert decision.warnings == [
        "fairness gate: gender = x against y: recall not assessed"
    ]
    assert not any("not assessed" in reason for reason in decision.reasons)

    result = runner.invoke(app, ["promote", "--model-name", MODEL])
    assert result.exit_code == 1
    assert "Warning: fairness gate: gender = x against y" in result.output
    assert "- fairness gate: breach: recall gap 0.2 by gender" in result.output
    assert "- fairness gate: warning" not in result.output


def test_promotion_cycle(store, tables, monkeypatch):
    import mlflow

    _install_gate(monkeypatch, passed=True)
    first = retrain(tables, _config(), store / "first")
    assert first["compared_champion_version"] is None
    decision = promote(MODEL)
    assert decision.reasons == []
    assert decision.promoted
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    second = retrain(tables, _config(), store / "second")
    assert second["compared_champion_version"] == "1"
    assert "champion" in second["evaluation"]["promotion"]
    written = json.loads((store / "second" / "summary.json").read_text())
    assert written["compared_champion_version"] == "1"
    assert written["label_change"] is None
    again = promote(MODEL)
    assert not again.promoted
    assert any("does not beat champion" in r for r in again.reasons)
    assert "label settings match champion version 1" in again.notes
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"


def test_changed_challenger_not_promoted(store, tables, monkeypatch):
    import mlflow

    _install_gate(monkeypatch, passed=True)
    summary = retrain(tables, _config(), store / "out")
    version = summary["model_version"]
    client = mlflow.MlflowClient()
    uri = client.get_model_version_download_uri(MODEL, version)
    model_file = Path(uri.removeprefix("file://")) / "model.skops"
    original = model_file.read_bytes()
    changed = bytes([original[0] ^ 1]) + original[1:]
    model_file.write_bytes(changed)

    decision = promote(MODEL)
    assert not decision.promoted
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert f"model {MODEL} version {version} failed its integrity check" in reason
    assert "artifact_sha256" in reason
    assert "ajoissa retrain" in reason
    aliases = client.get_registered_model(MODEL).aliases
    assert {alias: str(number) for alias, number in aliases.items()} == {
        "challenger": version
    }

    # With the original bytes back, the same challenger passes every check.
    model_file.write_bytes(original)
    promoted = promote(MODEL)
    assert promoted.reasons == []
    assert promoted.promoted


def test_stratified_champion_recorded(store, monkeypatch):
    import mlflow

    tables = make_tables(learners_per_unit=20, interaction=True, seed=3)

    def stratified():
        return _stratified_config("stratified-model")

    first = retrain(tables, stratified(), store / "first")
    configure_mlflow()
    mlflow.MlflowClient().set_registered_model_alias(
        "stratified-model", "champion", first["model_version"]
    )
    second = retrain(tables, stratified(), store / "second")
    champion = second["evaluation"]["promotion"]["champion"]
    assert champion == first["evaluation"]["promotion"]["model"]
    assert second["compared_champion_version"] == first["model_version"]
    recorded = second["evaluation"]["recorded_figures"]["champion"]
    assert "need not be the challenger's rows" in recorded
    card = Path(second["model_card"]).read_text()
    assert "The champion row is not scored on these rows" in card
    _install_gate(monkeypatch, passed=False, reasons=["held for the test"])
    decision = promote("stratified-model")
    assert any(n.startswith("champion figures: ") for n in decision.notes)


def test_model_card_stored(registered):
    import mlflow

    summary, _ = registered
    configure_mlflow()
    card = Path(summary["model_card"]).read_text()
    assert "## Intended use and users" in card
    assert "| school_cohort |" in card
    assert "not applicable: the source has no absence-hour data" in card
    assert "### gender" in card
    html = Path(summary["model_card_html"]).read_text()
    assert "<table>" in html
    client = mlflow.MlflowClient()
    version = client.get_model_version(MODEL, summary["model_version"])
    assert version.tags["model_card"] == "model_card/model_card.md"
    listed = [a.path for a in client.list_artifacts(version.run_id, "model_card")]
    assert "model_card/model_card.html" in listed


CONCURRENT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import make_tables
from test_training_promotion import _config
from training.promotion import retrain
summary = retrain(make_tables(seed=int(sys.argv[1])), _config(), Path(sys.argv[2]))
print(summary["model_version"], summary["mlflow_run_id"])
"""


@pytest.mark.e2e
def test_concurrent_retrains(store):
    import mlflow

    env = dict(os.environ) | {"PYTHONPATH": str(REPO_ROOT)}
    script = CONCURRENT.format(tests=str(TESTS))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(seed), str(store / f"out{seed}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    versions = sorted(stdout.split()[0] for stdout, _ in outputs)
    assert versions == ["1", "2"]

    configure_mlflow()
    client = mlflow.MlflowClient()
    for stdout, _ in outputs:
        run = client.get_run(stdout.split()[1])
        assert run.info.status == "FINISHED"
        assert "fold.cutoff_2022-06-01.model.roc_auc" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"evaluation.json", "model_card", "plots"} <= artifacts
    for version in versions:
        info = mlflow.models.get_model_info(f"models:/{MODEL}/{version}")
        assert info.metadata["calibration"]["method"] in {"sigmoid", "isotonic"}
    challenger = str(client.get_model_version_by_alias(MODEL, "challenger").version)
    assert challenger in versions
    with sqlite3.connect(store / "home" / "mlflow.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _sign(version, decision, reason="Read the report."):
    import mlflow

    from fairness.signoff import SIGNOFF_TAGS

    configure_mlflow()
    client = mlflow.MlflowClient()
    values = {"decision": decision, "reviewer": "R. Eviewer", "reason": reason}
    values["time"] = "2026-12-04T10:00:00+00:00"
    for key, tag in SIGNOFF_TAGS.items():
        client.set_model_version_tag(MODEL, version, tag, values[key])


def test_rejection_blocks_promotion(registered, monkeypatch):
    summary, _ = registered
    _install_gate(monkeypatch, passed=True)
    _sign(summary["model_version"], "reject", "Recall gap by mother tongue.")
    decision = promote(MODEL)
    assert not decision.promoted
    assert any("Recall gap by mother tongue." in r for r in decision.reasons)


def test_required_signoff_missing(registered, monkeypatch):
    summary, _ = registered
    _install_gate(monkeypatch, passed=True)
    import mlflow

    _sign(summary["model_version"], "approve")
    configure_mlflow()
    mlflow.MlflowClient().delete_model_version_tag(
        MODEL, summary["model_version"], "signoff_decision"
    )
    decision = promote(MODEL, require_signoff=True)
    assert any(r.startswith("no reviewer sign-off") for r in decision.reasons)


def test_approval_noted(registered, monkeypatch):
    summary, _ = registered
    # A failing gate keeps the challenger in place for the other tests.
    _install_gate(monkeypatch, passed=False, reasons=["held for the test"])
    _sign(summary["model_version"], "approve")
    decision = promote(MODEL, require_signoff=True)
    assert not any("sign-off" in r or "rejected" in r for r in decision.reasons)
    assert any(n.startswith("approved by reviewer R. Eviewer") for n in decision.notes)


def test_audit_scores_calibrated(registered, tables):
    from models.risk import predict_risk
    from models.store import load_registered
    from training.version_audit import evaluation_rows, load_version

    summary, _ = registered
    version = load_version(MODEL, summary["model_version"])
    rows = evaluation_rows(tables, version)
    loaded = load_registered(MODEL, "challenger")
    expected = predict_risk(
        loaded.model, loaded.spec, rows.data[loaded.spec.features], loaded.calibration
    )
    assert version.calibration is not None
    assert rows.scores.tolist() == expected.tolist()


def test_main_job_never_replaces_a_champion(store):
    import mlflow

    tables = make_tables(learners_per_unit=20, interaction=True, seed=3)
    first = run_main_job(tables, _stratified_config("main-job-model"), store / "first")
    second = run_main_job(
        tables, _stratified_config("main-job-model"), store / "second"
    )
    assert first["model_alias"] == "champion"
    assert second["model_alias"] == "challenger"
    configure_mlflow()
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("main-job-model", "champion")
    challenger = client.get_model_version_by_alias("main-job-model", "challenger")
    assert str(champion.version) == first["model_version"]
    assert str(challenger.version) == second["model_version"]
    assert first["challenger_reason"] is None
    reason = f"main-job-model already has champion version {champion.version}"
    assert second["challenger_reason"].startswith(reason)
    assert challenger.tags["challenger_reason"] == second["challenger_reason"]


def test_failed_main_job_leaves_no_version(store, monkeypatch):
    import mlflow

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("training.run.write_model_card", broken_card)
    tables = make_tables(learners_per_unit=20, interaction=True, seed=3)
    with pytest.raises(RuntimeError, match="disk full"):
        run_main_job(tables, _stratified_config("failed-job-model"), store / "out")
    configure_mlflow()
    client = mlflow.MlflowClient()
    assert client.search_model_versions("name = 'failed-job-model'") == []


def test_changed_champion_named_at_promote(store, tables, monkeypatch):
    import mlflow

    _install_gate(monkeypatch, passed=True)
    retrain(tables, _config(), store / "first")
    assert promote(MODEL).promoted
    client = mlflow.MlflowClient()
    uri = client.get_model_version_download_uri(MODEL, "1")
    model_file = Path(uri.removeprefix("file://")) / "model.skops"
    original = model_file.read_bytes()
    model_file.write_bytes(bytes([original[0] ^ 1]) + original[1:])

    second = retrain(tables, _config(), store / "second")

    assert second["compared_champion_version"] is None
    decision = promote(MODEL)
    assert not decision.promoted
    (reason,) = [r for r in decision.reasons if "champion version 1" in r]
    assert "whose files failed their integrity check" in reason
    assert "Restore the champion's files and retrain" in reason
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"


def _tight_policy(folder: Path) -> Path:
    """Write the shipped policy with a recall band of 0.999 to 1.001.

    The version stays the same, so the gate checks the audit that the main job
    stored under the shipped policy against the narrow band.
    """
    text = (REPO_ROOT / "fairness" / "policy.yaml").read_text(encoding="utf-8")
    changes = {
        "interval_rule: interval_outside": "interval_rule: point_estimate",
        "      lower: 0.8\n      upper: 1.25\n": "      lower: 0.999\n      upper: 1.001\n",
    }
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = folder / "tight-policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_gate_breach_needs_exception(store, tables, monkeypatch):
    import mlflow

    from fairness.registry import record_exception

    summary = retrain(tables, _config(), store / "out")
    version = summary["model_version"]
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(_tight_policy(store)))

    result = runner.invoke(
        app,
        [
            "promote",
            "--model-name",
            MODEL,
            "--skip-fairness-gate",
            "--reviewer",
            "Test Person",
        ],
    )
    assert result.exit_code == 1
    assert "fairness gate: breach: gender = " in result.output
    assert "--skip-fairness-gate does not apply" in result.output
    assert f"ajoissa review-exception --model {MODEL}@{version}" in result.output
    assert "Promoted" not in result.output
    client = mlflow.MlflowClient()
    aliases = client.get_registered_model(MODEL).aliases
    assert {alias: str(number) for alias, number in aliases.items()} == {
        "challenger": version
    }

    # Without the flag the rejection names the same route for a breach.
    plain = runner.invoke(app, ["promote", "--model-name", MODEL])
    assert plain.exit_code == 1
    assert "fairness gate: breach: gender = " in plain.output
    assert "To accept a breach, a reviewer records an exception" in plain.output
    assert f"ajoissa review-exception --model {MODEL}@{version}" in plain.output
    assert "--skip-fairness-gate" not in plain.output

    # The documented route for a breach: a reviewer's exception for the audit.
    record_exception(
        MODEL,
        version,
        reviewer="Test Person",
        reason="Synthetic test data; the narrow band is set by the test.",
    )
    promoted = runner.invoke(app, ["promote", "--model-name", MODEL])
    assert promoted.exit_code == 0, promoted.output
    passed_note = "fairness gate passed through the exception recorded by reviewer "
    output = " ".join(promoted.output.split())
    assert f"Note: {passed_note}Test Person" in output
    tag = client.get_model_version(MODEL, version).tags["fairness_gate"]
    assert tag.startswith(f"{passed_note}Test Person on ")


def test_skip_flag_without_gate_module(store, tables, monkeypatch):
    import mlflow

    monkeypatch.setattr("training.promotion.FAIRNESS_GATE_MODULE", "fairness.no_gate")
    summary = retrain(tables, _config(), store / "out")
    decision = promote(MODEL, "Test Person")
    assert decision.reasons == []
    assert decision.promoted
    tags = mlflow.MlflowClient().get_model_version(MODEL, summary["model_version"]).tags
    assert "fairness gate skipped by reviewer Test Person" in tags["fairness_gate"]


WINDOW_CHANGE = "label window: champion until the unit ends, challenger 60 days"


def test_label_change_needs_acceptance(store, tables, monkeypatch, caplog):
    import mlflow

    _install_gate(monkeypatch, passed=True)
    # Without the interaction, risk raises withdrawal in both programmes, so
    # this champion ranks the general programme of the challenger's tables
    # backwards and the challenger beats it.
    first = retrain(make_tables(seed=5), _config(), store / "first")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL, "champion", first["model_version"])
    tags = client.get_model_version(MODEL, first["model_version"]).tags
    assert json.loads(tags["label_settings"]) == {
        "source": "synthetic",
        "label_window_days": None,
    }

    with caplog.at_level("INFO", logger="training.promotion"):
        second = retrain(tables, _config(label_window_days=60), store / "second")
    version = second["model_version"]
    assert WINDOW_CHANGE in second["label_change"]
    written = json.loads((store / "second" / "summary.json").read_text())
    assert written["label_change"] == second["label_change"]
    assert written["compared_champion_version"] == first["model_version"]
    # `ajoissa retrain` prints the change as a warning, so a log record at
    # WARNING would show it a second time.
    (logged,) = [r for r in caplog.records if WINDOW_CHANGE in r.getMessage()]
    assert logged.levelname == "INFO"
    assert (
        json.loads(client.get_model_version(MODEL, version).tags["label_settings"])[
            "label_window_days"
        ]
        == 60
    )

    rejected = runner.invoke(app, ["promote", "--model-name", MODEL])
    assert rejected.exit_code == 1
    assert WINDOW_CHANGE in rejected.output
    assert "--accept-label-change --reviewer NAME" in rejected.output
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == first["model_version"]

    accepted = runner.invoke(
        app,
        [
            "promote",
            "--model-name",
            MODEL,
            "--accept-label-change",
            "--reviewer",
            "Test Person",
        ],
    )
    assert accepted.exit_code == 0, accepted.output
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == version
    assert champion.tags["label_change_accepted_by"] == "Test Person"
    assert WINDOW_CHANGE in champion.tags["label_change_accepted"]


def test_unrecorded_champion_label(store, tables, monkeypatch):
    import mlflow

    _install_gate(monkeypatch, passed=True)
    first = retrain(tables, _config(), store / "first")
    assert promote(MODEL).promoted
    # As for a champion registered before label settings were recorded.
    client = mlflow.MlflowClient()
    client.delete_model_version_tag(MODEL, first["model_version"], "label_settings")

    second = retrain(tables, _config(), store / "second")
    assert second["label_change"].startswith(
        "champion version 1 has no recorded label settings"
    )
    rejected = promote(MODEL)
    assert not rejected.promoted
    (reason,) = [r for r in rejected.reasons if "no recorded label settings" in r]
    assert "unknown whether it was trained on the same label" in reason
    assert "source synthetic, label window until the unit ends" in reason
    assert "--accept-label-change --reviewer NAME" in reason

    accepted = promote(MODEL, accept_label_change_reviewer="Test Person")
    assert not any("label settings" in r for r in accepted.reasons)
    assert any(
        note.startswith("label change accepted by reviewer Test Person")
        for note in accepted.notes
    )
