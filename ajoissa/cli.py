"""The ``ajoissa`` command line."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from training.run import RunConfig

app = typer.Typer(
    help=(
        "Ajoissa: early warning of dropping out, to support the judgement of "
        "student-welfare staff. Builds point-in-time features, trains and audits "
        "a risk model, and serves scores with reasons."
    ),
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
logger = logging.getLogger(__name__)


class SourceName(str, Enum):
    records = "records"
    oulad = "oulad"
    uci_dropout = "uci-dropout"
    table = "table"


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress at INFO level.")
    ] = False,
) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.umask(_umask_or_exit())
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # After a lost database connection psycopg warns that it could not end
        # its pipeline, just before the command's own message names the error.
        logging.getLogger("psycopg").setLevel(logging.ERROR)


UMASK_ENV = "AJOISSA_UMASK"
DEFAULT_UMASK = 0o077
"""The stores hold pupil data and token hashes, so by default every file and
folder that a command creates is readable by its owner only."""


def _umask_or_exit() -> int:
    """Return the file-mode mask from ``AJOISSA_UMASK`` (octal), default 077."""
    text = os.environ.get(UMASK_ENV, "").strip()
    if not text:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        typer.echo(
            f"Invalid {UMASK_ENV} {text!r}: expected an octal file-mode mask such "
            "as 077 (owner only) or 027 (owner and group may read).",
            err=True,
        )
        raise typer.Exit(code=2)
    return value


RUN_HELP = (
    "Run the main job end to end: load and validate the source, build point-in-time "
    "features, train and evaluate the model and its baselines, register it in "
    "MLflow (as champion, or as challenger when the model already has a "
    "champion), audit fairness and write reason codes.\n\n"
    "The MLflow store is AJOISSA_HOME (default ./ajoissa-store: a SQLite file and an "
    "artifact folder) unless MLFLOW_TRACKING_URI points at an MLflow server."
)
SERVE_HELP = (
    "Serve the champion model's scores and reasons over HTTP with BentoML: "
    "POST /v1/score, the stored pupil scores written by `ajoissa score`, "
    "GET /v1/model, GET /healthz, GET /readyz and GET /metrics. Every other "
    "endpoint needs a bearer token from `ajoissa tokens create`. Reads the same "
    "store as run; docs/serving.md describes the endpoints and settings."
)


def check_share(value: float) -> float:
    if not 0 < value <= 1:
        raise typer.BadParameter(f"must be greater than 0 and at most 1; got {value}")
    return value


MappingOption = Annotated[
    Path | None,
    typer.Option(
        help="Mapping file (YAML) that describes the table; required with "
        "--source table, where it takes the place of --data."
    ),
]
"""The ``--mapping`` option of the commands that read a source's data."""
LabelWindowOption = Annotated[
    int | None,
    typer.Option(
        help="Days after each as-of date in which a dropout counts for the label. "
        "Default: 365 for sources with study-right histories, else any later "
        "withdrawal from the unit. Not for uci-dropout and table, whose outcome "
        "has no date.",
        min=1,
    ),
]
TransferGapOption = Annotated[
    int | None,
    typer.Option(
        help="Days within which a new study right makes an ended one a school "
        "change, not a dropout (sources with study-right histories only). "
        "Default: 120.",
        min=0,
    ),
]


@app.command(help=RUN_HELP)
def run(
    source: Annotated[SourceName, typer.Option(help="Which data source to load.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for summary.json, the fairness report and reason codes."
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder (or file) with the source's data. Default: the bundled copy."
        ),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model name in MLflow. Default: ajoissa-<source>."
        ),
    ] = None,
    top_share: Annotated[
        float,
        typer.Option(
            help="Operating point: share of learners flagged per as-of date, "
            "greater than 0 and at most 1. Metrics named *_at_10pct always use 0.1.",
            callback=check_share,
        ),
    ] = 0.10,
    min_group_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Fairness groups with fewer distinct learners than this are "
            "suppressed. Default: the fairness policy's minimum, or the "
            "mapping's min_group_size with --source table.",
        ),
    ] = None,
    mapping: MappingOption = None,
    label_window_days: LabelWindowOption = None,
    transfer_gap_days: TransferGapOption = None,
) -> None:
    from ajoissa.catalog import SOURCES
    from models.store import tracking_uri
    from sources.errors import InputDataError, MappingError
    from training.run import run_main_job

    entry = SOURCES[source.value]
    data_path = data_path_or_exit(source.value, data, mapping)
    try:
        config = entry.run_config(data_path)
    except (InputDataError, MappingError) as exc:
        typer.echo(f"Input data error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if out.exists() and not out.is_dir():
        typer.echo(f"--out {out} is a file; give a folder for the outputs.", err=True)
        raise typer.Exit(code=2)
    config.top_share = top_share
    if min_group_size is not None:
        config.min_group_size = min_group_size
    if model_name:
        config.model_name = model_name
    apply_label_options(config, label_window_days, transfer_gap_days)

    started = time.perf_counter()
    steps = 8
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(
            f"loading {source.value} from {data_path}", total=steps + 1
        )

        def on_step(description: str) -> None:
            advance_step(progress, task, description)

        exit_on_sigterm()
        try:
            tables = entry.load(data_path)
            summary = run_main_job(tables, config, out, on_step=on_step)
        except (InputDataError, MappingError) as exc:
            progress.stop()
            typer.echo(f"Input data error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except ValueError as exc:
            # Raised for data that loads but cannot be used, such as no learner
            # active at any as-of date, or a split that leaves no test rows.
            progress.stop()
            logger.debug("run failed", exc_info=True)
            typer.echo(f"Run failed: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        progress.update(task, completed=steps + 1, description="done")

    _print_summary(summary, out, time.perf_counter() - started, tracking_uri())


def print_absent_tables(summary: dict) -> None:
    """Print the optional tables that the data lacked, and the features they feed."""
    for table, features in summary.get("absent_tables", {}).items():
        console.print(
            f"Note: the data has no {table} table, so the features it feeds "
            f"({', '.join(features)}) took their no-event value, such as 0 notes, "
            "for every learner in training and evaluation. `ajoissa score` rejects "
            "data without the table while the model uses them, unless given "
            f"--allow-missing {table}.",
            highlight=False,
        )


def print_constant_baselines(validation: dict) -> None:
    """Print the baselines that rank no test row, which any model beats."""
    for name, reason in validation.get("baselines_constant_on_test", {}).items():
        console.print(
            f"Note: baseline {name} {reason}. Its ROC-AUC of 0.5 is by construction.",
            highlight=False,
        )


def _print_summary(summary: dict, out: Path, seconds: float, uri: str) -> None:
    table = Table(
        title=f"Headline figures ({summary['validation']['kind']} validation)",
        caption="P@10% and R@10%: precision and recall among the top 10 % of "
        "learners by score at each as-of date.",
    )
    table.add_column("as-of")
    table.add_column("model")
    for header in ("ROC-AUC", "PR-AUC", "P@10%", "R@10%", "Brier"):
        table.add_column(header, justify="right")
    for asof, by_model in summary["metrics"].items():
        for model, values in by_model.items():
            table.add_row(
                asof,
                model,
                *("-" if v is None else f"{v:.3f}" for v in values.values()),
            )
    console.print(table)
    left_out = summary["rows"].get("left_out_label_window_past_data_end")
    if left_out:
        console.print(
            f"Left out {left_out:,} feature rows whose label window, plus the "
            "transfer gap in which a new study right can still start, runs past the "
            f"data end {summary['rows']['data_end']}: their labels are not known yet.",
            highlight=False,
        )
    missing = summary["rows"].get("asof_without_evaluation_rows")
    if missing:
        console.print(
            f"No evaluation rows at {', '.join(missing)}, so the table has no "
            "figures there.",
            highlight=False,
        )
    for name, reason in summary.get("baselines_not_applicable", {}).items():
        console.print(f"Baseline {name}: {reason}", highlight=False)
    print_constant_baselines(summary["validation"])
    print_absent_tables(summary)
    if summary.get("not_validated"):
        console.print(f"Warning: {summary['not_validated']}.", highlight=False)
    _print_baseline_shortfalls(summary["evaluation"])
    console.print(
        f"Registered model: {summary['model_uri']} (alias {summary['model_alias']})"
    )
    if summary["model_alias"] == "challenger":
        _print_challenger_reason(summary)
    console.print(f"MLflow tracking:  {uri}")
    console.print(f"Fairness report:  {summary['fairness_report']}")
    console.print(f"Reason codes:     {summary['reason_codes']}")
    console.print(f"Example request:  {summary['example_request']}")
    console.print(f"Summary:          {(out / 'summary.json').resolve()}")
    console.print(f"Wall time:        {seconds:.1f} s")


def _print_baseline_shortfalls(evaluation: dict) -> None:
    """Print every measure on which a baseline matches or beats the model.

    The comparison is the one `ajoissa promote` makes: the latest fold's
    figures, pooled over its as-of dates.
    """
    from training.promotion import compare

    shortfalls = compare(evaluation["promotion"], role="model")
    if not shortfalls:
        return
    console.print(
        f"Note: on the latest fold ({evaluation['latest_fold']}, all as-of dates) "
        "the model does not beat every baseline: "
        + "; ".join(shortfalls)
        + ". Weigh this before relying on the model; `ajoissa promote` rejects "
        "a challenger that does not beat every baseline on these measures.",
        highlight=False,
    )


def _print_challenger_reason(summary: dict) -> None:
    """Print why the run registered the version as the challenger, not the champion."""
    reason = summary.get("challenger_reason")
    if reason is None:
        return
    if reason == summary.get("not_validated"):
        console.print(
            "This version is the challenger, not the served champion, because "
            "the latest fold did not validate it (see the warning above). Once "
            "a reviewer has checked its figures, `ajoissa promote --model-name "
            f"{summary['model_name']}` makes it the champion if it beats every "
            "baseline and passes the fairness gate.",
            highlight=False,
        )
        return
    console.print(
        f"This version is the challenger, not the served champion, because {reason}.",
        highlight=False,
    )


@app.command(help=SERVE_HELP)
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind. Keep 127.0.0.1 unless behind a proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 3000,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model whose 'champion' version is served. Default: the "
            "only registered model with a champion."
        ),
    ] = None,
) -> None:
    from models.store import champion_version, resolve_model_name
    from serving.server import run_server

    try:
        name = resolve_model_name(model_name)
    except LookupError as exc:
        typer.echo(f"Cannot serve: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    try:
        champion_version(name)
    except LookupError as exc:
        # The server may start before the model is registered, so this only warns.
        typer.echo(
            f"Warning: {exc}. The server starts unready (503 on /readyz and "
            "/v1/score) and loads the model once a champion version is registered.",
            err=True,
        )
    try:
        # The service reads settings such as AJOISSA_WORKERS when it is
        # imported, and raises ValueError for an invalid one.
        import serving.service  # noqa: F401
    except ValueError as exc:
        typer.echo(f"Cannot serve: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    try:
        run_server(host=host, port=port, model_name=name)
    except ValueError as exc:
        # run_server checks the host and port before it starts anything.
        typer.echo(f"Cannot serve: {exc}", err=True)
        raise typer.Exit(code=2) from exc


DATA_NEEDED = {"records": "the folder of the school-records export"}
"""Description of the ``--data`` argument of each source that bundles no data."""


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a stopped run cleans up what it registered."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


class Terminated(KeyboardInterrupt):
    """Raised in place of SIGTERM's default exit by :func:`interrupt_on_sigterm`."""


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated`, so a command handles it as Ctrl-C."""

    def stop(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, stop)


def store_path_or_exit(
    path: Path, what: str, setting: str, folder: bool = False
) -> Path:
    """Return ``path`` of a store file, exiting 2 when it does not exist.

    With ``folder``, only the folder that contains the file must exist. A command
    started in another folder would otherwise create a new, empty store there
    and report success on it.
    """
    missing = not path.parent.is_dir() if folder else not path.is_file()
    if missing:
        where = path.parent if folder else path
        typer.echo(
            f"No {what} at {where}. Run the command in the folder that contains "
            f"the store (ajoissa-store), set AJOISSA_HOME to that folder, or set "
            f"{setting} to the {what}'s own location.",
            err=True,
        )
        raise typer.Exit(code=2)
    return path


def output_file_or_exit(path: Path, suffix: str, file_format: str) -> Path:
    """Return the ``--out`` file ``path``, exiting 2 when it cannot be written.

    Commands call this before their work starts, so that a long build does not
    end in a failed write. A missing folder of ``path`` is created, as ``run``
    creates its ``--out`` folder, and the folder must accept a new file. The
    file name must end in ``suffix``, because the command writes
    ``file_format`` whatever the suffix.
    """
    problem = _output_file_problem(path, suffix, file_format)
    if problem:
        typer.echo(f"Invalid --out {path}: {problem}", err=True)
        raise typer.Exit(code=2)
    return path


def _output_file_problem(path: Path, suffix: str, file_format: str) -> str | None:
    """Return why the output file cannot be written at ``path``, or None."""
    if path.is_dir():
        return f"it is a folder; give a file path such as {path / ('out' + suffix)}"
    if path.suffix.lower() != suffix:
        return (
            f"the output is written as {file_format}, so the file name must end "
            f"in {suffix}, for example {path.with_suffix(suffix).name}"
        )

    folder = path.parent
    if folder.exists() and not folder.is_dir():
        return f"{folder} is not a folder; choose a path inside a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (
            f"cannot create the folder {folder} ({exc.strerror}); choose a folder "
            "you can write to"
        )

    # Creating a test file is the reliable check, because os.access passes for
    # root whatever the mode bits, and for folders like /proc that take no files.
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".ajoissa-", suffix=".tmp")
    except OSError as exc:
        return (
            f"cannot create a file in the folder {folder} ({exc.strerror}); "
            "choose a folder you can write to"
        )
    os.close(handle)
    os.remove(probe)
    return None


def note_schools_without_scores(schools: list[str]) -> None:
    """Print a note for each school id that no stored score belongs to.

    Setting up a school before its first scoring run is allowed, so this only
    warns: a mistyped id would otherwise give staff an empty list without a
    word.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from models.store import home_dir
    from serving.scorestore import SCORE_STORE_URL_ENV, ScoreStore, store_url
    from serving.storeconnection import error_text, redacted_url

    if not schools:
        return
    if (
        not os.environ.get(SCORE_STORE_URL_ENV)
        and not (home_dir() / "scores.db").is_file()
    ):
        return
    try:
        store = ScoreStore()
        try:
            unknown = [school for school in schools if not store.has_school(school)]
        finally:
            store.dispose()
    except (SQLAlchemyError, ModuleNotFoundError, OSError) as exc:
        logger.debug("score store check failed", exc_info=True)
        typer.echo(
            f"Note: could not check the school ids against the score store "
            f"{redacted_url(store_url())} ({error_text(exc)}).",
            err=True,
        )
        return
    for school in unknown:
        typer.echo(
            f"Note: the score store has no scores of school {school!r} yet. Check "
            "the id if `ajoissa score` has already run for it.",
            err=True,
        )


def data_path_or_exit(source: str, data: Path | None, mapping: Path | None) -> Path:
    """Return the path that ``source`` loads from ``--data`` and ``--mapping``.

    The table source reads its mapping file, given as ``--mapping``. Every other
    source reads ``--data``, else its bundled copy. Exits with code 2 when an
    option is missing or does not apply to the source.
    """
    from ajoissa.catalog import SOURCES

    if source == SourceName.table.value:
        if mapping is None or data is not None:
            typer.echo(
                "--source table needs --mapping FILE and takes no --data; the "
                "mapping file names the data file.",
                err=True,
            )
            raise typer.Exit(code=2)
        return mapping
    if mapping is not None:
        typer.echo("--mapping applies only to --source table.", err=True)
        raise typer.Exit(code=2)
    path = data or SOURCES[source].default_data
    if path is None:
        what = DATA_NEEDED.get(source, "the source's data")
        typer.echo(f"--source {source} needs --data: {what}.", err=True)
        raise typer.Exit(code=2)
    return path


def apply_label_options(
    config: RunConfig, label_window_days: int | None, transfer_gap_days: int | None
) -> None:
    """Set the label options of ``run``, ``retrain`` and ``features`` on ``config``.

    A source with study-right histories labels by ``config.label_rule``, and
    both options change that rule. Any other source labels a withdrawal from
    the unit, within ``label_window_days`` of the as-of date when it is given.
    Exits with code 2 when ``transfer_gap_days`` is given for such a source,
    or ``label_window_days`` for a source whose outcome has no date.
    """
    from dataclasses import replace

    if config.undated_outcome is not None and label_window_days is not None:
        typer.echo(
            f"--label-window-days does not apply to {config.source}: "
            f"{config.undated_outcome}. Every window of 1 day or more gives the "
            "same label, so leave the option out.",
            err=True,
        )
        raise typer.Exit(code=2)
    if config.label_rule is None:
        if transfer_gap_days is not None:
            typer.echo(
                f"--transfer-gap-days applies only to sources with study-right "
                f"histories (records), not to {config.source}.",
                err=True,
            )
            raise typer.Exit(code=2)
        config.label_window_days = label_window_days
        return
    if label_window_days is not None:
        config.label_rule = replace(config.label_rule, window_days=label_window_days)
    if transfer_gap_days is not None:
        config.label_rule = replace(
            config.label_rule, transfer_gap_days=transfer_gap_days
        )


def advance_step(progress: Progress, task: TaskID, description: str) -> None:
    """Advance a progress bar by one step and name the step.

    A bar is drawn only on a terminal, so with output to a file or a pipe each
    step is also printed as a line with the time, or the log would show
    nothing until the command ends.
    """
    progress.update(task, advance=1, description=description)
    if not console.is_terminal:
        console.print(f"{time.strftime('%H:%M:%S')} {description}")


def _register_commands() -> None:
    """Import the modules whose commands register themselves on ``app``.

    Each topic keeps its commands in its own module (``ajoissa/<topic>_commands.py``,
    which imports ``app`` from here); add one import line per module below.
    """
    import ajoissa.access_commands  # noqa: F401
    import ajoissa.fairness_commands  # noqa: F401
    import ajoissa.feature_commands  # noqa: F401
    import ajoissa.records_commands  # noqa: F401
    import ajoissa.review_commands  # noqa: F401
    import ajoissa.score_commands  # noqa: F401
    import ajoissa.synth_commands  # noqa: F401
    import ajoissa.table_commands  # noqa: F401
    import ajoissa.training_commands  # noqa: F401


_register_commands()

if __name__ == "__main__":
    # Run with ``python -m ajoissa.cli``, this file is the module __main__, and
    # the command modules register on the app of the module ajoissa.cli.
    from ajoissa.cli import app as registered_app

    registered_app()
