"""`audit_version` stores an audit only on the data the version was trained on."""

import pytest
from conftest import make_tables

from fairness.gate import evaluate_gate
from fairness.registry import mlflow_client
from training.run import RunConfig, run_main_job
from training.version_audit import audit_version, load_version

MODEL = "audit-data-model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One version trained on the tables of seed 3, in a store for this module."""
    base = tmp_path_factory.mktemp("audit-data")
    tables = make_tables(learners_per_unit=20, interaction=True, seed=3)
    config = RunConfig(
        source="synthetic",
        asof_offsets_days=[60],
        asof_labels={},
        validation="stratified",
        temporal_cutoff=None,
        earlier_cutoffs=[],
        folds=3,
        tuning_trials=0,
        bootstrap_resamples=10,
        model_name=MODEL,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AJOISSA_HOME", str(base / "home"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        summary = run_main_job(tables, config, base / "out")
        yield tables, summary["model_version"]


def _audit_tag(version: str) -> str:
    tags = mlflow_client().get_model_version(MODEL, version).tags
    return tags["fairness.audit_sha256"]


def _audit(tables, version, out, **options):
    registered = load_version(MODEL, version)
    return audit_version(
        tables, registered, out, source="synthetic", mitigation_sample=500, **options
    )


def test_run_records_training_data(trained):
    _, version = trained
    tags = mlflow_client().get_model_version(MODEL, version).tags
    assert len(tags["training_data_sha256"]) == 64
    assert len(tags["fairness.audit_sha256"]) == 64


def test_run_logs_asof_order(trained):
    _, version = trained
    client = mlflow_client()
    run_id = client.get_model_version(MODEL, version).run_id
    assert client.get_run(run_id).data.params["asof_order"] == "day_60"


def test_audit_on_training_data_stored(trained, tmp_path):
    tables, version = trained
    before = _audit_tag(version)
    result = _audit(tables, version, tmp_path / "same.html")
    assert result.data_check.matches is True
    assert result.data_check.audited_sha256 == result.data_check.recorded_sha256
    assert result.stored is True
    assert _audit_tag(version) != before
    assert "Not the model's evaluation data" not in result.report.read_text()


def test_audit_on_other_data_not_stored(trained, tmp_path):
    _, version = trained
    other = make_tables(learners_per_unit=20, interaction=True, seed=4)
    before = _audit_tag(version)
    result = _audit(other, version, tmp_path / "other.html")
    assert result.data_check.matches is False
    assert result.stored is False
    assert _audit_tag(version) == before
    assert result.payload["evaluation_data"]["matches_training_data"] is False
    html = result.report.read_text()
    assert "Not the model's evaluation data" in html
    assert "The audit is not stored with the version" in html


def test_audit_on_other_data_stored_on_request(trained, tmp_path):
    _, version = trained
    other = make_tables(learners_per_unit=20, interaction=True, seed=4)
    before = _audit_tag(version)
    result = _audit(other, version, tmp_path / "other.html", store_other_data=True)
    assert result.stored is True
    assert _audit_tag(version) != before
    assert "stored with the version on request" in result.report.read_text()
    warnings = evaluate_gate(MODEL, version).warnings
    assert any("not known to be the version's evaluation data" in w for w in warnings)
