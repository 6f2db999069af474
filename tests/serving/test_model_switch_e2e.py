"""Champion switches and integrity failures on a real server under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from models.risk import fit_risk_model
from training.registry import ensure_experiment, log_and_register

pytestmark = pytest.mark.e2e

MODEL_NAME = "switch-test-model"
SWITCH_TIMEOUT_SECONDS = 60


def _register(
    trained,
    alias: str,
    seed: int,
    name: str = MODEL_NAME,
    model_card: bool = False,
) -> str:
    labels = np.random.default_rng(seed).integers(0, 2, len(trained.holdout))
    model, spec = fit_risk_model(trained.holdout, labels, params={"n_estimators": 5})
    with mlflow.start_run(experiment_id=ensure_experiment()):
        if model_card:
            # Where the training job stores the model card.
            mlflow.log_text("<h1>Model card</h1>", "model_card/model_card.html")
        registered = log_and_register(
            model, spec, trained.holdout.head(20), name, alias=alias
        )
    return registered.version


def _artifact_dir(version: str, name: str = MODEL_NAME) -> Path:
    uri = mlflow.MlflowClient().get_model_version_download_uri(name, version)
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


class Load:
    """Send single-record scoring requests from a thread and keep every status."""

    def __init__(self, url: str, headers: dict[str, str], record: dict) -> None:
        self.url, self.headers, self.record = url, headers, record
        self.statuses: list[int] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(
                    f"{self.url}/v1/score",
                    json={"records": [self.record]},
                    headers=self.headers,
                )
                self.statuses.append(response.status_code)
                if response.status_code == 200:
                    self.versions.append(response.json()["model"]["version"])

    def __enter__(self) -> Load:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _wait_for_version(server, headers, version: str) -> dict:
    """Return the first GET /v1/model body that names ``version``."""
    deadline = time.monotonic() + SWITCH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/v1/model", headers=headers, timeout=10).json()
        if body["version"] == version:
            return body
        time.sleep(0.5)
    pytest.fail(f"version {version} not served within {SWITCH_TIMEOUT_SECONDS} s")


def test_switch_and_integrity(trained, tokens, launch, tmp_path):
    first = _register(trained, "champion", seed=1, model_card=True)
    env = {"AJOISSA_RELOAD_SECONDS": "1"}
    platform = tokens.header("platform")
    with launch(MODEL_NAME, tmp_path, env=env) as server:
        initial = httpx.get(f"{server.url}/v1/model", headers=platform, timeout=10)
        with Load(server.url, platform, trained.holdout_records[0]) as load:
            time.sleep(1.0)
            second = _register(trained, "champion", seed=2)
            _wait_for_version(server, platform, second)
            time.sleep(1.0)
        assert len(load.statuses) >= 10
        assert set(load.statuses) == {200}
        assert load.versions[0] == first
        assert load.versions[-1] == second

        # A version whose files change after registration is rejected.
        third = _register(trained, "candidate", seed=3)
        # The serialised booster (model.skops with MLflow 3.17's LightGBM flavour).
        model_file = next(_artifact_dir(third).glob("model.*"))
        original = model_file.read_bytes()
        model_file.write_bytes(original + b"\n")
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", third)
        with Load(server.url, platform, trained.holdout_records[0]) as load:
            deadline = time.monotonic() + SWITCH_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                body = httpx.get(
                    f"{server.url}/v1/model", headers=platform, timeout=10
                ).json()
                if body["last_load_error"]:
                    break
                time.sleep(0.5)
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        log = server.log()
        # Restored files are loaded at a later retry, without a restart.
        model_file.write_bytes(original)
        restored = _wait_for_version(server, platform, third)
    card_path = f"/ui/models/{MODEL_NAME}/{first}/artifacts/model_card.html"
    assert initial.json()["model_card_url"] == card_path
    assert initial.json()["alias"] == "champion"
    assert initial.json()["registry_champion_version"] == first
    assert initial.json()["registry_champion_rejected"] is False
    assert body["version"] == second
    assert body["model_card_url"] is None
    assert body["alias"] is None
    assert body["registry_champion_version"] == third
    assert body["registry_champion_rejected"] is True
    assert "failed its integrity check" in body["last_load_error"]
    assert ready.status_code == 200
    assert restored["alias"] == "champion"
    assert restored["registry_champion_rejected"] is False
    assert restored["last_load_error"] is None
    assert set(load.statuses) == {200}
    assert set(load.versions) == {second}
    assert f"rejected model {MODEL_NAME} version {third}" in log


def test_changed_only_champion_503(trained, tokens, launch, tmp_path):
    name = "changed-only-champion"
    version = _register(trained, "champion", seed=4, name=name)
    model_file = next(_artifact_dir(version, name).glob("model.*"))
    model_file.write_bytes(model_file.read_bytes() + b"\n")

    env = {"AJOISSA_RELOAD_SECONDS": "1", "AJOISSA_WORKERS": "1"}
    platform = tokens.header("platform")
    record = trained.holdout_records[0]
    with launch(name, tmp_path, "/healthz", env=env) as server:
        statuses, errors = [], []
        for _ in range(10):
            response = httpx.post(
                f"{server.url}/v1/score",
                json={"records": [record]},
                headers=platform,
                timeout=30,
            )
            statuses.append(response.status_code)
            errors.append(response.json()["error"])
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        body = httpx.get(f"{server.url}/v1/model", headers=platform, timeout=10).json()
        log = server.log()

    assert set(statuses) == {503}
    assert ready.status_code == 503
    error = errors[-1]
    assert f"model {name!r} is not loaded: model {name} version {version}" in error
    assert "failed its integrity check" in error
    assert "Register the model again" in error
    assert "no verified champion" not in error

    assert body["version"] is None
    assert body["alias"] is None
    assert body["model_card_url"] is None
    assert body["registry_champion_version"] == version
    assert body["registry_champion_rejected"] is True

    # One worker: the first rejection is a warning, the other nine within the
    # minute are DEBUG lines, which the server log leaves out.
    assert log.count(f"rejected scoring request: model {name} is not loaded") == 1
    assert "No model is served." in log
    assert "version none" not in log
