"""Errors raised when input data does not meet the input contract."""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Problem:
    """One invalid value, located precisely enough for a person to fix it.

    ``row`` is the 1-based line number in the file (the header is line 1) when the
    problem comes from a file, otherwise the 0-based row position in the table.
    """

    file: str
    table: str
    column: str
    row: int | None
    value: object
    expected: str
    detail: str = ""
    """A sentence about this row alone, such as which other row repeats its key.
    :func:`summarize_problems` groups problems without it."""

    def __str__(self) -> str:
        detail = f". {self.detail}" if self.detail else ""
        if self.column == "*":
            row = "" if self.row is None else f", row {self.row}"
            return f"{self.file}: table {self.table!r}{row}: {self.expected}{detail}"
        row = "-" if self.row is None else str(self.row)
        return (
            f"{self.file}: table {self.table!r}, column {self.column!r}, row {row}: "
            f"value {_shown(self.value)} is invalid; expected {self.expected}{detail}"
        )


def _shown(value: object) -> str:
    """Return ``value`` as a reader of the file would write it, quoted when text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(empty)"
    if value is pd.NaT:
        return "(empty)"
    if isinstance(value, pd.Timestamp | dt.datetime):
        moment = pd.Timestamp(value)
        if moment == moment.normalize():
            return moment.date().isoformat()
        return moment.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def summarize_problems(problems: list[Problem], per_group: int = 20) -> list[str]:
    """Return one line per problem, at most ``per_group`` per kind of problem.

    A kind is the file, table, column and expected value. For each kind with
    more problems, a last line gives the count of the rest.
    """
    groups: dict[tuple[str, str, str, str], list[Problem]] = {}
    for problem in problems:
        key = (problem.file, problem.table, problem.column, problem.expected)
        groups.setdefault(key, []).append(problem)
    lines = []
    for (file, table, column, _), members in groups.items():
        lines += [str(p) for p in members[:per_group]]
        if len(members) > per_group:
            lines.append(
                f"{file}: table {table!r}, column {column!r}: ... and "
                f"{len(members) - per_group} more rows with the same problem"
            )
    return lines


def write_problem_report(problems: list[Problem], path: Path) -> None:
    """Write every problem to ``path``, one per line, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    os.replace(tmp, path)


class InputDataError(ValueError):
    """Raised when input files or tables break the input contract.

    The message lists every problem found (up to ``max_listed``) so that one run
    reports all that needs fixing; ``problems`` keeps the full list.
    """

    def __init__(self, problems: list[Problem], max_listed: int = 20) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[:max_listed]]
        if len(problems) > max_listed:
            lines.append(f"... and {len(problems) - max_listed} more problems")
        lines.append(
            "Fix the listed problems in the source files or folders and run again."
        )
        super().__init__(
            f"{len(problems)} problem(s) in the input data:\n" + "\n".join(lines)
        )


class MappingError(ValueError):
    """Raised when a mapping file is missing, not valid YAML, or has invalid keys.

    ``problems`` lists (key, message) pairs; the key is a dotted path such as
    ``outcome.rule``, or ``*`` for the whole file.
    """

    def __init__(self, path: object, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [
            f"{self.path}: {message}"
            if key == "*"
            else f"{self.path}: key {key!r}: {message}"
            for key, message in problems
        ]
        lines.append("Fix the mapping file and run again.")
        super().__init__(
            f"{len(problems)} problem(s) in the mapping file:\n" + "\n".join(lines)
        )
