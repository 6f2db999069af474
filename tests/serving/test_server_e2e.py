"""End-to-end tests against a real BentoML server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from models.risk import predict_risk
from serving.scoring import MAX_BATCH_RECORDS

pytestmark = pytest.mark.e2e

READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class RunningServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
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


def _stop(process: subprocess.Popen[bytes]) -> None:
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
def _run_server(
    model_name: str, workdir: Path, ready_path: str
) -> Iterator[RunningServer]:
    """Start ``run_server`` in a subprocess, as ``ajoissa serve`` does."""
    port = _free_port()
    log_path = workdir / "server.log"
    command = (
        "from serving.server import run_server; "
        f"run_server(host='127.0.0.1', port={port}, model_name={model_name!r})"
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", command],
            cwd=workdir,
            env=dict(os.environ),
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
        _stop(process)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory) -> Iterator[RunningServer]:
    with _run_server(
        trained.loaded.name, tmp_path_factory.mktemp("server"), "/readyz"
    ) as running:
        yield running


def test_index_redirects_to_pages(server):
    response = httpx.get(f"{server.url}/", follow_redirects=False, timeout=5)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"
    assert "googletagmanager" not in response.text


def test_healthz_ok(server):
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_scores_match_offline(server, trained, tokens):
    rows = trained.holdout.head(200)
    response = httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": trained.holdout_records[:200]},
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    expected = predict_risk(
        trained.loaded.model, trained.spec, rows, trained.loaded.calibration
    )
    got = np.array([score["probability"] for score in body["scores"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert body["model"] == {
        "name": trained.loaded.name,
        "version": trained.loaded.version,
    }
    assert body["warnings"] == []
    assert len(body["scores"][0]["reasons"]) == 3


def test_unseen_category_warns(server, trained, tokens):
    record = dict(trained.holdout_records[0])
    record["attr_module"] = "ZZZ"
    response = httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": [record]},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["warnings"][0].startswith("unseen category 'ZZZ'")


def test_bad_record_400(server, trained, tokens):
    record = dict(trained.holdout_records[0])
    record["mean_score"] = "high"
    del record["days_enrolled"]
    response = httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": [record]},
        timeout=30,
    )
    assert response.status_code == 400
    body = response.json()
    assert "field 'mean_score': value 'high' is invalid" in body["error"]
    assert "field 'days_enrolled': missing" in body["error"]
    assert body["problem_count"] == 2
    assert {p["field"] for p in body["problems"]} == {"mean_score", "days_enrolled"}
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "content",
    [b"", b"{}", b'{"records": []}', b'{"records": {}}', b"not json"],
)
def test_empty_or_malformed_4xx(server, content, tokens):
    response = httpx.post(
        f"{server.url}/v1/score",
        content=content,
        headers=tokens.header("platform") | {"Content-Type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500
    assert "Traceback" not in response.text


def test_too_many_413(server, tokens):
    records = [{}] * (MAX_BATCH_RECORDS + 1)
    response = httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": records},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["max_records"] == MAX_BATCH_RECORDS


def test_log_has_counts_not_values(server, trained, tokens):
    httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": trained.holdout_records[:7]},
        timeout=30,
    )
    httpx.post(
        f"{server.url}/v1/score",
        headers=tokens.header("platform"),
        json={"records": [{"x": "secret-value"}]},
        timeout=30,
    )
    httpx.post(
        f"{server.url}/v1/score",
        content=b"secret-body{",
        headers=tokens.header("platform") | {"Content-Type": "application/json"},
        timeout=30,
    )
    log = server.log()
    assert "scoring service starting" in log
    assert "model loaded (name serving-test-model, version 1)" in log
    assert "scored 7 record(s) in" in log
    assert "rejected scoring request: 20 problem(s), 1 record(s) received" in log
    assert "request body rejected: 1 validation error(s)" in log
    rejected = [line for line in log.splitlines() if "request body rejected" in line]
    assert all("[INFO]" in line for line in rejected)
    assert "secret-value" not in log
    assert "secret-body" not in log


def test_metrics_name_served_model(server, trained):
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    served = (
        f'ajoissa_model_loaded{{model="{trained.loaded.name}",'
        f'version="{trained.loaded.version}"}} 1.0'
    )
    assert served in metrics


def test_second_server_keeps_first_servers_metrics(server, trained, tmp_path):
    # BentoML empties its shared Prometheus folder when a server starts.
    with _run_server("no-such-model", tmp_path, "/healthz") as other:
        other_metrics = httpx.get(f"{other.url}/metrics", timeout=10).text
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'ajoissa_model_loaded{{model="{trained.loaded.name}"' in metrics
    assert "no-such-model" not in metrics
    assert trained.loaded.name not in other_metrics


def test_stop_logged(server):
    # Runs after every test that uses the shared server, because it stops it.
    _stop(server.process)
    assert server.process.returncode is not None
    assert "scoring service stopping" in server.log()


def test_no_model_not_ready(trained, tmp_path, tokens):
    with _run_server("no-such-model", tmp_path, "/healthz") as running:
        ready = httpx.get(f"{running.url}/readyz", timeout=10)
        scored = httpx.post(
            f"{running.url}/v1/score",
            headers=tokens.header("platform"),
            json={"records": trained.holdout_records[:1]},
            timeout=30,
        )
        metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
        log = running.log()
    assert 'ajoissa_model_load_failures_total{model="no-such-model"}' in metrics
    assert "ajoissa_model_loaded{" not in metrics
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/json"
    assert "GET /v1/model" in ready.json()["error"]
    assert "no-such-model" not in ready.text
    assert scored.status_code == 503
    assert "'no-such-model' is not loaded" in scored.json()["error"]
    assert "failed to load model no-such-model" in log
