"""``ajoissa reviews``: export staff reviews and set each school's review capacity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ajoissa.cli import app, console, note_schools_without_scores, store_path_or_exit

reviews_app = typer.Typer(
    help=(
        "Reviews that staff recorded in the review screens, and the per-school "
        "settings of those screens. Stored in AJOISSA_UI_DB (default ui.db in "
        "AJOISSA_HOME)."
    ),
    no_args_is_help=True,
)
app.add_typer(reviews_app, name="reviews")


@reviews_app.command("export")
def export_reviews(
    out: Annotated[
        Path,
        typer.Option(
            help="CSV file to write; an existing file is replaced whole.",
        ),
    ],
) -> None:
    """Write every review to Excel CSV, one row per review, oldest first.

    The file uses ';' between fields, UTF-8 with a byte-order mark and a
    decimal comma, as a Finnish Excel expects. Cells that start with '=', '+',
    '-' or '@' get a leading apostrophe so that they stay text.

    Each row has the decision, follow-up date and note. It also has the score
    the pupil had when reviewed: as-of date, model version, probability, rank
    and whether the pupil was within the team's capacity, so that reviews can
    be joined to outcomes for retraining and evaluation.
    """
    from serving.ui.store import UI_DB_ENV, UiStore, ui_db_path

    store = UiStore(store_path_or_exit(ui_db_path(), "review database", UI_DB_ENV))
    count = store.export_csv(out)
    noun = "review" if count == 1 else "reviews"
    console.print(f"Wrote {count} {noun} from {store.path} to {out}")


@reviews_app.command("capacity")
def set_capacity(
    school: Annotated[
        str, typer.Argument(help="School id (the unit id for sources without schools).")
    ],
    pupils: Annotated[
        int,
        typer.Argument(
            help="Pupils the school's team can review per scoring run; also the "
            "page size of the school's list."
        ),
    ],
) -> None:
    """Set how many of a school's highest-ranked pupils are marked for review."""
    from serving.ui.store import UI_DB_ENV, UiStore, check_capacity, ui_db_path

    path = store_path_or_exit(ui_db_path(), "store folder", UI_DB_ENV, folder=True)
    try:
        # Checked before the store opens, so a refused call creates no database.
        check_capacity(school, pupils)
        UiStore(path).set_capacity(school, pupils)
    except ValueError as exc:
        typer.echo(f"Cannot set the capacity: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    note_schools_without_scores([school])
    noun = "pupil" if pupils == 1 else "pupils"
    console.print(f"School {school}: {pupils} {noun} per scoring run.")
