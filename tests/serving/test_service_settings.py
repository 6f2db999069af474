"""Server settings read from the environment."""

from __future__ import annotations

import os

import pytest

from serving.middleware import DEFAULT_MAX_BODY_BYTES, max_body_bytes
from serving.scoring import MAX_BATCH_RECORDS
from serving.service import (
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ScoringService,
    _request_timeout,
    _worker_count,
)

SLOWEST_BENCHMARK_RECORDS_PER_SECOND = 386
"""Slowest HTTP rate with reasons in docs/benchmarks.md (load average about 13)."""


def test_workers_default_per_core(monkeypatch):
    monkeypatch.delenv("AJOISSA_WORKERS", raising=False)
    assert _worker_count() == (os.cpu_count() or 1)


def test_workers_from_env(monkeypatch):
    monkeypatch.setenv("AJOISSA_WORKERS", "3")
    assert _worker_count() == 3


@pytest.mark.parametrize("raw", ["0", "two", "-1"])
def test_workers_invalid(monkeypatch, raw):
    monkeypatch.setenv("AJOISSA_WORKERS", raw)
    with pytest.raises(ValueError, match="invalid AJOISSA_WORKERS"):
        _worker_count()


def test_body_limit_default(monkeypatch):
    monkeypatch.delenv("AJOISSA_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes() == DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize("raw", ["0", "1MB", ""])
def test_body_limit_invalid(monkeypatch, raw):
    monkeypatch.setenv("AJOISSA_MAX_BODY_BYTES", raw)
    with pytest.raises(ValueError, match="invalid AJOISSA_MAX_BODY_BYTES"):
        max_body_bytes()


def test_timeout_fits_full_batch():
    seconds = MAX_BATCH_RECORDS / SLOWEST_BENCHMARK_RECORDS_PER_SECOND
    assert DEFAULT_REQUEST_TIMEOUT_SECONDS > 10 * seconds


def test_timeout_applied_to_service():
    assert ScoringService.config["traffic"]["timeout"] == _request_timeout()


def test_timeout_from_env(monkeypatch):
    monkeypatch.setenv("AJOISSA_REQUEST_TIMEOUT_SECONDS", "90.5")
    assert _request_timeout() == 90.5


@pytest.mark.parametrize("raw", ["0", "ten", "-5", "inf", "nan"])
def test_timeout_invalid(monkeypatch, raw):
    monkeypatch.setenv("AJOISSA_REQUEST_TIMEOUT_SECONDS", raw)
    with pytest.raises(ValueError, match="invalid AJOISSA_REQUEST_TIMEOUT_SECONDS"):
        _request_timeout()


def test_worker_config_requires_lifespan():
    import inspect

    import uvicorn
    from _bentoml_impl.worker import service as worker

    # BentoML's worker builds uvicorn.Config without a lifespan setting.
    assert "uvicorn.Config(" in inspect.getsource(worker.main.callback)
    config = uvicorn.Config(app=lambda scope, receive, send: None, log_config=None)
    assert config.lifespan == "on"


def test_failed_start_stops_worker():
    import uvicorn

    async def broken_app(scope, receive, send):
        raise RuntimeError("start-up failed")

    config = uvicorn.Config(app=broken_app, host="127.0.0.1", port=0, log_config=None)
    server = uvicorn.Server(config)
    # With lifespan "auto" the server would have started and served requests.
    with pytest.raises(SystemExit) as stopped:
        server.run()
    assert stopped.value.code != 0
    assert not server.started
