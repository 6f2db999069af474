"""The ``ajoissa load-records`` command: validate a school export and store it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ajoissa.cli import app, console

LOAD_HELP = (
    "Validate a school platform's export (docs/data-contract.md). When it is "
    "invalid, print its problems (at most 20 of each kind, with a count of the "
    "rest) and write every problem to a report file; when it is valid, print the "
    "row counts, the duplicate rows dropped and the blank rows skipped. With "
    "--store, "
    "also write the validated tables as Parquet to that folder, with the "
    "mark-code table used as mark_codes.csv, replacing an earlier load of it as "
    "a whole, so loading the same export again gives the same files."
)

REPORT_NAME = "load-records-problems.txt"
"""File name of the full problem list, written into the export folder by default.

The same as ``sources.school.records.PROBLEM_REPORT_NAME``, which synth reads,
written out here so that the CLI does not import pandas when it starts."""

PROBLEMS_PER_KIND = 20
"""Problems printed per file, table, column and expected value; the report has all."""


@app.command("load-records", help=LOAD_HELP)
def load_records(
    data: Annotated[Path, typer.Option(help="Folder of the export (CSV or Parquet).")],
    mark_codes: Annotated[
        Path | None,
        typer.Option(
            help="Mark-code table (CSV: code;mark). Default: DATA/mark_codes.csv "
            "if present, else the bundled example table, with a warning."
        ),
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Folder to write the validated tables to.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Text file that lists every problem, one per line, when the "
            f"export is invalid. Default: DATA/{REPORT_NAME}."
        ),
    ] = None,
    allow_empty: Annotated[
        list[str] | None,
        typer.Option(
            help="Table that may replace stored rows with none, such as "
            "support_decisions when no pupil has support any more. Repeat for "
            "more tables. Without it, an export whose table has no rows is "
            "not stored over a load that has rows of that table, since a "
            "failed export looks the same."
        ),
    ] = None,
) -> None:
    from sources.errors import (
        InputDataError,
        summarize_problems,
        write_problem_report,
    )
    from sources.school.records import (
        STORED_FILES,
        check_replaceable,
        emptied_tables,
        read_records,
        write_records,
    )
    from sources.school.tables import TABLES

    unknown = sorted(set(allow_empty or ()) - set(TABLES))
    if unknown:
        typer.echo(
            f"Invalid --allow-empty {', '.join(unknown)}: not a table of the "
            f"export. The tables are {', '.join(TABLES)}.",
            err=True,
        )
        raise typer.Exit(code=2)

    if not data.is_dir():
        typer.echo(
            f"Invalid --data {data}: folder not found. Give the folder that "
            "contains the export's tables.",
            err=True,
        )
        raise typer.Exit(code=2)
    if store is not None and data.resolve().is_relative_to(store.resolve()):
        typer.echo(
            f"Invalid --store {store}: it contains the export folder {data}, which "
            "replacing it would delete. Choose a folder outside the export.",
            err=True,
        )
        raise typer.Exit(code=2)
    if store is not None:
        try:
            check_replaceable(store.resolve(), STORED_FILES, "load-records --store")
        except ValueError as error:
            typer.echo(f"Invalid --store: {error}", err=True)
            raise typer.Exit(code=2) from error
    report = report or data / REPORT_NAME
    try:
        records = read_records(data, mark_codes)
    except InputDataError as exc:
        for line in summarize_problems(exc.problems, PROBLEMS_PER_KIND):
            typer.echo(line, err=True)
        try:
            write_problem_report(exc.problems, report)
            listed = f"Every problem is listed in {report}."
        except OSError as error:
            listed = f"The full list could not be written to {report}: {error}."
        typer.echo(
            f"{len(exc.problems)} problem(s); nothing was stored. {listed} Fix the "
            "listed values and run again.",
            err=True,
        )
        raise typer.Exit(code=2) from exc
    if report.is_file():
        # A report left by an earlier, failed load no longer describes the export.
        report.unlink()
        console.print(f"Removed the report of an earlier failed load, {report}.")
    width = max(len(name) for name in records.counts)
    for name, rows in records.counts.items():
        console.print(f"{name:>{width}}: {rows:,}")
    if store is not None:
        emptied = {
            name: rows
            for name, rows in emptied_tables(records, store.resolve()).items()
            if name not in (allow_empty or ())
        }
        if emptied:
            for name, rows in emptied.items():
                state = (
                    f"is missing from {data} (no {name}.csv or {name}.parquet)"
                    if name in records.absent_tables
                    else f"has no rows in {data}"
                )
                typer.echo(
                    f"Table '{name}' {state}, but the load stored in {store} "
                    f"has {rows:,}; storing this export would delete them.",
                    err=True,
                )
            options = " ".join(f"--allow-empty {name}" for name in emptied)
            typer.echo(
                "Nothing was stored. If the export failed, export those tables "
                "again with their rows. If they really have no rows now, run "
                f"again with {options}.",
                err=True,
            )
            raise typer.Exit(code=2)
        try:
            write_records(records, store)
        except ValueError as error:
            typer.echo(f"Invalid --store: {error} Nothing was stored.", err=True)
            raise typer.Exit(code=2) from error
        console.print(f"Stored the validated tables in {store}")
