"""Map a platform's local attendance mark codes to the contract's marks.

Every school platform has its own codes for "ill", "absent with permission",
"truant" and "late". A mark-code table (a CSV file with the columns ``code`` and
``mark``) maps each code to one of the contract's marks: ``present``,
``excused``, ``unexcused`` or ``late``. A code missing from the table is an
input error, never a guess.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sources.contract import ATTENDANCE_MARKS
from sources.csvread import locate_decode_error, missing_columns_message
from sources.errors import InputDataError, Problem

DEFAULT_MARK_CODES = Path(__file__).parent / "mark_codes.csv"
"""The example table used when an export brings none; see its header comment."""


def _table_lines(path: Path) -> list[int]:
    """Return the 1-based line of the header and of each row that read_csv reads.

    read_csv skips blank lines and lines that start with ``#``, so a row's
    position alone does not give its line.
    """
    with path.open(encoding="utf-8-sig") as handle:
        return [
            number
            for number, line in enumerate(handle, start=1)
            if line.strip() and not line.startswith("#")
        ]


def read_mark_codes(path: Path = DEFAULT_MARK_CODES) -> dict[str, str]:
    """Read a mark-code table into a mapping from local code to contract mark.

    Lines starting with ``#`` are comments. Codes are matched exactly after
    stripping spaces, so ``s`` and ``S`` are different codes.

    Raises
    ------
    InputDataError
        If the file is missing, empty, not UTF-8 or not ``;``-separated, lacks
        the column ``code`` or ``mark``, a code is empty, a mark is not a
        contract mark or a code repeats.
    """
    if not path.is_file():
        raise InputDataError(
            [Problem(str(path), "mark_codes", "*", None, None, "file not found")]
        )
    try:
        table = pd.read_csv(
            path,
            sep=";",
            dtype=str,
            comment="#",
            keep_default_na=False,
            encoding="utf-8-sig",
        )
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        detail = (
            "the file is empty"
            if isinstance(exc, pd.errors.EmptyDataError)
            else f"the file cannot be read as CSV: {exc}"
        )
        raise InputDataError(
            [
                Problem(
                    str(path),
                    "mark_codes",
                    "*",
                    None,
                    None,
                    f"{detail}; write a header line 'code;mark' and one line per "
                    "local mark code",
                )
            ]
        ) from exc
    except UnicodeDecodeError as exc:
        line, where = locate_decode_error(path, "utf-8-sig", ";", comment="#")
        raise InputDataError(
            [
                Problem(
                    str(path),
                    "mark_codes",
                    "*",
                    line,
                    None,
                    f"the file is not UTF-8: {where}; save it as CSV UTF-8",
                )
            ]
        ) from exc
    lines = _table_lines(path)
    table.columns = [str(name).strip() for name in table.columns]
    absent = [name for name in ("code", "mark") if name not in table.columns]
    if absent:
        message = missing_columns_message(list(table.columns), absent, ";")
        raise InputDataError(
            [Problem(str(path), "mark_codes", "*", lines[0], None, message)]
        )
    problems = []
    codes: dict[str, str] = {}
    first_lines: dict[str, int] = {}
    for position, (code, mark) in enumerate(
        zip(table["code"], table["mark"], strict=True)
    ):
        code, mark = code.strip(), mark.strip()
        line = lines[position + 1]
        if not code and not mark:
            # A row of separators only, as Excel leaves after the last code.
            continue
        if mark not in ATTENDANCE_MARKS:
            problems.append(
                Problem(
                    str(path),
                    "mark_codes",
                    "mark",
                    line,
                    mark or None,
                    f"one of {', '.join(ATTENDANCE_MARKS)}",
                )
            )
        if not code:
            problems.append(
                Problem(
                    str(path),
                    "mark_codes",
                    "code",
                    line,
                    None,
                    "a non-empty code",
                    f"Write the platform's code for the mark {mark!r} before the "
                    "';', or remove the line",
                )
            )
            continue
        if code in codes:
            problems.append(
                Problem(
                    str(path),
                    "mark_codes",
                    "code",
                    line,
                    code,
                    "each code listed once",
                    f"Row {first_lines[code]} has the same code: remove one of the "
                    "two rows",
                )
            )
            continue
        codes[code] = mark
        first_lines[code] = line
    if problems:
        raise InputDataError(problems)
    return codes
