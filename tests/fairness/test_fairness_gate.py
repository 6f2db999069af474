"""The promotion gate against a real MLflow registry on SQLite."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from fairness.audit import audit_groups
from fairness.comparison import BootstrapSettings
from fairness.gate import check_gate, evaluate_gate
from fairness.policy import load_policy
from fairness.registry import (
    AuditNotFoundError,
    load_audit,
    read_exception,
    record_exception,
    store_audit,
)
from training.version_audit import audit_payload

MODEL = "gate-test-model"
POLICY = """
version: "{version}"
audit:
  sensitive_attributes: [gender]
  min_group_learners: 10
  bootstrap: {{replicates: 50, confidence: 0.95, seed: 0}}
gate:
  interval_rule: {rule}
  undefined: warn
  rules:
    - {{metric: recall, measure: ratio, lower: 0.8, upper: 1.25}}
"""


def write_policy(
    folder: Path, version: str = "t1", rule: str = "interval_outside"
) -> Path:
    path = folder / f"policy-{version}-{rule}.yaml"
    path.write_text(POLICY.format(version=version, rule=rule), encoding="utf-8")
    return path


def frame(recall_b: float, positives_in_b: bool = True) -> pd.DataFrame:
    """400 learners; group a has recall 0.6, group b has ``recall_b``.

    Without positives in group b its recall, and so the comparison, is undefined.
    """
    rng = np.random.default_rng(0)
    gender = np.where(np.arange(800) % 2 == 0, "a", "b")
    y = (np.arange(800) % 4 < 2).astype(int)
    if not positives_in_b:
        y[gender == "b"] = 0
    rate = np.where(gender == "a", 0.6, recall_b)
    selected = (y == 1) & (rng.random(800) < rate)
    return pd.DataFrame(
        {
            "learner": (np.arange(800) // 2).astype(str),
            "gender": gender,
            "y_true": y,
            "selected": selected.astype(int),
            "score": rng.random(800),
        }
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One temporary store for the module; creating a SQLite store takes seconds."""
    return tmp_path_factory.mktemp("gate-home")


@pytest.fixture
def registry(home, monkeypatch) -> str:
    """Register a new tiny model version in the module's store; return its version."""
    import mlflow

    from models.spec import FeatureSpec
    from training.registry import ensure_experiment, log_and_register

    monkeypatch.setenv("AJOISSA_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    X = pd.DataFrame({"x": np.arange(200, dtype=float)})
    y = (np.arange(200) % 3 == 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y)
    with mlflow.start_run(experiment_id=ensure_experiment()):
        registered = log_and_register(model, FeatureSpec.from_frame(X), X, MODEL)
    return registered.version


def store(
    version: str, recall_b: float, policy_path: Path, positives_in_b: bool = True
) -> str:
    policy = load_policy(policy_path)
    audit = audit_groups(
        frame(recall_b, positives_in_b),
        sensitive_features=["gender"],
        learner="learner",
        bootstrap=BootstrapSettings(replicates=50, seed=0),
    )
    payload = audit_payload(
        audit,
        policy,
        model_uri=f"models:/{MODEL}/{version}",
        source="synthetic",
        operating_point="test",
        rows_description="synthetic rows",
    )
    return store_audit(MODEL, version, payload)


def test_gate_without_audit(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(write_policy(tmp_path)))
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert "no stored fairness audit" in decision.reasons[0]


def test_gate_passes_equal_recall(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.6, policy)
    decision = check_gate(MODEL, registry)
    assert decision.passed is True
    assert decision.breaches == []
    assert decision.policy_version == "t1"
    assert "1 comparison, 1 with the estimate inside the band" in decision.reasons[0]


def test_gate_rejects_unassessable_audit(registry, tmp_path, monkeypatch):
    # Under `undefined: warn` an undefined comparison is only a warning, but a
    # gate with no assessed comparison has no evidence to pass on.
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.6, policy, positives_in_b=False)
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert decision.nothing_assessed
    assert "could not assess the model: none of its 1" in decision.breaches[0]
    assert any("not assessed" in text for text in decision.warnings)


def test_exception_void_unassessable_audit(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.6, policy, positives_in_b=False)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert decision.exception is None
    assert any("this audit measured none" in text for text in decision.reasons)


def test_gate_fails_low_recall(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert "gender = b against a: recall ratio" in decision.breaches[0]


def test_gate_decision_stored(registry, tmp_path, monkeypatch):
    import mlflow

    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    check_gate(MODEL, registry)
    tags = mlflow.MlflowClient().get_model_version(MODEL, registry).tags
    assert tags["fairness.gate.passed"] == "false"
    assert tags["fairness.gate.policy_version"] == "t1"
    assert tags["fairness.gate.decision"].startswith("fairness/gate-v")


def test_exception_honoured(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(
        MODEL,
        registry,
        reviewer="Aino Virtanen",
        reason="Pilot in one school only, with manual review of every pupil.",
    )
    decision = check_gate(MODEL, registry)
    assert decision.passed is True
    assert decision.exception.reviewer == "Aino Virtanen"
    assert decision.breaches


def test_exception_void_after_reaudit(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    store(registry, 0.25, policy)
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert any("does not apply" in reason for reason in decision.reasons)


def test_exception_void_new_policy(registry, tmp_path, monkeypatch):
    old = write_policy(tmp_path, version="t1")
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(old))
    store(registry, 0.2, old)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(write_policy(tmp_path, "t2")))
    decision = check_gate(MODEL, registry)
    assert decision.passed is False
    assert "computed under policy t1" in decision.breaches[0]


def test_exception_needs_reason(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    store(registry, 0.2, policy)
    with pytest.raises(ValueError, match="shorter than 20 characters"):
        record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="ok")


def test_exception_needs_audit(registry):
    with pytest.raises(AuditNotFoundError, match="ajoissa audit"):
        record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)


def test_stored_audit_round_trip(registry, tmp_path):
    policy = write_policy(tmp_path)
    digest = store(registry, 0.6, policy)
    payload, stored_digest = load_audit(MODEL, registry)
    assert stored_digest == digest
    assert payload["policy_version"] == "t1"
    assert payload["audit"]["attributes"]["gender"]["reference"] == "a"


def test_gate_unknown_version(registry):
    with pytest.raises(LookupError, match="no version '99'"):
        check_gate(MODEL, "99")


def review_exception(version: str, reviewer: str, *options: str):
    """Run `ajoissa review-exception` and return the result with its output on one line."""
    from typer.testing import CliRunner

    from ajoissa.cli import app

    result = CliRunner().invoke(
        app,
        [
            "review-exception",
            "--model",
            f"{MODEL}@{version}",
            "--reviewer",
            reviewer,
            "--reason",
            "Pilot in one school only, with manual review of every pupil.",
            *options,
        ],
    )
    return result, " ".join(result.output.split())


def rejected_review_exception(version: str) -> str:
    """Run `ajoissa review-exception`, check that it recorded nothing, and return its output."""
    result, output = review_exception(version, "Aino Virtanen")
    assert result.exit_code == 2, output
    assert read_exception(MODEL, version) is None
    return output


def test_review_exception_stale_policy(registry, tmp_path, monkeypatch):
    old = write_policy(tmp_path, version="t1")
    store(registry, 0.2, old)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(write_policy(tmp_path, "t2")))
    output = rejected_review_exception(registry)
    assert "computed under policy t1, but the policy in force is t2" in output
    assert f"Rerun `ajoissa audit --model {MODEL}@{registry}" in output
    assert "Recorded" not in output


def test_review_exception_without_breach(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.6, policy)
    output = rejected_review_exception(registry)
    assert "has no breach of policy t1" in output
    assert "passes without an exception" in output


def test_review_exception_unassessable(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.6, policy, positives_in_b=False)
    output = rejected_review_exception(registry)
    assert "assessed no comparison" in output
    assert "not a missing measurement" in output


def test_review_exception_replace(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    first, output = review_exception(registry, "Aino Virtanen")
    assert first.exit_code == 0, output
    assert "Recorded an exception by Aino Virtanen" in output

    rejected, output = review_exception(registry, "Eero Korhonen")
    assert rejected.exit_code == 2, output
    assert "Aino Virtanen already recorded an exception" in output
    assert "Pass --replace" in output
    assert read_exception(MODEL, registry).reviewer == "Aino Virtanen"

    replaced, output = review_exception(registry, "Eero Korhonen", "--replace")
    assert replaced.exit_code == 0, output
    assert "It replaces the exception by Aino Virtanen" in output
    assert read_exception(MODEL, registry).reviewer == "Eero Korhonen"
    assert check_gate(MODEL, registry).exception.reviewer == "Eero Korhonen"


def test_review_exception_void_earlier(registry, tmp_path, monkeypatch):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    store(registry, 0.25, policy)
    result, output = review_exception(registry, "Eero Korhonen")
    assert result.exit_code == 0, output
    assert "replaces the exception by Aino Virtanen" in output
    assert "for another audit or policy version" in output


@pytest.fixture
def version_fetches(monkeypatch) -> list[tuple[str, str]]:
    """Record each registry fetch of a model version; the real fetch still runs."""
    import mlflow

    fetches: list[tuple[str, str]] = []
    fetch = mlflow.MlflowClient.get_model_version

    def recording_fetch(client, name, version):
        fetches.append((name, str(version)))
        return fetch(client, name, version)

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version", recording_fetch)
    return fetches


def test_gate_fetches_version_once(registry, tmp_path, monkeypatch, version_fetches):
    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    version_fetches.clear()

    decision = evaluate_gate(MODEL, registry)

    assert version_fetches == [(MODEL, registry)]
    assert decision.passed is True
    assert decision.exception.reviewer == "Aino Virtanen"
    assert decision.recorded_exception == decision.exception


def test_review_exception_reads_once(registry, tmp_path, monkeypatch, version_fetches):
    import fairness.gate
    import fairness.registry

    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    store(registry, 0.25, policy)
    # The fetches from the gate's start to the recording of the new exception
    # are the reads of the version's tags, which hold the earlier exception.
    marks: dict[str, int] = {}
    evaluate = fairness.gate.evaluate_gate
    record = fairness.registry.record_exception

    def marked_evaluate(*args, **kwargs):
        marks.setdefault("gate", len(version_fetches))
        return evaluate(*args, **kwargs)

    def marked_record(*args, **kwargs):
        marks["record"] = len(version_fetches)
        return record(*args, **kwargs)

    monkeypatch.setattr(fairness.gate, "evaluate_gate", marked_evaluate)
    monkeypatch.setattr(fairness.registry, "record_exception", marked_record)

    result, output = review_exception(registry, "Eero Korhonen")

    assert result.exit_code == 0, output
    assert marks["record"] - marks["gate"] == 1
    assert "replaces the exception by Aino Virtanen" in output
    assert "for another audit or policy version" in output
    assert read_exception(MODEL, registry).reviewer == "Eero Korhonen"


def test_stored_decision_omits_recorded(registry, tmp_path, monkeypatch):
    import json

    import mlflow

    policy = write_policy(tmp_path)
    monkeypatch.setenv("AJOISSA_FAIRNESS_POLICY", str(policy))
    store(registry, 0.2, policy)
    record_exception(MODEL, registry, reviewer="Aino Virtanen", reason="x" * 30)
    check_gate(MODEL, registry)

    client = mlflow.MlflowClient()
    model_version = client.get_model_version(MODEL, registry)
    stored = mlflow.artifacts.download_artifacts(
        run_id=model_version.run_id,
        artifact_path=model_version.tags["fairness.gate.decision"],
        dst_path=str(tmp_path),
    )
    decision = json.loads(Path(stored).read_text(encoding="utf-8"))
    assert decision["exception"]["reviewer"] == "Aino Virtanen"
    assert "recorded_exception" not in decision
