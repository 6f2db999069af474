"""The ``ajoissa synth`` command: synthetic school records for trials and tests."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ajoissa.cli import app, console

SYNTH_HELP = (
    "Write synthetic school records in the export format of docs/data-contract.md: "
    "pupils, schools, study rights and their states, lesson-level attendance marks, "
    "grades, support decisions and behaviour notes. Disengagement shows in "
    "attendance and grades before a dropout. The same seed and settings give the "
    "same files. Run the main job on them with: ajoissa run --source records --data DIR"
)


class FileFormat(str, Enum):
    """File formats that ``synth`` writes."""

    parquet = "parquet"
    csv = "csv"


@app.command(help=SYNTH_HELP)
def synth(
    pupils: Annotated[int, typer.Option(help="Number of pupils.", min=1)],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder to write. An earlier output of synth there is replaced, "
            "with the problem report of a failed load-records of it; a folder "
            "with other files is rejected."
        ),
    ],
    years: Annotated[
        int,
        typer.Option(
            help="Number of school years. `ajoissa run --source records` needs "
            "four with its default label window (365 days) and three with "
            "--label-window-days 183, because the latest year has no known "
            "labels yet.",
            min=1,
        ),
    ] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    first_year: Annotated[
        int,
        typer.Option(
            help="Calendar year in which the first school year starts, 1999 or "
            "later, so that load-records accepts every birth year. The last "
            "school year must have ended (31 July) by today."
        ),
    ] = 2022,
    lessons_per_day: Annotated[
        int, typer.Option(help="Lessons per school day, 1 to 8.", min=1, max=8)
    ] = 5,
    file_format: Annotated[
        FileFormat,
        typer.Option("--format", help="File format: parquet or csv (Excel style)."),
    ] = FileFormat.parquet,
) -> None:
    from sources.school.records import check_replaceable
    from sources.school.synth import (
        SynthConfig,
        check_config,
        expected_outputs,
        generate,
    )

    config = SynthConfig(
        pupils=pupils,
        years=years,
        seed=seed,
        first_year=first_year,
        lessons_per_day=lessons_per_day,
        file_format=file_format.value,
    )
    try:
        check_config(config)
    except ValueError as error:
        typer.echo(f"Invalid --first-year or --years: {error}", err=True)
        raise typer.Exit(code=2) from error
    try:
        check_replaceable(out.resolve(), expected_outputs(), "synth")
    except ValueError as error:
        typer.echo(f"Invalid --out: {error}", err=True)
        raise typer.Exit(code=2) from error
    started = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} pupils"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("simulating", total=pupils)
        counts = generate(
            config, out, on_chunk=lambda done: progress.update(task, completed=done)
        )
    for table, rows in counts.items():
        console.print(f"{table:>20}: {rows:,} rows")
    console.print(f"Wrote {out} in {time.perf_counter() - started:.1f} s")
