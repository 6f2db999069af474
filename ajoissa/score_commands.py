"""``ajoissa score``: scheduled scoring of every active pupil into the score store."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ajoissa.cli import (
    MappingOption,
    SourceName,
    Terminated,
    app,
    console,
    data_path_or_exit,
    interrupt_on_sigterm,
    store_path_or_exit,
)

if TYPE_CHECKING:
    from serving.scorestore import RunKey, StoredRun

SCORE_HELP = (
    "Score every pupil active on an as-of date with the champion model and store, "
    "per pupil, the probability, rank within the school, reasons, model "
    "version and the feature values used. Rerunning the same as-of date and model "
    "version replaces that run and nothing else, and the output names the replaced "
    "run. A failed run leaves the store as it was. An interrupted run (Ctrl-C "
    "or SIGTERM) says whether its run was stored.\n\nThe store is AJOISSA_SCORE_STORE_URL (a "
    "SQLAlchemy URL), by default scores.db (SQLite) in AJOISSA_HOME."
)


def parse_as_of(text: str) -> dt.date | None:
    """Return the date ``text`` gives as ISO (2025-02-03) or Finnish (3.2.2025)
    notation, or None if it is neither."""
    text = text.strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return dt.datetime.strptime(text, "%d.%m.%Y").date()
    except ValueError:
        return None


@app.command(help=SCORE_HELP)
def score(
    source: Annotated[SourceName, typer.Option(help="Which data source to load.")],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="As-of date (YYYY-MM-DD or dd.mm.yyyy): only events on or "
            "before it are used.",
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder (or file) with the source's data. Default: the bundled copy."
        ),
    ] = None,
    mapping: MappingOption = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model whose 'champion' version scores. Default: the "
            "only registered model with a champion."
        ),
    ] = None,
    allow_missing: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-missing",
            metavar="TABLE",
            help="Score although the data lacks this optional table (such as "
            "behaviour_notes), whose features the model uses; they then take "
            "their no-event value, such as 0 notes, for every pupil. Repeat for "
            "several tables.",
        ),
    ] = None,
) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from sqlalchemy.exc import SQLAlchemyError

    from ajoissa.catalog import SOURCES
    from models.store import ModelIntegrityError, load_registered, resolve_model_name
    from serving.scheduled import (
        NoActivePupilsError,
        absent_table_features,
        score_asof,
    )
    from serving.scorestore import RunKey, describe_url
    from sources.errors import InputDataError

    day = parse_as_of(as_of)
    if day is None:
        typer.echo(
            f"Invalid --as-of {as_of!r}: expected a date as YYYY-MM-DD or "
            "dd.mm.yyyy, such as 2025-02-03 or 3.2.2025.",
            err=True,
        )
        raise typer.Exit(code=2)
    _check_allowed_missing(allow_missing or [])
    entry = SOURCES[source.value]
    data_path = data_path_or_exit(source.value, data, mapping)
    started = time.perf_counter()
    # Opened first, so that an unreachable store fails before minutes of work.
    store = _store_or_exit(create=True)
    interrupt_on_sigterm()
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("loading the champion model", total=None)
        key: RunKey | None = None
        previous: int | None = None
        stored: StoredRun | None = None
        gaps: dict[str, list[str]] = {}
        try:
            loaded = load_registered(resolve_model_name(model_name))
            progress.update(
                task, description=f"loading {source.value} from {data_path}"
            )
            tables = entry.load(data_path).validated()
            gaps = absent_table_features(tables, loaded.spec.features)
            rejected = {t: f for t, f in gaps.items() if t not in (allow_missing or [])}
            if rejected:
                progress.stop()
                typer.echo(_missing_tables_message(rejected, data_path), err=True)
                raise typer.Exit(code=2)
            progress.update(task, description=f"building features as of {day}")
            rows = score_asof(tables, loaded, day)
            progress.update(task, description="writing the score store")
            key = RunKey(source.value, day, loaded.name, loaded.version)
            previous = store.run_id_of(key)
            stored = store.store_run(key, rows)
            store.dispose()
        except KeyboardInterrupt as exc:
            progress.stop()
            _report_interrupt(day, key, previous, stored)
            code = 128 + signal.SIGTERM if isinstance(exc, Terminated) else 130
            raise typer.Exit(code=code) from None
        except (LookupError, ModelIntegrityError) as exc:
            progress.stop()
            typer.echo(f"Cannot score: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except InputDataError as exc:
            progress.stop()
            typer.echo(f"Input data error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except (NoActivePupilsError, ValueError) as exc:
            progress.stop()
            typer.echo(f"Cannot score: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except SQLAlchemyError as exc:
            progress.stop()
            typer.echo(
                f"Cannot write the score store {describe_url(store.url)}: "
                f"{type(exc).__name__}: {_driver_message(exc)}. "
                "Nothing was changed in it; fix the store or its URL "
                "(AJOISSA_SCORE_STORE_URL) and run the command again.",
                err=True,
            )
            raise typer.Exit(code=1) from exc
    for table, features in gaps.items():
        typer.echo(
            f"Warning: the data has no {table} table, so the model's features "
            f"{', '.join(features)} were scored with their no-event value for "
            f"every pupil (--allow-missing {table}).",
            err=True,
        )
    schools = len({row.school_id for row in rows})
    console.print(
        f"Stored run {stored.run_id}: {len(rows)} enrolments in {schools} schools as "
        f"of {day}, model {loaded.name} version {loaded.version}"
    )
    if stored.replaced_run_id is not None:
        console.print(
            f"This replaced run {stored.replaced_run_id}, which had the same as-of "
            "date and model version."
        )
    console.print(f"Score store: {describe_url(store.url)}")
    console.print(f"Wall time:   {time.perf_counter() - started:.1f} s")


def _check_allowed_missing(tables: list[str]) -> None:
    """Exit 2 if ``--allow-missing`` names a table that is not an optional one."""
    from sources.school.mapping import OPTIONAL_TABLE_FEATURES

    unknown = [table for table in tables if table not in OPTIONAL_TABLE_FEATURES]
    if unknown:
        typer.echo(
            f"Invalid --allow-missing {', '.join(map(repr, unknown))}: expected "
            f"an optional table, one of {', '.join(sorted(OPTIONAL_TABLE_FEATURES))}.",
            err=True,
        )
        raise typer.Exit(code=2)


def _missing_tables_message(gaps: dict[str, list[str]], data_path: Path) -> str:
    """Return the error for optional tables that the data lacks but the model uses."""
    lines = ["Cannot score: the model uses features from tables that the data lacks."]
    for table, features in gaps.items():
        lines.append(
            f"- {table}: no {table}.csv or {table}.parquet in {data_path}. It feeds "
            f"the features {', '.join(features)}, which would take their no-event "
            "value, such as 0 notes, for every pupil and change their scores."
        )
    options = " ".join(f"--allow-missing {table}" for table in gaps)
    lines.append(
        "Add the missing files to the export and run the command again, or pass "
        f"{options} to score without them. Nothing was stored."
    )
    return "\n".join(lines)


def _driver_message(exc: Exception) -> str:
    """Return a database error's own text on one line, without a final period."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return " ".join(text.split()).rstrip(".")


def _report_interrupt(
    day: dt.date,
    key: RunKey | None,
    previous: int | None,
    stored: StoredRun | None,
) -> None:
    """Print whether an interrupted ``ajoissa score`` stored its run.

    ``key`` is None when the interrupt came before the write began, and
    ``stored`` is None unless the write returned. The write is one
    transaction, so without ``stored`` the store contains either the new run or
    the state from before. The run id of ``key``, compared with ``previous``,
    shows which.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from serving.scorestore import ScoreStore, StoredRun

    intact = "Earlier runs are intact."
    if stored is None and key is not None:
        try:
            store = ScoreStore()
            current = store.run_id_of(key)
            store.dispose()
        except SQLAlchemyError as exc:
            typer.echo(
                f"Interrupted while storing the run as of {day}, and checking "
                f"whether it was stored failed: {exc}. Run `ajoissa scores list` "
                "to see. A run is stored whole or not at all.",
                err=True,
            )
            return
        if current is not None and current != previous:
            stored = StoredRun(current, previous)
    if stored is None:
        typer.echo(
            f"Interrupted: the run as of {day} was not stored, and the score store "
            f"is unchanged. {intact} Run the command again to score.",
            err=True,
        )
        return
    replaced = (
        f" It replaced run {stored.replaced_run_id}."
        if stored.replaced_run_id is not None
        else ""
    )
    typer.echo(
        f"Interrupted after run {stored.run_id} as of {day} was stored.{replaced} "
        f"{intact}",
        err=True,
    )


scores_app = typer.Typer(
    help="List and delete scoring runs in the score store. Scores are personal "
    "data about pupils: delete runs that were scored by mistake, and prune old "
    "runs once they are past the retention period.",
    no_args_is_help=True,
)
app.add_typer(scores_app, name="scores")


def _store_or_exit(create: bool = False):
    """Open the score store, or exit with a message.

    Without ``create`` the default SQLite file must exist, since reading or
    removing runs needs a store. With ``create`` only its folder must.
    """
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from models.store import home_dir
    from serving.scorestore import (
        SCORE_STORE_URL_ENV,
        ScoreStore,
        describe_url,
        store_url,
    )

    if not os.environ.get(SCORE_STORE_URL_ENV):
        store_path_or_exit(
            home_dir() / "scores.db", "score store", SCORE_STORE_URL_ENV, create
        )
    url = store_url()
    try:
        return ScoreStore(url)
    except ArgumentError as exc:
        typer.echo(
            f"Invalid {SCORE_STORE_URL_ENV}: {exc}. Give a database URL such as "
            "postgresql+psycopg://user@host/ajoissa or sqlite:////path/scores.db.",
            err=True,
        )
        raise typer.Exit(code=2) from exc
    except ModuleNotFoundError as exc:
        typer.echo(
            f"Cannot open the score store {describe_url(url)}: the database "
            f"driver {exc.name!r} is not installed. Install it, for PostgreSQL "
            "with pip install 'psycopg[binary]'.",
            err=True,
        )
        raise typer.Exit(code=2) from exc
    except SQLAlchemyError as exc:
        typer.echo(
            f"Cannot open the score store {describe_url(url)}: "
            f"{type(exc).__name__}: {_driver_message(exc)}. "
            f"Check that the database is running and {SCORE_STORE_URL_ENV}.",
            err=True,
        )
        raise typer.Exit(code=1) from exc


@scores_app.command("list")
def list_runs() -> None:
    """List the scoring runs: id, source, as-of date, model version and pupils."""
    from rich.table import Table

    store = _store_or_exit()
    runs = store.runs()
    store.dispose()
    if not runs:
        console.print("The score store has no runs.")
        return
    table = Table(title="Scoring runs, oldest as-of date first")
    for column in ("run", "source", "as-of", "model", "version", "pupils"):
        table.add_column(column)
    for run_id, key, count in runs:
        table.add_row(
            str(run_id),
            key.source,
            key.as_of.isoformat(),
            key.model_name,
            key.model_version,
            str(count),
        )
    console.print(table)


@scores_app.command("delete")
def delete_run(
    run_id: Annotated[
        int, typer.Argument(help="Run id, as `ajoissa scores list` shows.")
    ],
) -> None:
    """Delete one scoring run and every pupil score in it."""
    store = _store_or_exit()
    try:
        key = store.delete_run(run_id)
    except LookupError as exc:
        typer.echo(f"Cannot delete: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    finally:
        store.dispose()
    console.print(
        f"Deleted run {run_id}: {key.source} as of {key.as_of}, model "
        f"{key.model_name} version {key.model_version}."
    )


@scores_app.command("prune")
def prune_runs(
    retention_days: Annotated[
        int,
        typer.Option(
            min=1,
            help="Keep runs whose as-of date is at most this many days before "
            "today; delete older ones.",
        ),
    ],
) -> None:
    """Delete the runs whose as-of date is older than the retention period."""
    before = dt.date.today() - dt.timedelta(days=retention_days)
    store = _store_or_exit()
    try:
        deleted = store.prune(before)
    finally:
        store.dispose()
    console.print(
        f"Deleted {len(deleted)} runs with as-of dates before {before} "
        f"({sum(count for _, _, count in deleted)} pupil scores)."
    )
