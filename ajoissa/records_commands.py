"""The ``ajoissa load-records`` command: validate a school export and store it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ajoissa.cli import app, console

LOAD_HELP = (
    "Validate a school platform's export (docs/data-contract.md) and print one "
    "report of every problem, or the row counts when it is valid. With --store, "
    "also write the validated tables as Parquet to that folder, replacing an "
    "earlier load of it as a whole, so loading the same export again gives the "
    "same files."
)


@app.command("load-records", help=LOAD_HELP)
def load_records(
    data: Annotated[Path, typer.Option(help="Folder of the export (CSV or Parquet).")],
    mark_codes: Annotated[
        Path | None,
        typer.Option(
            help="Mark-code table (CSV: code;mark). Default: DATA/mark_codes.csv "
            "if present, else the bundled example table."
        ),
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Folder to write the validated tables to.")
    ] = None,
) -> None:
    from sources.errors import InputDataError
    from sources.school.marks import DEFAULT_MARK_CODES
    from sources.school.records import read_records, write_records

    if mark_codes is None:
        local = data / "mark_codes.csv"
        mark_codes = local if local.is_file() else DEFAULT_MARK_CODES
    try:
        records = read_records(data, mark_codes)
    except InputDataError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(
            f"{len(exc.problems)} problem(s); nothing was stored. Fix the listed "
            "values and run again.",
            err=True,
        )
        raise typer.Exit(code=2) from exc
    for table, rows in records.counts.items():
        console.print(f"{table:>24}: {rows:,}")
    if store is not None:
        write_records(records, store)
        console.print(f"Stored the validated tables in {store}")
