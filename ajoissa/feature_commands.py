"""The ``ajoissa features`` command: build a source's features on DuckDB or Spark."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from ajoissa.cli import (
    LabelWindowOption,
    TransferGapOption,
    app,
    apply_label_options,
    console,
    data_path_or_exit,
    output_file_or_exit,
)

logger = logging.getLogger(__name__)

FEATURES_HELP = (
    "Build the point-in-time features and labels of a source at its as-of dates "
    "(those of 'ajoissa run') and write them to one Parquet file, without "
    "training. The declarative learner features run on DuckDB in-process or on "
    "Apache Spark (--engine spark), which give the same values. Spark needs "
    "pip install 'ajoissa\\[spark]' and Java 17."
)


def _write_parquet_atomically(frame, out: Path) -> None:
    """Write ``frame`` to a temporary file beside ``out``, then rename it."""
    handle, temporary = tempfile.mkstemp(
        prefix=f".{out.name}-", suffix=".tmp", dir=out.parent
    )
    os.close(handle)
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@app.command("features", help=FEATURES_HELP)
def build_feature_file(
    out: Annotated[
        Path,
        typer.Option(
            help="Parquet file to write, ending in .parquet; a missing folder is "
            "created and an existing file replaced."
        ),
    ],
    source: Annotated[
        str, typer.Option(help="Source to read: records or oulad.")
    ] = "records",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the source's data; the source's default if unset."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="Engine for the learner features: duckdb or spark."),
    ] = "duckdb",
    spark_master: Annotated[
        str,
        typer.Option(
            help="Spark master URL for --engine spark: local[N] runs N worker "
            "threads on this machine, spark://HOST:PORT or yarn a cluster."
        ),
    ] = "local[2]",
    label_window_days: LabelWindowOption = None,
    transfer_gap_days: TransferGapOption = None,
) -> None:
    from ajoissa.catalog import SOURCES
    from features.build import asof_points_by_offset, build_features
    from features.engines import ENGINES, SparkEngine, make_engine
    from sources.errors import InputDataError, MappingError

    if source not in ("records", "oulad"):
        typer.echo(f"Invalid --source {source!r}: use records or oulad.", err=True)
        raise typer.Exit(code=2)
    if engine not in ENGINES:
        typer.echo(
            f"Invalid --engine {engine!r}: use {' or '.join(ENGINES)}.", err=True
        )
        raise typer.Exit(code=2)
    output_file_or_exit(out, ".parquet", "Parquet")
    entry = SOURCES[source]
    path = data_path_or_exit(source, data, None)
    config = entry.run_config(path)
    apply_label_options(config, label_window_days, transfer_gap_days)
    if engine != "duckdb" and not config.learner_features:
        typer.echo(
            f"Source {source} has no declarative learner features, so --engine "
            f"{engine} has nothing to run; use --engine duckdb.",
            err=True,
        )
        raise typer.Exit(code=2)

    started = time.perf_counter()
    try:
        with console.status(f"reading {source} from {path}"):
            tables = entry.load(path).validated()
    except (InputDataError, MappingError) as exc:
        # Exit 2 for bad input, as run and inspect do.
        typer.echo(f"Input data error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    points = asof_points_by_offset(tables.units, config.asof_offsets_days)
    runner = make_engine(engine, spark_master)
    try:
        with console.status(f"building features on {engine}"):
            frame = build_features(
                tables,
                points,
                config.label_rule,
                with_learner_features=config.learner_features,
                engine=runner,
            )
    finally:
        if isinstance(runner, SparkEngine):
            runner.close()
    if config.label_window_days is not None:
        from training.validate import with_label_window

        frame = with_label_window(frame, tables.enrolments, config.label_window_days)
    _write_parquet_atomically(frame.data, out)
    console.print(
        f"Wrote {len(frame.data):,} rows and {len(frame.feature_names)} features "
        f"built on {engine} to {out} in {time.perf_counter() - started:.1f} s"
    )
    if frame.rows_past_data_end:
        console.print(
            f"Left out {frame.rows_past_data_end:,} rows whose label window, plus "
            "the transfer gap in which a new study right can still start, runs "
            f"past the data end {frame.data_end.date() if frame.data_end else '-'}: "
            "their labels are not known yet.",
            highlight=False,
        )
