"""Fixtures for the serving tests: a small real model in a temporary store."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from features.build import asof_points_by_offset, build_features
from models.calibration import fit_calibration
from models.risk import fit_risk_model, predict_risk
from models.spec import FeatureSpec
from models.store import LoadedModel, load_registered
from serving.access import TokenStore
from serving.scheduled import score_asof
from serving.scorestore import StoredScore
from sources.contract import InputTables
from sources.oulad import load_oulad

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "serving-test-model"
SAMPLE_ROWS = 3000
AS_OF = dt.date(2014, 3, 3)
"""An as-of date on which many OULAD presentations (2014B and 2014J) run."""
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class TrainedModel:
    """A model registered in a temporary store, with rows it was not trained on."""

    loaded: LoadedModel
    holdout: pd.DataFrame
    """Feature rows (spec columns only, training dtypes) for scoring checks."""
    holdout_records: list[dict[str, object]]
    """The ``holdout`` rows as JSON-compatible records, with null for missing."""
    home: Path

    @property
    def spec(self) -> FeatureSpec:
        return self.loaded.spec


@pytest.fixture(scope="package")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tables: InputTables
) -> Iterator[TrainedModel]:
    """Fit and register a small OULAD model in a temporary AJOISSA_HOME."""
    import mlflow

    from training.registry import ensure_experiment, log_and_register

    home = tmp_path_factory.mktemp("ajoissa-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AJOISSA_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        patch.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml-home")))

        features = build_features(tables, asof_points_by_offset(tables.units, [60]))
        rows = features.data.sample(n=2 * SAMPLE_ROWS, random_state=0)
        train, holdout = rows.iloc[:SAMPLE_ROWS], rows.iloc[SAMPLE_ROWS:]
        model, spec = fit_risk_model(
            train[features.feature_names],
            train["withdraws_after"].to_numpy(dtype=int),
            params={"n_estimators": 20},
        )
        # A calibration, as ajoissa run registers one, so that tests compare
        # calibrated probabilities everywhere.
        holdout_raw = predict_risk(model, spec, holdout[features.feature_names])
        calibration = fit_calibration(
            holdout_raw, holdout["withdraws_after"].to_numpy(dtype=int), "sigmoid"
        )
        with mlflow.start_run(experiment_id=ensure_experiment()):
            log_and_register(
                model,
                spec,
                train[features.feature_names],
                MODEL_NAME,
                calibration=calibration,
            )
        loaded = load_registered(MODEL_NAME)
        holdout_frame = holdout[features.feature_names].reset_index(drop=True)
        yield TrainedModel(
            loaded=loaded,
            holdout=holdout_frame,
            holdout_records=_to_records(holdout_frame),
            home=home,
        )


def _to_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Convert feature rows to JSON-compatible records, with null for missing."""
    records = []
    for row in frame.to_dict("records"):
        records.append(
            {
                key: None if _is_missing(value) else _plain(value)
                for key, value in row.items()
            }
        )
    return records


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


@pytest.fixture(scope="package")
def tables() -> InputTables:
    """The bundled OULAD tables, validated."""
    return load_oulad(REPO_ROOT / "ajoissa" / "data" / "oulad").validated()


@pytest.fixture(scope="package")
def scored(tables, trained) -> list[StoredScore]:
    """Scores of every enrolment active on ``AS_OF``, from the scheduled pipeline."""
    return score_asof(tables, trained.loaded, AS_OF)


@dataclass(frozen=True)
class Tokens:
    """One token per role in the test store, plus a revoked one."""

    by_role: dict[str, str]
    revoked: str
    school: str
    """The one school of the staff token."""

    def header(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_role[role]}"}


@pytest.fixture(scope="package")
def tokens(trained, scored) -> Tokens:
    """Create tokens in the ``access.db`` of the trained model's AJOISSA_HOME."""
    store = TokenStore(trained.home / "access.db")
    school = scored[0].school_id
    by_role = {
        "platform": store.create("platform")[0],
        "staff": store.create("staff", [school], "test staff")[0],
        "reviewer": store.create("reviewer")[0],
        "admin": store.create("admin")[0],
    }
    revoked, info = store.create("platform", label="revoked")
    store.revoke(info.token_id)
    return Tokens(by_role=by_role, revoked=revoked, school=school)


@dataclass(frozen=True)
class RunningServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(server: RunningServer, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{path} not 200 within {READY_TIMEOUT_SECONDS} s:\n{server.log()}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server with SIGINT, and kill its process group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        # The server runs in its own session, so this ends its workers too.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def _launch(
    model_name: str,
    workdir: Path,
    ready_path: str = "/readyz",
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Start ``run_server`` on 127.0.0.1 in a subprocess, as ``ajoissa serve`` does."""
    port = free_port()
    log_path = workdir / "server.log"
    command = (
        "from serving.server import run_server; "
        f"run_server(host='127.0.0.1', port={port}, model_name={model_name!r})"
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", command],
            cwd=workdir,
            env=dict(os.environ) | (env or {}),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningServer(f"http://127.0.0.1:{port}", log_path, process)
    try:
        # Wait for a 200 before yielding, because stopping BentoML before it is up
        # can hang.
        _wait_for(running, ready_path)
        yield running
    finally:
        stop_server(process)


@pytest.fixture(scope="package")
def launch() -> Callable[..., contextlib.AbstractContextManager[RunningServer]]:
    """Return a context manager that runs a real server on 127.0.0.1."""
    return _launch


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15 server programs (apt-get install postgresql)."""


@pytest.fixture(scope="package")
def postgres_url() -> Iterator[str]:
    """Start a throwaway PostgreSQL server on 127.0.0.1 and return its URL."""
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server programs not found in {POSTGRES_BIN}")
    # initdb refuses to run as root, so root runs the server as user postgres,
    # in a folder outside pytest's root-only temporary folder.
    base = Path(tempfile.mkdtemp(prefix="ajoissa-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, user="postgres")

    data = base / "data"
    port = free_port()
    ctl = str(POSTGRES_BIN / "pg_ctl")
    subprocess.run(
        [*prefix, str(POSTGRES_BIN / "initdb"), "-D", str(data), "-A", "trust"]
        + ["-U", "ajoissa"],
        check=True,
        capture_output=True,
    )

    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base}"
    subprocess.run(
        [*prefix, ctl, "-D", str(data), "-o", options, "-w"]
        + ["-l", str(base / "server.log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://ajoissa@127.0.0.1:{port}/postgres"
    finally:
        stop = [*prefix, ctl, "-D", str(data), "-m", "fast", "stop"]
        subprocess.run(stop, check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
