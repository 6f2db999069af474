"""End-to-end tests against a real BentoML server on 127.0.0.1."""

from __future__ import annotations

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


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/readyz not 200 within {READY_TIMEOUT_SECONDS} s:\n{server.log()}")


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


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory) -> Iterator[RunningServer]:
    """Start ``run_server`` in a subprocess, as ``ajoissa serve`` does."""
    from tests_serving_names import MODEL_NAME  # noqa: F401  (replaced below)

    yield  # pragma: no cover
