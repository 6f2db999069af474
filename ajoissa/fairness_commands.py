"""Commands for the fairness audit of a registered version and reviewer exceptions."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ajoissa.cli import MappingOption, app, console, data_path_or_exit

if TYPE_CHECKING:
    from fairness.gate import GateDecision

logger = logging.getLogger(__name__)

REPLACE_OPTION = "--replace-stored-audit-with-other-data"
AUDIT_HELP = (
    "Audit a registered model version for fairness: rebuild its evaluation rows "
    "from the source and settings recorded with it, compute group metrics with "
    "bootstrap intervals, compare mitigation methods, summarise explanations, "
    "write one self-contained HTML report and store the audit and report with the "
    "version in MLflow, where `ajoissa promote` reads them. The audit is stored "
    "only when the data is the data the version was trained and evaluated on "
    "(its training_data_sha256 or input fingerprint matches), unless "
    f"{REPLACE_OPTION} is given. The policy is fairness/policy.yaml unless "
    "AJOISSA_FAIRNESS_POLICY names another file."
)
EXCEPTION_HELP = (
    "Record a named reviewer's exception for a model version whose stored audit "
    "breaches the fairness policy. The exception is stored with the version in "
    "MLflow and applies only to the audit and policy version it was recorded "
    "for; auditing the version again or changing the policy voids it. Exits "
    "with code 2, recording nothing, when the version has no stored audit, its "
    "audit was computed under another policy version than the one in force "
    "(rerun `ajoissa audit` first), the audit assessed no comparison (an "
    "exception accepts a measured disparity, not a missing measurement), the "
    "audit has no breach, or an exception "
    "already applies to the audit and --replace is not given."
)


def _split_model(model: str) -> tuple[str, str]:
    name, separator, version = model.rpartition("@")
    if not separator or not name or not version:
        typer.echo(
            f"Invalid --model {model!r}: write NAME@VERSION or NAME@ALIAS, for "
            "example ajoissa-oulad@champion or ajoissa-oulad@3",
            err=True,
        )
        raise typer.Exit(code=2)
    return name, version


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=2)


def _print_decision(decision: GateDecision) -> None:
    status = "passes" if decision.passed else "fails"
    console.print(
        f"Fairness gate for {decision.model_name} version {decision.version} "
        f"(policy {decision.policy_version}): {status}"
    )
    for reason in decision.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)


@app.command("audit", help=AUDIT_HELP)
def audit(
    model: Annotated[
        str,
        typer.Option(help="Registered model version: NAME@ALIAS or NAME@VERSION."),
    ],
    out: Annotated[Path, typer.Option(help="Path of the HTML report to write.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder (or file) with the source's data. Default: the bundled "
            "copy of the source recorded with the version."
        ),
    ] = None,
    mapping: MappingOption = None,
    replace_with_other_data: Annotated[
        bool,
        typer.Option(
            REPLACE_OPTION,
            help="Store the audit with the version, replacing the audit that "
            "`ajoissa promote` reads, even when --data is not the data the version "
            "was trained and evaluated on or the version records no fingerprint "
            "of that data.",
        ),
    ] = False,
) -> None:
    from ajoissa.catalog import SOURCES
    from fairness.gate import check_gate
    from fairness.policy import PolicyError
    from fairness.registry import resolve_version
    from sources.errors import InputDataError
    from training.version_audit import audit_version, load_version

    name, requested = _split_model(model)
    if not out.parent.is_dir():
        raise _fail(f"Folder {out.parent} for --out does not exist; create it first")
    try:
        version = resolve_version(name, requested)
        registered = load_version(name, version)
    except LookupError as exc:
        raise _fail(f"Cannot audit: {exc}") from exc
    source = registered.tags.get("source") or registered.params.get("source")
    if source not in SOURCES:
        raise _fail(
            f"Cannot audit {registered.uri}: it records source {source!r}, which is "
            f"not one of {sorted(SOURCES)}"
        )
    entry = SOURCES[source]
    # NOTE: the main job records the source name but not the data path, so an
    # audit of a model trained on other data needs --data pointing at that data.
    data_path = data_path_or_exit(source, data, mapping)

    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"loading {source} from {data_path}", total=6)

        def on_step(description: str) -> None:
            progress.update(task, advance=1, description=description)

        try:
            tables = entry.load(data_path)
            result = audit_version(
                tables,
                registered,
                out,
                source=source,
                on_step=on_step,
                store_other_data=replace_with_other_data,
            )
        except (InputDataError, PolicyError, ValueError) as exc:
            progress.stop()
            raise _fail(f"Cannot audit {registered.uri}: {exc}") from exc
        progress.update(task, completed=6, description="done")
    console.print(f"Fairness report: {result.report.resolve()}")
    if result.stored:
        console.print(
            f"Stored with {registered.uri} in MLflow (artifacts under fairness/)"
        )
        _print_decision(check_gate(name, version))
    else:
        reason = (
            f"it records no fingerprint of its training data to compare {data_path} with"
            if result.data_check.matches is None
            else f"{data_path} is not the data it was trained and evaluated on"
        )
        console.print(
            f"Not stored with {registered.uri}: {reason}, so `ajoissa promote` still "
            f"reads its stored audit. Pass {REPLACE_OPTION} to store this audit in "
            "its place.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(f"Wall time: {time.perf_counter() - started:.1f} s")


@app.command("review-exception", help=EXCEPTION_HELP)
def review_exception(
    model: Annotated[
        str,
        typer.Option(help="Registered model version: NAME@VERSION or NAME@ALIAS."),
    ],
    reviewer: Annotated[
        str, typer.Option(help="Full name of the reviewer who takes the decision.")
    ],
    reason: Annotated[
        str,
        typer.Option(
            help="Why the breach is acceptable for this version (at least 20 "
            "characters); stored verbatim with the version."
        ),
    ],
    replace: Annotated[
        bool,
        typer.Option(
            help="Replace an exception already recorded for the same audit and "
            "policy version. The earlier exception stays in the version's "
            "artifacts under fairness/."
        ),
    ] = False,
) -> None:
    from fairness.gate import check_gate, evaluate_gate
    from fairness.policy import PolicyError
    from fairness.registry import (
        AuditNotFoundError,
        record_exception,
        resolve_version,
    )

    name, requested = _split_model(model)
    try:
        version = resolve_version(name, requested)
        current = evaluate_gate(name, version)
    except (LookupError, PolicyError, ValueError) as exc:
        raise _fail(f"Cannot record the exception: {exc}") from exc
    _check_exception_needed(current, replace)
    earlier = current.recorded_exception
    try:
        exception = record_exception(name, version, reviewer=reviewer, reason=reason)
    except (AuditNotFoundError, LookupError, ValueError) as exc:
        raise _fail(f"Cannot record the exception: {exc}") from exc
    console.print(
        f"Recorded an exception by {exception.reviewer} for {name} version {version} "
        f"(policy {exception.policy_version}, audit {exception.audit_sha256[:12]})",
        highlight=False,
        markup=False,
    )
    if current.exception is not None:
        console.print(
            f"It replaces the exception by {current.exception.reviewer}, recorded on "
            f"{current.exception.recorded_at} for the same audit.",
            highlight=False,
            markup=False,
        )
    elif earlier is not None:
        console.print(
            f"It replaces the exception by {earlier.reviewer}, recorded on "
            f"{earlier.recorded_at} for another audit or policy version, which "
            "the gate no longer honoured.",
            highlight=False,
            markup=False,
        )
    _print_decision(check_gate(name, version))


def _check_exception_needed(decision: GateDecision, replace: bool) -> None:
    """Exit with code 2 unless the gate would honour a new exception for the version.

    The gate honours an exception only for a stored audit computed under the
    policy version in force that assessed at least one comparison, and only
    needs one when that audit breaches the policy. An exception that already applies is replaced only with
    ``replace``.
    """
    subject = f"{decision.model_name} version {decision.version}"
    if decision.audit_sha256 is None:
        raise _fail(f"Cannot record the exception: {'; '.join(decision.breaches)}")
    if decision.audit_policy_version != decision.policy_version:
        raise _fail(
            f"Cannot record the exception: the stored audit of {subject} was "
            f"computed under policy {decision.audit_policy_version}, but the policy "
            f"in force is {decision.policy_version}, so the gate would ignore the "
            f"exception. Rerun `ajoissa audit --model {decision.model_name}@"
            f"{decision.version} --out report.html` first, then record the "
            "exception if the new audit breaches the policy"
        )
    if decision.nothing_assessed:
        raise _fail(
            f"Cannot record the exception: the stored audit of {subject} assessed "
            "no comparison, and an exception accepts a measured disparity, not a "
            "missing measurement; audit the version on data with enough dropouts "
            "in every group"
        )
    if not decision.breaches:
        raise _fail(
            f"Cannot record the exception: the stored audit of {subject} has no "
            f"breach of policy {decision.policy_version}, so the fairness gate "
            "passes without an exception"
        )
    if decision.exception is not None and not replace:
        raise _fail(
            f"Cannot record the exception: {decision.exception.reviewer} already "
            f"recorded an exception for this audit of {subject} on "
            f"{decision.exception.recorded_at}. Pass --replace to replace it. The "
            "earlier exception stays in the version's artifacts"
        )
