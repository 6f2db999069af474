"""Benchmark the scoring API against in-process scoring of the same records.

Usage::

    PYTHONPATH=. python benchmarks/serving.py [--requests 400] [--repeats 3]

The script trains a LightGBM model with the default hyperparameters on OULAD
features as of day 60, registers it in a temporary store, starts the real server
on 127.0.0.1 with a platform token and measures:

- single-record ``POST /v1/score`` requests (reasons included) at concurrency
  1, 8 and 32: p50 and p99 latency and requests per second;
- batches of 1,000 and 10,000 records over HTTP, with reasons and with
  ``include_reasons: false``, in records per second (median of the repeats);
- the floor: in-process ``predict_risk`` alone, and ``predict_risk`` plus SHAP
  contributions and reason codes, on the same records encoded as the server
  encodes them, in records per second (best of the repeats). Each floor run
  follows one HTTP request of the same batch, so both see the same load.

It prints the load average, then Markdown tables with the HTTP figures as
ratios of the floor for the same work: without reasons against predict only,
with reasons against predict + SHAP. The client runs on the same machine as the
server, so both share the CPU cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
# Python puts this script's folder first on sys.path, where this file's name
# would hide the ``serving`` package.
sys.path[:] = [
    p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "benchmarks"
]
sys.path.insert(0, str(REPO_ROOT))
MODEL_NAME = "benchmark-model"
CONCURRENCY = (1, 8, 32)
BATCH_SIZES = (1_000, 10_000)


def _prepare(home: Path) -> tuple[list[dict], object]:
    import mlflow

    from features.build import asof_points_by_offset, build_features
    from models.risk import fit_risk_model
    from models.store import load_registered
    from sources.oulad import load_oulad
    from training.registry import ensure_experiment, log_and_register

    os.environ["AJOISSA_HOME"] = str(home)
    tables = load_oulad(REPO_ROOT / "ajoissa" / "data" / "oulad").validated()
    frame = build_features(tables, asof_points_by_offset(tables.units, [60]))
    X = frame.X
    model, spec = fit_risk_model(X, frame.y)
    with mlflow.start_run(experiment_id=ensure_experiment()):
        log_and_register(model, spec, X.head(50), MODEL_NAME)
    loaded = load_registered(MODEL_NAME)
    sample = X.sample(n=max(BATCH_SIZES), random_state=0, replace=len(X) < 10_000)
    records = [
        {key: (None if pd.isna(value) else _plain(value)) for key, value in row.items()}
        for row in sample.to_dict("records")
    ]
    return records, loaded


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _floor_seconds(batch: object, loaded: object, reasons: bool) -> float:
    """Return the seconds of in-process scoring of ``batch``, the floor's work."""
    from models.reasons import contributions, reason_codes
    from models.risk import predict_risk
    from serving.scoring import TOP_REASONS

    started = time.perf_counter()
    predict_risk(loaded.model, loaded.spec, batch.matrix, loaded.calibration)
    if reasons:
        values, _ = contributions(loaded.model, loaded.spec, batch.matrix)
        reason_codes(values, batch.columns, loaded.spec.features, TOP_REASONS)
    return time.perf_counter() - started


def _single(url: str, headers: dict, records: list[dict], requests: int) -> dict:
    results = {}
    for concurrency in CONCURRENCY:
        clients = [
            httpx.Client(timeout=60, headers=headers) for _ in range(concurrency)
        ]

        def send(
            index: int, clients: list[httpx.Client] = clients, size: int = concurrency
        ) -> float:
            client = clients[index % size]
            body = {"records": [records[index % len(records)]]}
            started = time.perf_counter()
            response = client.post(f"{url}/v1/score", json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            return elapsed

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, range(concurrency * 5)))  # warm-up
            started = time.perf_counter()
            latencies = list(pool.map(send, range(requests)))
            wall = time.perf_counter() - started
        for client in clients:
            client.close()
        latencies_ms = np.array(latencies) * 1000
        results[concurrency] = {
            "p50_ms": float(np.percentile(latencies_ms, 50)),
            "p99_ms": float(np.percentile(latencies_ms, 99)),
            "rps": requests / wall,
        }
    return results


def _batches(
    url: str, headers: dict, records: list[dict], loaded: object, repeats: int
) -> tuple[dict, dict]:
    """Return HTTP and floor records per second by batch size and reasons.

    Each HTTP request is followed by one run of the floor's work on the same
    records, so both see the same load on the shared cores.
    """
    from serving.scoring import validate_records

    http, floor = {}, {}
    with httpx.Client(timeout=600, headers=headers) as client:
        for size in BATCH_SIZES:
            batch = validate_records(records[:size], loaded.spec)
            for reasons in (False, True):
                # Encoded once, so the timings leave out the client's JSON encoding.
                body = json.dumps(
                    {"records": records[:size], "include_reasons": reasons}
                ).encode("utf-8")
                send = functools.partial(
                    client.post,
                    f"{url}/v1/score",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                send().raise_for_status()
                _floor_seconds(batch, loaded, reasons)
                times, floor_times = [], []
                for _ in range(repeats):
                    started = time.perf_counter()
                    send().raise_for_status()
                    times.append(time.perf_counter() - started)
                    floor_times.append(_floor_seconds(batch, loaded, reasons))
                http[size, reasons] = size / statistics.median(times)
                floor[size, reasons] = size / min(floor_times)
    return http, floor


def _start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = (
        "from serving.server import run_server; "
        f"run_server(host='127.0.0.1', port={port}, model_name={MODEL_NAME!r})"
    )
    env = dict(os.environ) | {
        "AJOISSA_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": str(REPO_ROOT),
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", command],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"server not ready in 120 s; see {home / 'server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="Single-record requests per concurrency level.",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Timed repeats per batch size."
    )
    parser.add_argument(
        "--port", type=int, default=3917, help="TCP port of the server on 127.0.0.1."
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="ajoissa-bench-") as tmp:
        home = Path(tmp)
        records, loaded = _prepare(home)

        from serving.access import TokenStore

        token, _ = TokenStore(home / "access.db").create("platform")
        headers = {"Authorization": f"Bearer {token}"}
        process = _start_server(home, args.port)
        try:
            url = f"http://127.0.0.1:{args.port}"
            single = _single(url, headers, records, args.requests)
            batches, floor = _batches(url, headers, records, loaded, args.repeats)
        finally:
            process.send_signal(2)
            process.wait(timeout=60)

    print(f"load average before: {load_before}; after: {_load_average()}")
    print(
        f"model: LightGBM, {loaded.model.n_estimators_} trees, "
        f"{len(loaded.spec.features)} features"
    )
    print()
    print("| concurrency | p50 ms | p99 ms | requests/s |")
    print("|---:|---:|---:|---:|")
    for concurrency, values in single.items():
        print(
            f"| {concurrency} | {values['p50_ms']:.1f} | {values['p99_ms']:.1f} | "
            f"{values['rps']:.0f} |"
        )
    print()
    print(
        "| batch | reasons | HTTP records/s | floor records/s (same work) | "
        "HTTP / floor |"
    )
    print("|---:|---|---:|---:|---:|")
    for size in BATCH_SIZES:
        for reasons, label in (
            (False, "no (predict only)"),
            (True, "yes (predict + SHAP)"),
        ):
            http = batches[size, reasons]
            base = floor[size, reasons]
            print(
                f"| {size:,} | {label} | {http:,.0f} | {base:,.0f} | "
                f"{http / base:.2f} |"
            )


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
