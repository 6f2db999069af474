"""A registered, calibrated model scores identically after loading from MLflow."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.calibration import fit_calibration
from models.risk import fit_risk_model, predict_risk
from models.store import load_registered


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
