"""``ajoissa tokens`` and ``ajoissa access-log``: API access and its audit trail."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ajoissa.cli import app, console

tokens_app = typer.Typer(
    help=(
        "Manage the API's bearer tokens. Tokens are stored as SHA-256 digests in "
        "AJOISSA_ACCESS_DB (default access.db in AJOISSA_HOME)."
    ),
    no_args_is_help=True,
)
access_log_app = typer.Typer(
    help=(
        "Check and prune the hash-chained access log, AJOISSA_ACCESS_LOG (default "
        "access-log.db in AJOISSA_HOME)."
    ),
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
app.add_typer(access_log_app, name="access-log")


@tokens_app.command("create")
def create_token(
    role: Annotated[
        str, typer.Option(help="Role: platform, staff, reviewer or admin.")
    ],
    school: Annotated[
        list[str] | None,
        typer.Option(
            help="School (unit) id a staff token may read; repeat for several schools."
        ),
    ] = None,
    label: Annotated[
        str, typer.Option(help="Free text naming the holder, shown by list.")
    ] = "",
) -> None:
    """Create a token and print it. The token is shown only this once."""
    from serving.access import TokenStore

    try:
        token, info = TokenStore().create(role, school or (), label)
    except ValueError as exc:
        typer.echo(f"Cannot create the token: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    console.print(f"Created {info.role} token {info.token_id}.")
    console.print("Store it now. It cannot be shown again:")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens() -> None:
    """List tokens (id, role, schools, label, created, revoked), never secrets."""
    from serving.access import TokenStore

    table = Table(title="API tokens")
    for header in ("id", "role", "schools", "label", "created", "revoked"):
        table.add_column(header)
    for info in TokenStore().list():
        table.add_row(
            info.token_id,
            info.role,
            ", ".join(info.schools),
            info.label,
            info.created_at,
            info.revoked_at or "",
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="Token id, as shown by list.")],
) -> None:
    """Revoke a token. Requests that use it get 401 from then on."""
    from serving.access import TokenStore

    try:
        TokenStore().revoke(token_id)
    except LookupError as exc:
        typer.echo(f"Cannot revoke: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    console.print(f"Revoked token {token_id}.")


@access_log_app.command("verify")
def verify_log() -> None:
    """Recompute the hash chain. Exit code 1 if a row was edited, deleted or moved."""
    from serving.accesslog import AccessLog

    log = AccessLog()
    result = log.verify()
    if not result.ok:
        for problem in result.problems:
            typer.echo(problem, err=True)
        typer.echo(
            f"Access log {log.path} FAILED verification: {len(result.problems)} "
            "problem(s).",
            err=True,
        )
        raise typer.Exit(code=1)
    console.print(
        f"Access log {log.path} verified: {result.rows_checked} rows, head seq "
        f"{result.head_seq}, head hash {result.head_hash}"
    )


@access_log_app.command("prune")
def prune_log(
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep rows this many days old or newer. Default: "
            "AJOISSA_ACCESS_LOG_RETENTION_DAYS or 183 (about 6 months).",
        ),
    ] = None,
) -> None:
    """Delete rows older than the retention period, keeping the chain verifiable."""
    from serving.accesslog import AccessLog

    try:
        deleted = AccessLog().prune(retention_days)
    except ValueError as exc:
        typer.echo(f"Cannot prune: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    console.print(f"Pruned {deleted} access-log rows.")
