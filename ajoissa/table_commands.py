"""``ajoissa inspect``: show what Ajoissa understands of a table and its mapping file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ajoissa.cli import app, console

INSPECT_HELP = (
    "Read the table that a mapping file describes and print what Ajoissa makes of "
    "it: rows, columns with their roles and inferred types, the outcome rate, the "
    "sensitive groups and their sizes, and warnings (possible leakage, constant "
    "columns, audit groups below the minimum size, many missing values). Trains "
    "nothing and writes nothing."
)


@app.command("inspect", help=INSPECT_HELP)
def inspect_table(
    mapping: Annotated[
        Path, typer.Option(help="Mapping file (YAML) that describes the table.")
    ],
) -> None:
    from sources.errors import InputDataError, MappingError
    from sources.table import read_mapped_table
    from sources.table_inspect import LEAKAGE_AUC, inspect_mapped_table

    try:
        table = read_mapped_table(mapping)
    except (InputDataError, MappingError) as exc:
        typer.echo(f"Input data error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    report = inspect_mapped_table(table)
    spec = table.mapping

    console.print(f"Mapping {spec.name!r} ({mapping})")
    console.print(f"Data file: {table.path}")
    console.print(f"Rows: {table.rows}, columns: {len(table.columns)}")
    console.print(
        f"Outcome: {spec.outcome.describe()}: {report.adverse_rows} rows adverse "
        f"({report.outcome_rate:.1%})"
    )
    if table.validation == "temporal":
        console.print(
            f"Validation: temporal; periods starting on or after "
            f"{table.temporal_cutoff()} test the model"
        )
    else:
        console.print(
            f"Validation: stratified {spec.split.folds}-fold cross-validation "
            "(no period column)"
        )

    columns = Table(title="Columns")
    for header in ("column", "role", "type", "feature name", "missing", "distinct"):
        columns.add_column(header)
    columns.add_column(f"univariate ROC-AUC (warn >= {LEAKAGE_AUC})", justify="right")
    for info in table.columns:
        auc = report.univariate_auc.get(info.column)
        auc_text = "-" if auc is None or math.isnan(auc) else f"{auc:.3f}"
        columns.add_row(
            info.column,
            info.role,
            info.kind,
            info.feature_name or "-",
            f"{info.missing_share:.0%}",
            str(info.distinct),
            auc_text,
        )
    console.print(columns)

    for name, sizes in report.sensitive_groups.items():
        groups = Table(
            title=f"Sensitive attribute {name!r} (audit only, never a feature)"
        )
        groups.add_column("group")
        groups.add_column("rows", justify="right")
        reference = next(s.reference for s in spec.sensitive if s.audit_name == name)
        for group, size in sizes.items():
            label = f"{group} (reference)" if group == reference else group
            groups.add_row(label, str(size))
        console.print(groups)

    if report.warnings:
        console.print(f"[bold]Warnings ({len(report.warnings)}):[/bold]")
        for warning in report.warnings:
            console.print(f"- {warning}", markup=False)
    else:
        console.print("No warnings.")
