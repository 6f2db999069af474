"""Run one benchmark step in a new Python process and measure it there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def measure_in_child(
    module: str, steps: str, step: str, path: Path
) -> dict[str, float]:
    """Run ``module.steps[step](path)`` in a child process and return its figures.

    The result has ``rows`` (the step's int result, or the length of what it
    returns), ``seconds`` (wall time), ``cpu_seconds`` (user and system time
    of all the child's threads) and ``peak_mib``. Peak memory is the child's
    VmHWM (high-water resident set size), which a new program starts afresh.
    ``ru_maxrss`` would not do: Linux carries it over from the parent through
    fork and exec.
    """
    code = (
        f"import json, sys, time; sys.path.insert(0, {str(REPO_ROOT)!r});"
        f"from pathlib import Path; import {module} as b;"
        "t = time.perf_counter(); c0 = time.process_time();"
        f"result = b.{steps}[{step!r}](Path({str(path)!r}));"
        "s = time.perf_counter() - t; c = time.process_time() - c0;"
        "rows = result if isinstance(result, int) else len(result);"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
        "print(json.dumps({'seconds': s, 'cpu_seconds': c, 'rows': rows,"
        " 'peak_mib': int(hwm.split()[1]) / 1024}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])
