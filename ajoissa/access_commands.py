"""``ajoissa tokens`` and ``ajoissa access-log``: API access and its audit trail."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ajoissa.cli import app, console, note_schools_without_scores, store_path_or_exit

if TYPE_CHECKING:
    from serving.access import TokenInfo

logger = logging.getLogger(__name__)

tokens_app = typer.Typer(
    help=(
        "Manage the API's bearer tokens. Tokens are stored as SHA-256 digests in "
        "AJOISSA_ACCESS_DB (default access.db in AJOISSA_HOME)."
    ),
    no_args_is_help=True,
)
access_log_app = typer.Typer(
    help=(
        "Check, show and prune the hash-chained access log, AJOISSA_ACCESS_LOG "
        "(default access-log.db in AJOISSA_HOME)."
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
            help="School id a staff token may read (the unit id for sources without "
            "schools); repeat for several schools."
        ),
    ] = None,
    label: Annotated[
        str, typer.Option(help="Free text naming the holder, shown by list.")
    ] = "",
) -> None:
    """Create a token and print it. The token is shown only this once."""
    from serving.access import ACCESS_DB_ENV, TokenStore, access_db_path

    path = store_path_or_exit(
        access_db_path(), "store folder", ACCESS_DB_ENV, folder=True
    )
    try:
        token, info = TokenStore(path).create(role, school or (), label)
    except ValueError as exc:
        typer.echo(f"Cannot create the token: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    note_schools_without_scores(list(info.schools))
    console.print(f"Created {info.role} token {info.token_id}.")
    console.print("Store it now. It cannot be shown again:")
    typer.echo(token)


@tokens_app.command("list")
def list_tokens() -> None:
    """List tokens (id, role, schools, label, created, revoked), never secrets.

    In a terminal wide enough for it the list is a table. Otherwise, and when
    the output is piped, it is tab-separated text with a header line. Ids are
    never shortened.
    """
    from serving.access import ACCESS_DB_ENV, TokenStore, access_db_path

    path = store_path_or_exit(access_db_path(), "token database", ACCESS_DB_ENV)
    print_tokens(TokenStore(path).list())


TOKEN_COLUMNS = ("id", "role", "schools", "label", "created", "revoked")


def print_tokens(infos: list[TokenInfo], out: Console | None = None) -> None:
    """Print ``infos`` as a table if it fits ``out``, else as tab-separated lines."""
    out = out or console
    rows = [
        (
            info.token_id,
            info.role,
            ", ".join(info.schools),
            info.label,
            info.created_at,
            info.revoked_at or "",
        )
        for info in infos
    ]
    table = Table(title="API tokens")
    for header in TOKEN_COLUMNS:
        table.add_column(header, no_wrap=header == "id")
    for row in rows:
        table.add_row(*row)
    if out.is_terminal and out.measure(table).maximum <= out.width:
        out.print(table)
        return
    # Plain text keeps every id whole however narrow the terminal is, and a
    # pipe gets lines that cut and awk can read.
    lines = ["\t".join(TOKEN_COLUMNS)]
    lines += ["\t".join(_one_line(value) for value in row) for row in rows]
    out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _one_line(value: str) -> str:
    return " ".join(value.split())


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[
        str,
        typer.Argument(
            help="Token id as shown by list, or a unique prefix of at least 8 of "
            "its characters. A whole token is accepted, and its secret is never "
            "printed."
        ),
    ],
) -> None:
    """Revoke a token. Requests that use it get 401 from then on."""
    from serving.access import (
        ACCESS_DB_ENV,
        TOKEN_PREFIX,
        TokenStore,
        access_db_path,
    )

    path = store_path_or_exit(access_db_path(), "token database", ACCESS_DB_ENV)
    if token_id.strip().startswith(TOKEN_PREFIX):
        typer.echo(
            "The argument is a whole token; only its id is used. Next time give "
            "the id from `ajoissa tokens list`, so the secret stays out of the "
            "shell history.",
            err=True,
        )
    try:
        full_id = TokenStore(path).revoke(token_id)
    except LookupError as exc:
        typer.echo(f"Cannot revoke: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    console.print(f"Revoked token {full_id}.")


@access_log_app.command("verify")
def verify_log() -> None:
    """Recompute the hash chain. Exit code 1 if a row was edited, deleted or moved.

    Exit code 2 if the log cannot be read or AJOISSA_ACCESS_LOG_RETENTION_DAYS
    is invalid.
    """
    from serving.accesslog import ACCESS_LOG_ENV, AccessLog, access_log_path

    path = store_path_or_exit(access_log_path(), "access log", ACCESS_LOG_ENV)
    retention = _retention_or_exit("Cannot verify", None)
    try:
        log = AccessLog(path, create=False, read_only=True)
    except ValueError as exc:
        typer.echo(f"Cannot verify: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    result = log.verify(retention=retention)
    for prune in result.prunes:
        typer.echo(f"Pruned: {prune}")
    for short in result.short_prunes:
        typer.echo(f"Warning: {short}; check that it was intended.", err=True)
    if not result.ok:
        for problem in result.problems:
            typer.echo(problem, err=True)
        typer.echo(
            f"Access log {log.path} FAILED verification: {len(result.problems)} "
            "problem(s).",
            err=True,
        )
        raise typer.Exit(code=1)
    # Plain echo, because a console would wrap the path and hash at its width.
    typer.echo(
        f"Access log {log.path} verified: {result.rows_checked} "
        f"{'row' if result.rows_checked == 1 else 'rows'}, head seq "
        f"{result.head_seq}, head hash {result.head_hash}"
    )
    if result.rows_checked == 0 and result.head_seq == 0:
        typer.echo(
            f"The access log is empty: it has never had a row. If {log.path} is "
            "a copy of a live log, the copy missed the rows that were still in "
            f"the log's {log.path.name}-wal file. Copy a live log with "
            f'`sqlite3 {log.path.name} ".backup COPY"`, or copy its -wal file '
            "with it, and verify the copy again.",
            err=True,
        )


DEFAULT_SHOW_ROWS = 50
"""Rows that ``access-log show`` prints without --limit: about one screen."""
ACCESS_LOG_COLUMNS = (
    ("time", "time"),
    ("token", "token_id"),
    ("role", "role"),
    ("pupil", "pupil_id"),
    ("school", "school_id"),
    ("model version", "model_version"),
    ("endpoint", "endpoint"),
    ("outcome", "outcome"),
)
"""Column headers of ``access-log show`` and the row fields they print."""


@access_log_app.command("show")
def show_log(
    pupil: Annotated[
        str | None, typer.Option(help="Only rows of this pupil id, exactly.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Only rows of this token id, as `ajoissa tokens list` shows it."
        ),
    ] = None,
    since: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Only rows from this date (YYYY-MM-DD, from midnight UTC) on.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Print at most this many rows.")
    ] = DEFAULT_SHOW_ROWS,
) -> None:
    """Print access-log rows, newest first: who read which pupil's data, and when.

    This is an audit tool for the data protection officer. It prints pupil
    ids on purpose, to the person who runs it, so run it only to respond to an
    audit or a pupil's request for their data. Each run adds a row to the
    log: the OS user, the filters and the number of rows printed. In a
    terminal wide enough for it the rows are a table. Otherwise, and when the
    output is piped, they are tab-separated text with a header line.
    """
    from serving.accesslog import ACCESS_LOG_ENV, AccessLog, access_log_path

    path = store_path_or_exit(access_log_path(), "access log", ACCESS_LOG_ENV)
    try:
        log = AccessLog(path, create=False, read_only=True)
    except ValueError as exc:
        typer.echo(f"Cannot show the access log: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    since_date = since.date() if since else None
    rows = log.query(pupil, token, since_date, limit)
    # The read is recorded before any row is printed, so no row is shown
    # without a record of who read it.
    _record_show(log.path, pupil, token, since_date, limit, len(rows))
    print_access_rows(rows)
    if len(rows) == limit:
        typer.echo(
            f"Showing the newest {limit} matching rows; pass --limit for more.",
            err=True,
        )
    elif not rows:
        typer.echo("No access-log rows match.", err=True)


SHOW_ENDPOINT = "ajoissa access-log show"
"""Endpoint of the access-log row that records a run of ``access-log show``."""
OS_USER_ROLE = "os-user"
"""Role of a row written by a command: its token column contains an OS user name."""


def _record_show(
    path: Path,
    pupil: str | None,
    token: str | None,
    since: dt.date | None,
    limit: int,
    shown: int,
) -> None:
    """Append one row that records this run of ``show``, exiting 2 if that fails.

    The row names the OS user in the token column, with the role
    ``OS_USER_ROLE``. The endpoint lists the filters, with the pupil id
    replaced by ``{id}`` because the pupil column contains it.
    """
    from serving.accesslog import AccessEvent, AccessLog

    user = _os_user()
    event = AccessEvent(
        endpoint=_show_endpoint(pupil, token, since, limit),
        outcome=f"shown {shown} {'row' if shown == 1 else 'rows'}",
        token_id=user,
        role=OS_USER_ROLE,
        pupil_id=pupil,
    )
    try:
        log = AccessLog(path, create=False)
        try:
            seq = log.append(event)
        finally:
            log.close()
    except (sqlite3.Error, ValueError) as exc:
        typer.echo(
            f"Cannot show the access log: recording this read in {path} failed "
            f"({exc}). show records each of its runs in the log, so run it as a "
            "user who may write that file and its folder, or on a copy.",
            err=True,
        )
        raise typer.Exit(code=2) from exc
    # The filters can contain a pupil id, so they are logged at DEBUG only.
    logger.info("recorded access-log show by OS user %s as row %d", user, seq)
    logger.debug("access-log show row %d: %s", seq, event)


def _show_endpoint(
    pupil: str | None, token: str | None, since: dt.date | None, limit: int
) -> str:
    from serving.accesslog import loggable_id

    parts = [SHOW_ENDPOINT]
    if pupil is not None:
        parts.append("--pupil {id}")
    if token is not None:
        parts.append(f"--token {shlex.quote(loggable_id(token) or '')}")
    if since is not None:
        parts.append(f"--since {since.isoformat()}")
    parts.append(f"--limit {limit}")
    return " ".join(parts)


def _os_user() -> str:
    """Return the name of the process's effective user, or ``uid N`` if it has none."""
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def print_access_rows(
    rows: list[dict[str, object]], out: Console | None = None
) -> None:
    """Print access-log ``rows`` as a table if it fits ``out``, else as tab-separated lines."""
    from serving.accesslog import loggable_id

    out = out or console
    # Rows written before ids were shortened may hold control characters,
    # which must not reach the terminal.
    cells = [
        [
            loggable_id(str(row[field])) if row[field] is not None else ""
            for _, field in ACCESS_LOG_COLUMNS
        ]
        for row in rows
    ]
    table = Table(title="Access log, newest first")
    for header, _ in ACCESS_LOG_COLUMNS:
        table.add_column(header, no_wrap=header in ("time", "token", "pupil"))
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    if out.is_terminal and out.measure(table).maximum <= out.width:
        out.print(table)
        return
    # Written past the console, which would expand the tabs to spaces.
    lines = ["\t".join(header for header, _ in ACCESS_LOG_COLUMNS)]
    lines += ["\t".join(row) for row in cells]
    out.file.write("\n".join(lines) + "\n")


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
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="Prune without asking when the retention is shorter than the "
            "default of 183 days.",
        ),
    ] = False,
) -> None:
    """Delete rows older than the retention period, keeping the chain verifiable.

    A retention shorter than the default needs --yes or a confirmation at the
    terminal, because the deleted rows cannot be restored.
    """
    from serving.accesslog import (
        ACCESS_LOG_ENV,
        DEFAULT_RETENTION_DAYS,
        AccessLog,
        access_log_path,
    )

    path = store_path_or_exit(access_log_path(), "access log", ACCESS_LOG_ENV)
    retention = _retention_or_exit("Cannot prune", retention_days)
    try:
        log = AccessLog(path, create=False)
    except ValueError as exc:
        typer.echo(f"Cannot prune: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    # One time for the preview and the prune, so the prune deletes no row that
    # the preview did not list, however long the confirmation takes.
    now = dt.datetime.now(dt.UTC)
    preview = log.prune_preview(retention, now)
    if preview.rows == 0:
        console.print(
            f"No access-log rows are older than {retention} days "
            f"(before {preview.cutoff:%Y-%m-%d %H:%M} UTC); nothing to prune."
        )
        return
    typer.echo(
        f"Will delete {preview.rows} access-log row(s) older than {retention} days: "
        f"from {preview.oldest} to {preview.newest} (before "
        f"{preview.cutoff:%Y-%m-%d %H:%M} UTC)."
    )
    if retention < DEFAULT_RETENTION_DAYS and not yes:
        _confirm_short_retention_or_exit(retention, DEFAULT_RETENTION_DAYS)
    deleted = log.prune(retention, now=now)
    console.print(f"Pruned {deleted} access-log {'row' if deleted == 1 else 'rows'}.")


def _retention_or_exit(failure: str, option: int | None) -> int:
    """Return ``option`` or the retention setting, exiting 2 if it is invalid."""
    from serving.accesslog import check_retention, retention_days

    try:
        if option is not None:
            return check_retention(option, f"--retention-days {option}")
        return retention_days()
    except ValueError as exc:
        typer.echo(f"{failure}: {exc}", err=True)
        raise typer.Exit(code=2) from exc


def _confirm_short_retention_or_exit(retention: int, default: int) -> None:
    warning = (
        f"The retention of {retention} days is shorter than the default of "
        f"{default} days. The deleted rows cannot be restored, and verify lists "
        "this prune."
    )
    if not _stdin_is_terminal():
        typer.echo(f"{warning} Pass --yes to prune; nothing was deleted.", err=True)
        raise typer.Exit(code=2)
    typer.echo(warning, err=True)
    if not typer.confirm("Delete these rows?", default=False):
        typer.echo("Nothing was deleted.", err=True)
        raise typer.Exit(code=1)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()
