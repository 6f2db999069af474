"""The ``retrain`` and ``promote`` commands: a challenger, and a guarded promotion."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ajoissa.cli import (
    LabelWindowOption,
    MappingOption,
    SourceName,
    TransferGapOption,
    advance_step,
    app,
    apply_label_options,
    check_share,
    console,
    data_path_or_exit,
    exit_on_sigterm,
    print_absent_tables,
    print_constant_baselines,
)

logger = logging.getLogger(__name__)


def _check_cutoffs(values: list[str] | None) -> list[str] | None:
    for value in values or []:
        try:
            dt.date.fromisoformat(value)
        except ValueError as exc:
            raise typer.BadParameter(
                f"{value!r} is not a date as YYYY-MM-DD, such as 2014-01-01"
            ) from exc
    return values


def _check_offsets(values: list[int] | None) -> list[int] | None:
    negative = [value for value in values or [] if value < 0]
    if negative:
        raise typer.BadParameter(
            f"invalid offset {negative[0]}: must be 0 or more days"
        )
    return values


CalibrationRows = Literal["later-period", "cross-fitted"]
CALIBRATION_ROWS = {"later-period": "later_period", "cross-fitted": "cross_fitted"}

RETRAIN_HELP = (
    "Rebuild features, train and tune the model over temporal folds (or stratified "
    "cross-validation for data without a time axis), evaluate it next to every "
    "baseline and the current champion, and register it as 'challenger'. The "
    "champion is not changed; use `ajoissa promote` for that."
)
PROMOTE_HELP = (
    "Make the challenger the champion, only if on the latest temporal fold it has a "
    "higher ROC-AUC and precision at k than the champion and every baseline, it "
    "passes the fairness gate, its artifact files match the SHA-256 digest "
    "recorded at registration, and it was trained on the champion's label (same "
    "source, label window, transfer gap and outcome). Otherwise nothing changes "
    "and the reasons are listed (exit code 1). Fairness gate warnings are listed "
    "apart, because they do not reject the challenger on their own. A fairness "
    "breach is accepted only by a reviewer exception recorded with `ajoissa "
    "review-exception`. Exits with code 2 when no model has the name or the "
    "model has no challenger."
)


@app.command(help=RETRAIN_HELP)
def retrain(
    source: Annotated[SourceName, typer.Option(help="Which data source to load.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for summary.json, the model card, plots and reports."
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
    cutoff: Annotated[
        list[str] | None,
        typer.Option(
            help="Temporal fold cutoff as an ISO date; repeat for several folds. The "
            "latest one trains the registered model. Default: the source's cutoffs.",
            callback=_check_cutoffs,
        ),
    ] = None,
    history_days: Annotated[
        int | None,
        typer.Option(
            help="Training history length in days before each cutoff. Default: all.",
            min=1,
        ),
    ] = None,
    test_window_days: Annotated[
        int | None,
        typer.Option(
            help="Units starting this many days after a cutoff test. Default: all later.",
            min=1,
        ),
    ] = None,
    mapping: MappingOption = None,
    label_window_days: LabelWindowOption = None,
    transfer_gap_days: TransferGapOption = None,
    asof_days: Annotated[
        list[int] | None,
        typer.Option(
            help="As-of offset in days after unit start, 0 or more; repeat. "
            "Default: the source's.",
            callback=_check_offsets,
        ),
    ] = None,
    top_share: Annotated[
        float,
        typer.Option(
            help="Top-k as a share of learners per as-of date, greater than 0 and "
            "at most 1.",
            callback=check_share,
        ),
    ] = 0.10,
    k_per_unit: Annotated[
        int,
        typer.Option(
            help="Top-k as a number of learners per unit and as-of date.", min=1
        ),
    ] = 10,
    trials: Annotated[
        int,
        typer.Option(
            help="Optuna trials per fold (0: default hyperparameters).", min=0
        ),
    ] = 15,
    bootstrap: Annotated[
        int,
        typer.Option(help="Bootstrap resamples for the confidence intervals.", min=1),
    ] = 200,
    calibration: Annotated[
        CalibrationRows,
        typer.Option(
            help="Rows the probability calibration is fitted on. later-period: the "
            "latest training cohort, scored by a booster fitted on the earlier "
            "cohorts. cross-fitted: every training row, scored out of fold. A fold "
            "with one training cohort, and data without a time axis, are always "
            "cross-fitted."
        ),
    ] = "later-period",
) -> None:
    from ajoissa.catalog import SOURCES
    from sources.errors import InputDataError, MappingError
    from training.promotion import retrain as run_retrain

    entry = SOURCES[source.value]
    data_path = data_path_or_exit(source.value, data, mapping)
    try:
        config = entry.run_config(data_path)
    except (InputDataError, MappingError) as exc:
        typer.echo(f"Input data error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if cutoff:
        ordered = sorted(cutoff)
        config.temporal_cutoff, config.earlier_cutoffs = ordered[-1], ordered[:-1]
    if asof_days:
        config.asof_offsets_days = sorted(asof_days)
        config.asof_labels = {d: f"day_{d}" for d in config.asof_offsets_days}
    config.history_days = history_days
    config.test_window_days = test_window_days
    apply_label_options(config, label_window_days, transfer_gap_days)
    config.top_share = top_share
    config.k_per_unit = k_per_unit
    config.tuning_trials = trials
    config.bootstrap_resamples = bootstrap
    config.calibration = CALIBRATION_ROWS[calibration]
    if model_name:
        config.model_name = model_name

    started = time.perf_counter()
    steps = 9
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(
            f"loading {source.value} from {data_path}", total=steps
        )

        def on_step(description: str) -> None:
            advance_step(progress, task, description)

        exit_on_sigterm()
        try:
            summary = run_retrain(entry.load(data_path), config, out, on_step=on_step)
        except (InputDataError, MappingError) as exc:
            progress.stop()
            typer.echo(f"Input data error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        except ValueError as exc:
            # Data that loads but cannot be used, such as a cutoff that leaves
            # no fold with both training and test rows.
            progress.stop()
            logger.debug("retrain failed", exc_info=True)
            typer.echo(f"Retrain failed: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        progress.update(task, completed=steps, description="done")

    _print_promotion_table(summary["evaluation"])
    for name, description in summary["evaluation"].get("recorded_figures", {}).items():
        console.print(
            f"Note: the {name} row is not scored on these rows: {description}."
        )
    console.print(f"Registered challenger: {summary['model_uri']}")
    console.print(
        f"Compared with champion version: {summary['compared_champion_version']}"
    )
    if summary["label_change"] is not None:
        console.print(
            f"Warning: {summary['label_change']}. `ajoissa promote` rejects this "
            "challenger unless it is given --accept-label-change --reviewer NAME.",
            highlight=False,
            markup=False,
        )
    for name, reason in summary["baselines_not_applicable"].items():
        console.print(f"Baseline {name}: {reason}")
    print_constant_baselines(summary["validation"])
    print_absent_tables(summary)
    console.print(f"Model card:  {summary.get('model_card', '-')}")
    console.print(f"Summary:     {(out / 'summary.json').resolve()}")
    console.print(f"Wall time:   {time.perf_counter() - started:.1f} s")


def _print_promotion_table(evaluation: dict) -> None:
    table = Table(title=f"Latest fold {evaluation['latest_fold']} (all as-of dates)")
    table.add_column("model")
    table.add_column("ROC-AUC (95 % CI)", justify="right")
    table.add_column("precision@k share (95 % CI)", justify="right")
    table.add_column("Brier", justify="right")
    table.add_column("ECE", justify="right")
    for name, values in evaluation["folds"][-1]["overall"].items():
        table.add_row(
            name,
            _with_interval(values, "roc_auc"),
            _with_interval(values, "precision_at_k_share"),
            _number(values.get("brier")),
            _number(values.get("ece")),
        )
    console.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _with_interval(values: dict, name: str) -> str:
    interval = values.get(f"{name}_ci")
    if values.get(name) is None:
        return "-"
    if not interval:
        return _number(values[name])
    return f"{values[name]:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"


@app.command(help=PROMOTE_HELP)
def promote(
    model_name: Annotated[
        str, typer.Option(help="Registered model whose challenger is considered.")
    ],
    skip_fairness_gate: Annotated[
        bool,
        typer.Option(
            help="Promote without the fairness gate when its module (fairness.gate) "
            "is not installed. Needs --reviewer; the name is stored on the version. "
            "When the module is installed, the gate runs anyway and decides, and "
            "a breach is accepted only by `ajoissa review-exception`."
        ),
    ] = False,
    accept_label_change: Annotated[
        bool,
        typer.Option(
            help="Promote although the challenger's label settings (source, label "
            "window, transfer gap, outcome) differ from the champion's, or a "
            "version does not record them, so their metrics are not comparable. "
            "Needs --reviewer; the name is stored on the version as the "
            "label_change_accepted_by tag."
        ),
    ] = False,
    reviewer: Annotated[
        str | None,
        typer.Option(
            help="Name of the person responsible for --skip-fairness-gate or "
            "--accept-label-change."
        ),
    ] = None,
    require_signoff: Annotated[
        bool,
        typer.Option(
            help="Refuse unless a reviewer has approved the challenger in the "
            "review screens. A recorded rejection refuses in any case."
        ),
    ] = False,
) -> None:
    from training.promotion import NothingToPromoteError
    from training.promotion import promote as run_promote

    named = reviewer.strip() if reviewer else ""
    for requested, flag in (
        (skip_fairness_gate, "--skip-fairness-gate"),
        (accept_label_change, "--accept-label-change"),
    ):
        if requested and not named:
            typer.echo(f"{flag} needs --reviewer NAME", err=True)
            raise typer.Exit(code=2)
    if reviewer is not None and not (skip_fairness_gate or accept_label_change):
        typer.echo(
            "--reviewer names the person who skips the fairness gate or accepts a "
            "label change, so it needs --skip-fairness-gate or "
            "--accept-label-change. Leave it out to promote through every check",
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        decision = run_promote(
            model_name,
            named if skip_fairness_gate else None,
            require_signoff=require_signoff,
            accept_label_change_reviewer=named if accept_label_change else None,
        )
    except NothingToPromoteError as exc:
        typer.echo(f"Cannot promote: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for note in decision.notes:
        console.print(f"Note: {note}", highlight=False, markup=False)
    for warning in decision.warnings:
        console.print(f"Warning: {warning}", highlight=False, markup=False)
    if decision.promoted:
        console.print(
            f"Promoted {model_name} version {decision.challenger_version} to champion "
            f"(previous champion: {decision.champion_version or 'none'})."
        )
        return
    typer.echo(
        f"Refused to promote {model_name} version {decision.challenger_version}:",
        err=True,
    )
    for reason in decision.reasons:
        typer.echo(f"- {reason}", err=True)
    raise typer.Exit(code=1)
