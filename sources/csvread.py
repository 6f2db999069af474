"""Read CSV files column by column, reporting every unparseable value."""

from __future__ import annotations

import codecs
import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sources.errors import InputDataError, Problem

logger = logging.getLogger(__name__)

ColumnKind = Literal["str", "int", "float"]


def _file_error(path: Path, table: str, message: str) -> InputDataError:
    """Return an error about the whole file, not one of its values."""
    return InputDataError([Problem(str(path), table, "*", None, None, message)])


def locate_decode_error(
    path: Path, encoding: str, sep: str, comment: str | None = None
) -> tuple[int | None, str]:
    """Find the first byte of ``path`` that ``encoding`` cannot decode.

    Returns its 1-based line number (None if every line decodes) and a text
    naming the column, the byte and the reason. The error that pandas raises
    gives only a byte position, which a person cannot find in a spreadsheet.
    Lines that start with ``comment`` are not taken as the header line.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    header: list[str] | None = None
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                text = decoder.decode(line)
            except UnicodeDecodeError as exc:
                start = min(exc.start, len(line) - 1)
                # NOTE: the column is found by counting separators before the
                # byte, so a quoted field that contains the separator shifts it.
                field = line[:start].count(sep.encode("ascii", "replace"))
                column = (
                    f"column {header[field]!r}, "
                    if header is not None and field < len(header)
                    else ""
                )
                return line_number, f"{column}byte 0x{line[start]:02x} ({exc.reason})"
            if header is None and not (comment and text.startswith(comment)):
                header = next(csv.reader([text.lstrip("\ufeff")], delimiter=sep), [])
                header = [name.strip() for name in header]
    return None, "no undecodable byte found on a second read"


def missing_columns_message(header: list[str], absent: list[str], sep: str) -> str:
    """Return the problem text for a header line that lacks the columns ``absent``.

    A header read as one column that contains a comma or a tab most likely
    comes from a file saved with another separator than ``sep``. The message
    then explains how to save the file instead of listing every column.
    """
    listed = ", ".join(repr(name) for name in absent)
    if len(header) == 1 and ("," in header[0] or "\t" in header[0]):
        return (
            "the header line looks separated by commas or tabs, but the "
            f"contract's CSV uses {sep!r}: save the file as CSV UTF-8 with {sep!r} "
            f"as the separator (columns not found: {listed})"
        )
    near = {_header_key(name): name for name in header}
    renames = [
        f"{near[_header_key(name)]!r} as {name!r}"
        for name in absent
        if _header_key(name) in near
    ]
    if renames:
        # Column names are matched exactly, so Pupil_ID is not pupil_id.
        others = "" if len(renames) == len(absent) else ", and add the others"
        return (
            f"the header line lacks the column(s) {listed}; rename "
            f"{', '.join(renames)}{others}: the contract's column names are lower case"
        )
    return f"the header line lacks the column(s) {listed}; add them"


def _header_key(name: str) -> str:
    """Return a column name compared without case and surrounding spaces."""
    return name.strip().casefold()


def read_typed_csv(
    path: Path,
    table: str,
    columns: Mapping[str, ColumnKind],
    *,
    required: tuple[str, ...] = (),
    sep: str = ",",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read ``path`` and convert ``columns`` to their kinds.

    All values are read as text first so that a value that does not parse is
    reported with its file, column, line and text instead of turning into NaN.
    Empty strings are missing values; columns listed in ``required`` may not have
    any. Columns not named in ``columns`` are dropped.

    Raises
    ------
    InputDataError
        If the file is missing, a column is missing, or values do not parse.
    """
    if not path.is_file():
        raise _file_error(
            path, table, "file not found; check that the data folder holds this file"
        )
    logger.debug("reading %s as table %s", path, table)
    try:
        raw = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            encoding=encoding,
            encoding_errors="strict",
        )
    except pd.errors.EmptyDataError as exc:
        raise _file_error(
            path, table, "the file is empty; expected a header line and data rows"
        ) from exc
    except UnicodeDecodeError as exc:
        line, where = locate_decode_error(path, encoding, sep)
        raise InputDataError(
            [
                Problem(
                    str(path),
                    table,
                    "*",
                    line,
                    None,
                    f"the file is not valid {encoding} text: {where}; save it as "
                    f"CSV {encoding.upper()}",
                )
            ]
        ) from exc
    except pd.errors.ParserError as exc:
        raise _file_error(
            path, table, f"the file is not valid CSV with separator {sep!r}: {exc}"
        ) from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise InputDataError(
            [
                Problem(str(path), table, c, 1, None, "this column in the header")
                for c in missing
            ]
        )

    problems: list[Problem] = []
    out: dict[str, pd.Series] = {}
    for name, kind in columns.items():
        text = raw[name].str.strip()
        empty = text == ""
        if name in required:
            for i in np.flatnonzero(empty.to_numpy())[:50]:
                problems.append(
                    Problem(str(path), table, name, int(i) + 2, "", "a non-empty value")
                )
        if kind == "str":
            out[name] = text.where(~empty, None).astype("str")
            continue
        numbers = pd.to_numeric(text.where(~empty, None), errors="coerce")
        # inf, -Infinity and values beyond the float range (1e400) parse to an
        # infinite float, which no model can train on.
        infinite = pd.Series(np.isinf(numbers.to_numpy(dtype=float)), index=text.index)
        bad = (numbers.isna() & ~empty) | infinite
        if kind == "int":
            fractional = numbers.notna() & ~infinite & (numbers % 1 != 0)
            bad = bad | fractional
        expected = "an integer" if kind == "int" else "a number"
        for i in np.flatnonzero(bad.to_numpy())[:50]:
            problems.append(
                Problem(
                    str(path),
                    table,
                    name,
                    int(i) + 2,
                    raw[name].iloc[i],
                    "a finite number; replace the infinite or out-of-range value"
                    if infinite.iloc[i]
                    else expected,
                )
            )
        if bad.any():
            # Skip the cast, which rejects fractional values. The problems raise below.
            continue
        out[name] = numbers.astype("Int64" if kind == "int" else "Float64")
    if problems:
        raise InputDataError(problems)
    return pd.DataFrame(out)


def reject_duplicates(
    frame: pd.DataFrame, key: list[str], path: Path, table: str
) -> None:
    """Raise if two rows of ``frame`` share the same ``key`` values.

    Raises
    ------
    InputDataError
        Naming each repeated row by its line in the file (the header is line 1).
    """
    repeated = frame.duplicated(subset=key, keep="first").to_numpy()
    if not repeated.any():
        return
    problems = [
        Problem(
            str(path),
            table,
            "+".join(key),
            int(i) + 2,
            "/".join(str(frame[c].iloc[i]) for c in key),
            "a key that no earlier row has; remove the duplicate row",
        )
        for i in np.flatnonzero(repeated)[:50]
    ]
    raise InputDataError(problems)
