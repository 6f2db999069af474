"""Benchmark the memory and time of loading a school-records export.

The script writes a synthetic export (``ajoissa synth``) and loads it the way
``ajoissa run --source records`` does, each in its own process:

- ``load``: :func:`sources.school.records.read_records` (reading, checking
  and typing every table, resolving duplicate marks), then
  :func:`sources.school.mapping.to_input_tables` and
  :meth:`sources.contract.InputTables.validated`;
- ``floor``: the attendance marks file read into pandas as it is
  (``read_parquet``, or ``read_csv`` with every value as text), with no
  check. The marks are nearly all of an export's rows.

It prints the wall time and the peak resident memory (``VmHWM``) of each, per
attendance mark and as a ratio of the load over the floor, with the load
average. ``--repeats`` runs each that many times and keeps the median time
and the largest peak.

Run: ``PYTHONPATH=. python benchmarks/records_load.py --pupils 3000 --years 4
--workdir /path/with/space``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.child import measure_in_child  # noqa: E402 - needs the path above


def load(folder: Path) -> int:
    """Load the export as the main job does and return the number of marks kept."""
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records

    tables = to_input_tables(read_records(folder, folder / "mark_codes.csv"))
    return len(tables.validated().attendance)


def floor(folder: Path) -> int:
    """Read the marks file with no check and return its number of rows."""
    import pandas as pd

    from sources.school.records import CSV_OPTIONS

    parquet = folder / "attendance_marks.parquet"
    if parquet.is_file():
        return len(pd.read_parquet(parquet))
    marks = pd.read_csv(
        folder / "attendance_marks.csv",
        dtype=str,
        keep_default_na=False,
        **CSV_OPTIONS,
    )
    return len(marks)


STEPS = {"load": load, "floor": floor}


def measure(step: str, folder: Path) -> dict[str, float]:
    """Run one step in a new process and return its rows, seconds and peak MiB.

    A new process starts its ``VmHWM`` afresh, so the peak is the step's own
    (with the interpreter and the imports).
    """
    return measure_in_child("benchmarks.records_load", "STEPS", step, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pupils", type=int, default=3000)
    parser.add_argument("--years", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="Folder for the export. An export already there is reused.",
    )
    args = parser.parse_args()

    from sources.school.synth import SynthConfig, generate

    folder = args.workdir / f"records-{args.pupils}-{args.years}y-{args.format}"
    if not (folder / "mark_codes.csv").is_file():
        config = SynthConfig(
            pupils=args.pupils,
            years=args.years,
            seed=args.seed,
            file_format=args.format,
        )
        generate(config, folder)
    load_before = os.getloadavg()[0]
    results = {}
    for step in STEPS:
        runs = [measure(step, folder) for _ in range(args.repeats)]
        results[step] = {
            "rows": runs[0]["rows"],
            "seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs),
        }
    marks = results["floor"]["rows"]
    print(
        f"export: {folder} ({args.format}), {marks:,} marks; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print()
    print(
        "| step | wall s | peak MiB | bytes per mark | time / floor | memory / floor |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    base = results["floor"]
    for step, figures in results.items():
        print(
            f"| {step} | {figures['seconds']:.1f} | {figures['peak_mib']:,.0f} | "
            f"{figures['peak_mib'] * 2**20 / marks:.0f} | "
            f"{figures['seconds'] / base['seconds']:.1f} | "
            f"{figures['peak_mib'] / base['peak_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()
