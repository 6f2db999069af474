"""Benchmark small LightGBM fits on one thread against two, with a core taken.

Usage::

    PYTHONPATH=. python benchmarks/fit_threads.py [--fits 30] [--rows 3500]

It fits ``--fits`` boosters of 100 rounds on a random table of ``--rows``
rows and 40 columns. It does so first with both cores free, then while a
child process spins on one core. Each time it fits with ``n_jobs`` 2 and 1;
LightGBM's two OpenMP threads spin while they wait. It prints the seconds and the ratio of one
thread to two. ``models.risk.SINGLE_THREAD_ROWS`` rests on these figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import lightgbm as lgb
import numpy as np


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def _fits(X: np.ndarray, y: np.ndarray, fits: int, n_jobs: int) -> float:
    started = time.perf_counter()
    for seed in range(fits):
        model = lgb.LGBMClassifier(
            n_estimators=100, verbose=-1, random_state=seed, n_jobs=n_jobs
        )
        model.fit(X, y).predict_proba(X[:500])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=int, default=30, help="Fits per measurement.")
    parser.add_argument("--rows", type=int, default=3500, help="Rows of the table.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 40))
    y = (X[:, 0] + rng.normal(size=args.rows) > 0).astype(int)

    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
    print("| cores | n_jobs 2, s | n_jobs 1, s | 1 thread / 2 threads |")
    print("|---|---:|---:|---:|")
    for label, busy in (
        ("both free", False),
        ("one taken by a spinning process", True),
    ):
        spinner = None
        if busy:
            spinner = multiprocessing.Process(target=_spin, args=(3600,), daemon=True)
            spinner.start()
        try:
            two_threads = _fits(X, y, args.fits, 2)
            one_thread = _fits(X, y, args.fits, 1)
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.join()
        print(
            f"| {label} | {two_threads:.2f} | {one_thread:.2f} | "
            f"{one_thread / two_threads:.2f} |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
