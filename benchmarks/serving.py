"""Benchmark the scoring API against in-process scoring of the same records.

Usage::

    PYTHONPATH=. python benchmarks/serving.py [--requests 400] [--repeats 3]

The script trains a LightGBM model with the default hyperparameters on OULAD
features as of day 60, registers it in a temporary store, starts the real server
on 127.0.0.1 with a platform token and measures:

- single-record ``POST /v1/score`` requests (reasons included) at concurrency
  1, 8 and 32: p50 and p99 latency and requests per second;
- batches of 1,000 and 10,000 records over HTTP, with reasons and with
  ``include_reasons: false``, in records per second: one request at a time
  (median of the repeats), and ``BATCH_CONCURRENCY`` requests at a time, one
  per worker process (total records over the elapsed time of the repeats).
  ``--repeats`` counts the 10,000-record requests; 1,000-record requests
  are repeated ten times as often, so both sizes send as many records;
- the floor: in-process ``predict_risk`` alone, and ``predict_risk`` plus SHAP
  contributions and reason codes, on the same records encoded as the server
  encodes them, in records per second. Each floor run follows one HTTP
  request of the same batch, so both see the same load.
  The client sets ``OMP_WAIT_POLICY=PASSIVE`` (unless it is set already), so
  that the floor's OpenMP threads sleep rather than spin through the next
  HTTP request; the server runs with the caller's setting.

It prints the load average, then Markdown tables with the HTTP figures as
ratios of the floor for the same work: without reasons against predict only,
with reasons against predict + SHAP. A batch ratio compares medians, and a
second column compares the best request with the best floor run. Records per
second in the tables are from medians. The client runs on the same machine as the
server, so both share the CPU cores.

The client is the standard library's :mod:`http.client`: one thread and one
keep-alive connection per concurrent request, sending bodies that were
encoded to JSON before timing. A latency runs from sending the request to
reading the last byte of the response body, whose status must be 200.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
# Python puts this script's folder first on sys.path, where this file's name
# would hide the ``serving`` package.
sys.path[:] = [
    p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "benchmarks"
]
sys.path.insert(0, str(REPO_ROOT))
_SERVER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
# libgomp, which LightGBM uses, keeps a thread spinning for a while after each
# parallel run by default. Here the floor's threads would then spin through the
# next HTTP request and take a core from the server, which a deployed server
# does not share with its clients. Set before LightGBM loads libgomp; the
# server keeps its own setting (see _start_server).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MODEL_NAME = "benchmark-model"
CONCURRENCY = (1, 8, 32)
BATCH_SIZES = (1_000, 10_000)
BATCH_CONCURRENCY = 2
"""Concurrent batch requests: the server starts one worker process per core."""


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


class _Client:
    """One keep-alive HTTP connection that posts JSON bodies to ``/v1/score``."""

    def __init__(self, port: int, token: str, timeout: float) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }

    def post(self, body: bytes) -> float:
        """Send ``body``, read the whole response and return the seconds taken.

        The server closes a connection after 5 s without a request (BentoML
        1.4.40 starts uvicorn with that keep-alive timeout), for example while
        the floor runs. The request is then sent again on a new connection,
        and only that attempt is timed.

        Raises
        ------
        RuntimeError
            If the response status is not 200.
        """
        try:
            return self._post_once(body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.connection.close()
            return self._post_once(body)

    def _post_once(self, body: bytes) -> float:
        started = time.perf_counter()
        self.connection.request("POST", "/v1/score", body=body, headers=self.headers)
        response = self.connection.getresponse()
        content = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(
                f"POST /v1/score returned {response.status}: {content[:500]!r}"
            )
        return elapsed

    def close(self) -> None:
        self.connection.close()


def _single(port: int, token: str, records: list[dict], requests: int) -> dict:
    # Encoded before timing, so the timings leave out the client's JSON encoding.
    bodies = [json.dumps({"records": [record]}).encode("utf-8") for record in records]
    results = {}
    for concurrency in CONCURRENCY:
        clients = [_Client(port, token, timeout=60) for _ in range(concurrency)]

        def run(slot: int, count: int, clients: list[_Client] = clients) -> list[float]:
            # Each thread sends every concurrency-th request on its own connection.
            step = len(clients)
            return [
                clients[slot].post(bodies[index % len(bodies)])
                for index in range(slot, count, step)
            ]

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(run, range(concurrency), [concurrency * 5] * concurrency))
            started = time.perf_counter()
            per_thread = list(
                pool.map(run, range(concurrency), [requests] * concurrency)
            )
            wall = time.perf_counter() - started
        for client in clients:
            client.close()
        latencies_ms = np.concatenate([np.array(times) for times in per_thread]) * 1000
        results[concurrency] = {
            "p50_ms": float(np.percentile(latencies_ms, 50)),
            "p99_ms": float(np.percentile(latencies_ms, 99)),
            "rps": requests / wall,
        }
    return results


def _batches(
    port: int, token: str, records: list[dict], loaded: object, repeats: int
) -> tuple[dict, dict]:
    """Return HTTP records per second one request at a time and concurrently,
    and the floor's records per second, by batch size and reasons.

    One request at a time and the floor give two rates each: from the median
    and from the best of the repeats. Each HTTP request is followed by one run
    of the floor's work on the same records, so both see the same load on the
    shared cores.
    """
    from serving.scoring import validate_records

    http_rates, concurrent, floor = {}, {}, {}
    client = _Client(port, token, timeout=600)
    try:
        for size in BATCH_SIZES:
            batch = validate_records(records[:size], loaded.spec)
            for reasons in (False, True):
                # Encoded once, so the timings leave out the client's JSON encoding.
                body = json.dumps(
                    {"records": records[:size], "include_reasons": reasons}
                ).encode("utf-8")
                client.post(body)
                _floor_seconds(batch, loaded, reasons)
                times, floor_times = [], []
                for _ in range(_repeats_for(size, repeats)):
                    times.append(client.post(body))
                    floor_times.append(_floor_seconds(batch, loaded, reasons))
                http_rates[size, reasons] = (
                    size / statistics.median(times),
                    size / min(times),
                )
                floor[size, reasons] = (
                    size / statistics.median(floor_times),
                    size / min(floor_times),
                )
                concurrent[size, reasons] = _concurrent_rate(
                    port, token, body, size, _repeats_for(size, repeats)
                )
    finally:
        client.close()
    return http_rates, concurrent, floor


def _repeats_for(size: int, repeats: int) -> int:
    """Return the timed repeats of a batch of ``size`` records.

    ``repeats`` applies to the largest batch, and a smaller batch is repeated
    as often as it takes to send as many records, so that its median and best
    rest on more requests. A median of three 1,000-record requests moved the
    ratio from 0.36 to 0.59 between runs (docs/benchmarks.md).
    """
    return repeats * max(1, max(BATCH_SIZES) // size)


def _concurrent_rate(
    port: int, token: str, body: bytes, size: int, repeats: int
) -> float:
    """Return records per second with ``BATCH_CONCURRENCY`` connections posting
    ``body`` ``repeats`` times each, after one untimed request per connection."""
    clients = [_Client(port, token, timeout=600) for _ in range(BATCH_CONCURRENCY)]
    try:
        for client in clients:
            client.post(body)
        started = time.perf_counter()
        with ThreadPoolExecutor(BATCH_CONCURRENCY) as pool:
            list(pool.map(lambda c: [c.post(body) for _ in range(repeats)], clients))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    return BATCH_CONCURRENCY * repeats * size / elapsed


def _start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = (
        "from serving.server import run_server; "
        f"run_server(host='127.0.0.1', port={port}, model_name={MODEL_NAME!r})"
    )
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if _SERVER_OMP_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = _SERVER_OMP_WAIT_POLICY
    env |= {
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
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            probe.request("GET", "/readyz")
            if probe.getresponse().status == 200:
                return process
        except OSError:
            pass
        finally:
            probe.close()
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
        "--repeats",
        type=int,
        default=3,
        help="Timed repeats of the 10,000-record batches; 1,000-record batches "
        "are repeated ten times as often.",
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
        process = _start_server(home, args.port)
        try:
            single = _single(args.port, token, records, args.requests)
            batches, concurrent, floor = _batches(
                args.port, token, records, loaded, args.repeats
            )
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
        "| batch | reasons | HTTP records/s, median (best) | floor records/s, "
        "same work, median (best) | HTTP / floor, medians | HTTP / floor, best | "
        f"HTTP records/s, {BATCH_CONCURRENCY} at a time | "
        f"HTTP, {BATCH_CONCURRENCY} at a time / floor median |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in BATCH_SIZES:
        for reasons, label in (
            (False, "no (predict only)"),
            (True, "yes (predict + SHAP)"),
        ):
            http, http_best = batches[size, reasons]
            base, base_best = floor[size, reasons]
            both = concurrent[size, reasons]
            print(
                f"| {size:,} | {label} | {http:,.0f} ({http_best:,.0f}) | "
                f"{base:,.0f} ({base_best:,.0f}) | {http / base:.2f} | "
                f"{http_best / base_best:.2f} | {both:,.0f} | {both / base:.2f} |"
            )


def _load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
