"""A registered, calibrated model scores identically after loading from MLflow."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.calibration import fit_calibration
from models.risk import fit_risk_model, predict_risk
from models.store import (
    REGISTER_AGAIN,
    ModelIntegrityError,
    load_registered,
    verify_version,
)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "mean_score": rng.normal(60, 15, n),
            "attr_programme": pd.Categorical(
                rng.choice(["general", "vocational", "art"], n)
            ),
            "assessments_missed": rng.integers(0, 4, n).astype(float),
        }
    )
    logit = -2 + 0.8 * X["assessments_missed"] + (X["attr_programme"] == "art") * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    return X, y


def test_loaded_model_scores_identically(store):
    import mlflow

    from training.registry import ensure_experiment, log_and_register

    X, y = _frame(2000, 0)
    model, spec = fit_risk_model(X.iloc[:1500], y[:1500], {"n_estimators": 40})
    calibration = fit_calibration(predict_risk(model, spec, X.iloc[1500:]), y[1500:])
    with mlflow.start_run(experiment_id=ensure_experiment()):
        log_and_register(model, spec, X.head(20), "roundtrip", calibration=calibration)
    loaded = load_registered("roundtrip")

    probe, _ = _frame(300, 1)
    expected = predict_risk(model, spec, probe, calibration)
    assert loaded.calibration == calibration
    assert loaded.spec == spec
    assert np.array_equal(
        predict_risk(loaded.model, loaded.spec, probe, loaded.calibration), expected
    )
    reordered = probe[list(reversed(probe.columns))].astype({"attr_programme": str})
    assert np.array_equal(
        predict_risk(loaded.model, loaded.spec, reordered, loaded.calibration), expected
    )


def test_interrupted_registration_leaves_no_version(store, monkeypatch):
    import mlflow

    import training.registry as registry

    X, y = _frame(500, 2)
    model, spec = fit_risk_model(X, y, {"n_estimators": 10})

    def interrupt(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "artifact_digest", interrupt)
    with mlflow.start_run(experiment_id=registry.ensure_experiment()):
        with pytest.raises(KeyboardInterrupt):
            registry.log_and_register(model, spec, X.head(20), "interrupted")
    versions = mlflow.MlflowClient().search_model_versions("name='interrupted'")
    assert versions == []


def test_registered_version_stores_no_rows(store, tmp_path):
    """The registry keeps the schema of the records, never a record itself."""
    import mlflow

    from training.registry import ensure_experiment, log_and_register

    X, y = _frame(500, 0)
    model, spec = fit_risk_model(X, y, {"n_estimators": 10})
    with mlflow.start_run(experiment_id=ensure_experiment()):
        log_and_register(model, spec, X.head(20), "no-rows")
    stored = Path(
        mlflow.artifacts.download_artifacts("models:/no-rows/1", dst_path=str(tmp_path))
    )
    names = sorted(p.name for p in stored.rglob("*") if p.is_file())
    assert "MLmodel" in names
    assert not [name for name in names if "example" in name], names
    assert "signature" in (stored / "MLmodel").read_text()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_integrity_error_names_files(store):
    import mlflow

    from training.registry import ensure_experiment, log_and_register

    X, y = _frame(500, 3)
    model, spec = fit_risk_model(X, y, {"n_estimators": 10})
    with mlflow.start_run(experiment_id=ensure_experiment()):
        log_and_register(model, spec, X.head(20), "tampered")
    client = mlflow.MlflowClient()
    uri = client.get_model_version_download_uri("tampered", "1")
    folder = Path(uri.removeprefix("file://"))
    verify_version("tampered", "1")

    edited = next(folder.rglob("model.*"))
    edited_before = _sha256(edited)
    edited.write_bytes(edited.read_bytes() + b"\n")
    removed = folder / "requirements.txt"
    removed_before = _sha256(removed)
    removed.unlink()
    added = folder / "extra" / "note.txt"
    added.parent.mkdir()
    added.write_text("not registered", encoding="utf-8")

    with pytest.raises(ModelIntegrityError) as excinfo:
        verify_version("tampered", "1")
    message = str(excinfo.value)
    edited_name = edited.relative_to(folder).as_posix()
    assert (
        f"{edited_name} changed (recorded {edited_before[:12]}, "
        f"found {_sha256(edited)[:12]})"
    ) in message
    assert f"requirements.txt is missing (recorded {removed_before[:12]})" in message
    assert f"extra/note.txt was added (found {_sha256(added)[:12]})" in message
    assert "MLmodel" not in message
    assert message.endswith(f"{REGISTER_AGAIN}")

    # As for a version registered before per-file digests were recorded.
    client.delete_model_version_tag("tampered", "1", "artifact_files_sha256")
    with pytest.raises(ModelIntegrityError, match="cannot be named"):
        verify_version("tampered", "1")
