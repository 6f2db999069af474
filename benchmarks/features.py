"""Benchmark the attendance feature build against pandas and a plain DuckDB scan.

For each pupil count, the script writes one school year of synthetic
lesson-level marks (six lessons a day, about 1,000 marks per pupil). It then
runs three builds, each in its own process, so that peak memory is measured per
build:

- ``ajoissa``: the attendance features of ``features.definitions`` compiled to
  SQL and run by DuckDB on the Parquet file;
- ``pandas``: the same features, vectorised in pandas, 10,000 pupils at a
  time so that memory stays bounded;
- ``floor``: a plain DuckDB group-by scan of the same marks (count and
  unexcused count per pupil), the least any build must do.

Before timing, it checks that the pandas and DuckDB features agree on the first
pupil count.

It runs the builds in ``--repeats`` rounds (3 by default), each round one
run of every build in turn. Per build it prints the median wall time, the
median CPU time, the largest peak memory, the ratios against the floor and
against pandas, and the load average, so that one run gives every figure of
the table in docs/benchmarks.md. The median damps the swings of a machine
shared with other work. Each round runs the feature build and the floor one
after the other, so both meet about the same load. The script also prints
each round's ratio of the two and their median. CPU time (user and
system, all threads) moves less than wall time when other jobs share the
cores.

Run: ``PYTHONPATH=. python benchmarks/features.py --pupils 10000 100000 1000000
--workdir /path/with/space``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
# Running this file puts benchmarks/ first on sys.path, where this module's own
# name would hide the features package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "benchmarks"]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.child import measure_in_child  # noqa: E402 - needs the path above

ASOF = pd.Timestamp("2025-02-03")
WINDOWS_DAYS = {"2w": 14, "4w": 28, "8w": 56}
YEAR_START = pd.Timestamp("2024-08-01")
TERM_START = pd.Timestamp("2025-01-01")


def attendance_features():
    from features.definitions import LEARNER_FEATURES, FeatureDef

    return [
        f
        for f in LEARNER_FEATURES
        if isinstance(f, FeatureDef) and f.source == "attendance"
    ]


def prepare(pupils: int, folder: Path) -> Path:
    """Write synthetic marks and convert them to contract attendance (untimed).

    Reuses the marks file when ``folder`` already has one for ``pupils``; the
    synthetic records depend only on the seed and the settings.
    """
    import shutil

    import duckdb

    from sources.school.synth import SynthConfig, generate

    marks = folder / f"attendance-{pupils}.parquet"
    if marks.exists():
        return marks
    records = folder / f"records-{pupils}"
    generate(
        SynthConfig(pupils=pupils, years=1, seed=1, first_year=2024, lessons_per_day=6),
        records,
    )
    partial = marks.with_suffix(".partial")
    with duckdb.connect() as con:
        con.execute(
            f"""
            COPY (
              SELECT pupil_id AS enrolment_id, CAST(lesson_start AS DATE) AS date,
                     CASE mark_code WHEN 'P' THEN 'present' WHEN 'MY' THEN 'late'
                          WHEN 'LV' THEN 'unexcused' ELSE 'excused' END AS mark
              FROM '{records}/attendance_marks.parquet'
              WHERE recorded_by = 'teacher'
            ) TO '{partial}' (FORMAT parquet)
            """
        )
        con.execute(
            f"""
            COPY (SELECT DISTINCT enrolment_id, enrolment_id AS learner_id
                  FROM read_parquet('{partial}') ORDER BY enrolment_id)
            TO '{enrolments_file(marks)}' (FORMAT parquet)
            """
        )
    partial.rename(marks)
    shutil.rmtree(records)
    return marks


def enrolments_file(marks: Path) -> Path:
    """Return the enrolments table written next to ``marks``; one per pupil."""
    return marks.with_name(marks.name.replace("attendance-", "enrolments-"))


def build_duckdb(marks: Path) -> pd.DataFrame:
    import duckdb

    from features.definitions import compile_sql
    from features.engines import DUCKDB_MEMORY_LIMIT

    compiled = compile_sql(attendance_features(), {"attendance"})
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        con.execute(f"CREATE VIEW attendance AS SELECT * FROM '{marks}'")
        con.execute(
            f"CREATE VIEW enrolments AS SELECT * FROM '{enrolments_file(marks)}'"
        )
        con.execute(
            f"CREATE VIEW asof_keys AS SELECT learner_id, TIMESTAMP '{ASOF}' AS asof_date "
            "FROM enrolments"
        )
        return compiled.finish(con.execute(compiled.sql).df())


PANDAS_CHUNK_PUPILS = 10_000
"""Pupils per pandas chunk; about 1.2 GB peak memory per chunk of 10,000."""


def build_pandas(marks: Path) -> pd.DataFrame:
    """Compute the features in pandas, reading ``PANDAS_CHUNK_PUPILS`` at a time.

    Each chunk is a range of sorted enrolment ids, read with a Parquet filter
    so that row groups outside the range are skipped when the file is sorted.
    A pupil's marks never span two chunks, so the chunks' features concatenate.
    """
    pupils = pd.read_parquet(enrolments_file(marks), columns=["enrolment_id"])
    ids = np.sort(pupils["enrolment_id"].to_numpy(dtype=object))
    parts = []
    for start in range(0, len(ids), PANDAS_CHUNK_PUPILS):
        chunk = ids[start : start + PANDAS_CHUNK_PUPILS]
        frame = pd.read_parquet(
            marks,
            filters=[
                ("enrolment_id", ">=", chunk[0]),
                ("enrolment_id", "<=", chunk[-1]),
                ("date", "<=", ASOF.date()),
            ],
        )
        parts.append(pandas_features(frame))
    return pd.concat(parts, ignore_index=True)


def pandas_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Compute the attendance features of the pupils in ``frame``, vectorised."""
    frame = frame[frame["date"] <= ASOF.date()]
    day = pd.to_datetime(frame["date"])
    learner = frame["enrolment_id"].astype("category")
    absent = frame["mark"].isin(["excused", "unexcused"]).to_numpy()
    unexcused = (frame["mark"] == "unexcused").to_numpy()
    late = (frame["mark"] == "late").to_numpy()
    codes = learner.cat.codes.to_numpy()
    groups = len(learner.cat.categories)
    out = pd.DataFrame(index=learner.cat.categories)
    out.index.name = "learner_id"

    def share(flag: np.ndarray, mask: np.ndarray) -> np.ndarray:
        count = np.bincount(codes[mask], minlength=groups)
        hits = np.bincount(codes[mask], weights=flag[mask], minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, hits / count, np.nan)

    masks = {
        w: (day > ASOF - pd.Timedelta(days=d)).to_numpy()
        for w, d in WINDOWS_DAYS.items()
    }
    masks["term"] = (day >= TERM_START).to_numpy()
    masks["year"] = (day >= YEAR_START).to_numpy()
    for window, mask in masks.items():
        out[f"absence_share_{window}"] = share(absent, mask)
        out[f"unexcused_share_{window}"] = share(unexcused, mask)
        out[f"late_share_{window}"] = share(late, mask)

    x = (day - ASOF).dt.days.to_numpy().astype(float)
    for name, mask in (
        ("absence_slope_8w", masks["8w"]),
        ("absence_slope_term", masks["term"]),
    ):
        c, xs, ys = codes[mask], x[mask], absent[mask].astype(float)
        n = np.bincount(c, minlength=groups)
        sx = np.bincount(c, xs, groups)
        sy = np.bincount(c, ys, groups)
        sxx = np.bincount(c, xs * xs, groups)
        sxy = np.bincount(c, xs * ys, groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            denominator = n * sxx - sx * sx
            out[name] = np.where(
                denominator > 0, (n * sxy - sx * sy) / denominator, np.nan
            )

    daily = pd.DataFrame({"learner": codes, "day": day.to_numpy(), "absent": absent})
    daily = daily.groupby(["learner", "day"], sort=True)["absent"].all().reset_index()
    new_run = (daily["learner"].diff() != 0) | (
        daily["absent"] != daily["absent"].shift()
    )
    run = new_run.cumsum()
    lengths = (
        daily[daily["absent"]]
        .groupby(run[daily["absent"]])
        .agg(learner=("learner", "first"), days=("absent", "size"))
    )
    streak = lengths.groupby("learner")["days"].max()
    out["absence_streak_year"] = 0
    out.iloc[streak.index.to_numpy(), out.columns.get_loc("absence_streak_year")] = (
        streak.to_numpy()
    )
    year = masks["year"]
    out["absence_hours_year"] = np.bincount(codes[year], absent[year] * 0.75, groups)
    out["unexcused_hours_year"] = np.bincount(
        codes[year], unexcused[year] * 0.75, groups
    )
    term = masks["term"]
    out["unexcused_hours_term"] = np.bincount(
        codes[term], unexcused[term] * 0.75, groups
    )
    return out.reset_index()


def build_floor(marks: Path) -> pd.DataFrame:
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        return con.execute(
            f"SELECT enrolment_id, count(*) AS marks, "
            f"count(*) FILTER (WHERE mark = 'unexcused') AS unexcused "
            f"FROM '{marks}' GROUP BY enrolment_id"
        ).df()


BUILDS = {"ajoissa": build_duckdb, "pandas": build_pandas, "floor": build_floor}


def measure(build: str, marks: Path) -> dict[str, float]:
    """Run one build in a child process and return its wall time, CPU time and
    peak memory (:func:`benchmarks.child.measure_in_child`)."""
    return measure_in_child("benchmarks.features", "BUILDS", build, marks)


def check_agreement(marks: Path) -> None:
    ours = build_duckdb(marks).set_index("learner_id").sort_index()
    theirs = build_pandas(marks).set_index("learner_id").sort_index()
    for column in theirs.columns:
        np.testing.assert_allclose(
            ours[column].to_numpy(float),
            theirs[column].to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
            equal_nan=True,
            err_msg=column,
        )
    print(
        f"pandas and DuckDB agree on {len(theirs.columns)} features, {len(theirs)} pupils"
    )


def describe_run() -> str:
    """Return the commit, machine and settings the figures depend on."""
    import os

    import duckdb

    from features.engines import DUCKDB_MEMORY_LIMIT

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=REPO_ROOT, check=False
        ).stdout.strip()

    dirty = " (uncommitted changes)" if git("status", "--porcelain") else ""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"# commit {git('rev-parse', '--short', 'HEAD')}{dirty}; "
        f"{os.cpu_count()} cores, {memory:.0f} GiB; DuckDB {duckdb.__version__}, "
        f"memory_limit {DUCKDB_MEMORY_LIMIT}; pandas {pd.__version__}, "
        f"{PANDAS_CHUNK_PUPILS:,} pupils per chunk"
    )


def load_average() -> float:
    """Return the one-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pupils",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="pupil counts to measure, one school year of marks each",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the generated marks, reused when it has them "
        "(default: a new temporary folder)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="rounds per pupil count, each one run of every build; the "
        "median wall time and the largest peak memory are reported "
        "(default: 3)",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ajoissa-bench-"))
    print(describe_run())
    print(
        "pupils | marks | build | wall s | CPU s | peak MiB | time / floor | "
        "CPU / floor | time / pandas | memory / floor | load average"
    )
    for index, pupils in enumerate(args.pupils):
        started = time.perf_counter()
        marks = prepare(pupils, workdir)
        count = pq.ParquetFile(marks).metadata.num_rows
        print(f"# prepared {count:,} marks in {time.perf_counter() - started:.0f} s")
        if index == 0:
            check_agreement(marks)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in BUILDS}
        for _ in range(args.repeats):
            # The floor runs right after the feature build, so the two
            # meet about the same load.
            for name in ("ajoissa", "floor", "pandas"):
                runs[name].append(measure(name, marks) | {"load": load_average()})
        results = {
            name: {
                "seconds": statistics.median(r["seconds"] for r in build_runs),
                "cpu_seconds": statistics.median(r["cpu_seconds"] for r in build_runs),
                "peak_mib": max(r["peak_mib"] for r in build_runs),
                "load": build_runs[-1]["load"],
            }
            for name, build_runs in runs.items()
        }
        floor, pandas = results["floor"], results["pandas"]
        for name, r in results.items():
            print(
                f"{pupils:,} | {count:,} | {name} | {r['seconds']:.2f} | "
                f"{r['cpu_seconds']:.2f} | {r['peak_mib']:,.0f} | "
                f"{r['seconds'] / floor['seconds']:.1f} | "
                f"{r['cpu_seconds'] / floor['cpu_seconds']:.1f} | "
                f"{r['seconds'] / pandas['seconds']:.2f} | "
                f"{r['peak_mib'] / floor['peak_mib']:.1f} | {r['load']:.1f}"
            )
        rounds = [
            build["seconds"] / base["seconds"]
            for build, base in zip(runs["ajoissa"], runs["floor"], strict=True)
        ]
        print(
            f"# {pupils:,} pupils, ajoissa time / floor per round: "
            + ", ".join(f"{ratio:.1f}" for ratio in rounds)
            + f" (median {statistics.median(rounds):.1f})"
        )
    print(
        f"# wall s, CPU s: medians of {args.repeats} runs, each in its own "
        "process; "
        "peak MiB: the largest VmHWM of those processes"
    )
    print("# load average: one-minute load average when the build ended")


if __name__ == "__main__":
    main()
