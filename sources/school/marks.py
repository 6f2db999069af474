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
from sources.errors import InputDataError, Problem

DEFAULT_MARK_CODES = Path(__file__).parent / "mark_codes.csv"
"""The example table used when an export brings none; see its header comment."""


def read_mark_codes(path: Path = DEFAULT_MARK_CODES) -> dict[str, str]:
    """Read a mark-code table into a mapping from local code to contract mark.

    Lines starting with ``#`` are comments. Codes are matched exactly after
    stripping spaces, so ``s`` and ``S`` are different codes.

    Raises
    ------
    InputDataError
        If the file is missing, a mark is not a contract mark or a code repeats.
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
    problems = []
    for column in ("code", "mark"):
        if column not in table.columns:
            problems.append(
                Problem(str(path), "mark_codes", column, 1, None, "this column")
            )
    if problems:
        raise InputDataError(problems)
    codes: dict[str, str] = {}
    for position, (code, mark) in enumerate(
        zip(table["code"], table["mark"], strict=True)
    ):
        code, mark = code.strip(), mark.strip()
        if mark not in ATTENDANCE_MARKS:
            problems.append(
                Problem(
                    str(path),
                    "mark_codes",
                    "mark",
                    position + 2,
                    mark,
                    f"one of {', '.join(ATTENDANCE_MARKS)}",
                )
            )
        if code in codes:
            problems.append(
                Problem(
                    str(path),
                    "mark_codes",
                    "code",
                    position + 2,
                    code,
                    "each code listed once",
                )
            )
        codes[code] = mark
    if problems:
        raise InputDataError(problems)
    return codes
