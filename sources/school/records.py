"""Read and validate a school platform's export of pupil records.

:func:`read_records` reads every table, checks every value and every reference
between tables, and raises one :class:`~sources.errors.InputDataError` listing
all problems before it returns anything. :func:`write_records` stores validated
records as Parquet by writing a new folder and renaming it into place, so a
repeated load replaces the earlier one instead of adding to it.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from sources.contract import ID_EXPECTED, ID_PATTERN
from sources.csvread import locate_decode_error, missing_columns_message
from sources.errors import InputDataError, Problem
from sources.school.grades import GRADE_EXPECTED, off_scale_detail, parse_grade
from sources.school.marks import DEFAULT_MARK_CODES, read_mark_codes
from sources.school.tables import TABLES, ColumnSpec, TableSpec
from sources.study_rights import study_right_spells

logger = logging.getLogger(__name__)

TIME_ZONE = "Europe/Helsinki"
"""Local time of the schools; a timestamp's calendar day is taken here."""

CSV_OPTIONS = {"sep": ";", "encoding": "utf-8-sig"}
"""CSV dialect of Excel in a Finnish locale: ``;`` separator, UTF-8 with a BOM."""

PROBLEM_REPORT_NAME = "load-records-problems.txt"
"""File name of load-records' full problem list, written into the export folder
by default."""

_DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d")
# Excel in a Finnish locale separates hours and minutes with a dot (8.15).
_LOCAL_TIME_FORMATS = (
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H.%M",
    "%d.%m.%Y %H.%M.%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
)
_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"
_TWO_DIGIT_MINUTES = r"[ T]\d{1,2}[:.]\d{2}(?:[:.]\d{2})?$"
"""A local time's minutes (and seconds) have two digits: strptime would read
``8.5`` as 08:05, which a writer may have meant as 08:30."""


@dataclass
class SchoolRecords:
    """Validated export tables with typed columns.

    Dates are ``datetime64`` days without a time zone, in Helsinki local time.
    ``attendance_marks`` gains ``date`` and ``mark`` (the contract mark) and keeps
    one row per pupil, date and lesson. ``grades`` gains ``value`` (missing for
    letter grades) and ``passed`` and keeps the original token in ``grade``.
    Optional tables that the export leaves out are empty.
    """

    pupils: pd.DataFrame
    schools: pd.DataFrame
    study_rights: pd.DataFrame
    study_right_states: pd.DataFrame
    attendance_marks: pd.DataFrame
    grades: pd.DataFrame
    support_decisions: pd.DataFrame
    behaviour_notes: pd.DataFrame
    grade_levels: pd.DataFrame = field(
        default_factory=lambda: empty_export_table("grade_levels")
    )
    mark_codes: dict[str, str] = field(default_factory=dict)
    """The mark-code table that mapped each ``mark_code`` to its ``mark``: local
    code to contract mark. :func:`write_records` stores it with the tables."""
    absent_tables: tuple[str, ...] = ()
    """Optional tables that the export has no file for."""
    counts: dict[str, int] = field(default_factory=dict)
    """Rows read per table, ``duplicate_marks_dropped``,
    ``duplicate_<table>_dropped`` for each table in
    :data:`EXACT_DUPLICATES_DROPPED` and ``blank_rows_skipped`` (rows whose every
    cell is empty, which are not counted as read)."""


DERIVED_COLUMNS = {"attendance_marks": ("date", "mark"), "grades": ("value", "passed")}
"""Columns that :func:`read_records` adds to a table. A stored load has them,
and reading it again derives them anew, so they are not reported as unknown."""


def empty_export_table(name: str) -> pd.DataFrame:
    """Return export table ``name`` with no rows and typed columns."""
    types = {"date": "datetime64[ns]", "timestamp": "datetime64[ns]", "int": "Int64"}
    return pd.DataFrame(
        {
            c.name: pd.Series(dtype=types.get(c.kind, "str"))
            for c in TABLES[name].columns
        }
    )


def school_year(dates: pd.Series) -> pd.Series:
    """Return the school year of each date as its starting calendar year.

    The Finnish school year runs from 1 August to 31 July, so 31 July 2025 is in
    school year 2024 and 1 August 2025 in school year 2025.
    """
    return dates.dt.year - (dates.dt.month < 8).astype(int)


def _find_files(folder: Path, table: str) -> list[Path]:
    """Return the table's files in ``folder``: none, a CSV, a Parquet or both."""
    candidates = (folder / f"{table}{suffix}" for suffix in (".csv", ".parquet"))
    return [candidate for candidate in candidates if candidate.is_file()]


CSV_CHUNK_ROWS = 1_000_000
"""Rows of a CSV file read as text at a time, before they become categories."""


def _read_raw(path: Path) -> pd.DataFrame:
    """Read a table's file with every CSV value as text, as written.

    A CSV file is read a million rows at a time, and each chunk's columns
    become categories of their text. The 8 million marks of a 3,000-pupil
    synthetic export then took 84 MiB, against 938 MiB as one string per
    value. (``read_csv`` with a category dtype would turn text such as
    ``007`` into the number 7.)
    """
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    # Empty lines after the header are read as rows of empty cells, so that
    # the load report counts them with the other blank rows that read_records
    # skips. Empty lines before the header are skipped.
    reader = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=False,
        skiprows=_leading_empty_lines(path),
        encoding_errors="strict",
        chunksize=CSV_CHUNK_ROWS,
        **CSV_OPTIONS,
    )
    with reader:
        chunks = [chunk.astype("category") for chunk in reader]
    if len(chunks) == 1:
        return chunks[0]
    return pd.DataFrame(
        {
            column: union_categoricals([chunk[column] for chunk in chunks])
            for column in chunks[0].columns
        }
    )


def _leading_empty_lines(path: Path) -> int:
    """Return how many empty lines come before the CSV file's header line."""
    count = 0
    with path.open(encoding=CSV_OPTIONS["encoding"], newline="") as handle:
        for line in handle:
            if line.strip("\r\n"):
                break
            count += 1
    return count


def _header_names(path: Path) -> list[str]:
    """Return the column names of the CSV file's header line, stripped, as written."""
    with path.open(encoding=CSV_OPTIONS["encoding"], newline="") as handle:
        records = csv.reader(handle, delimiter=CSV_OPTIONS["sep"])
        header = next((record for record in records if record), [])
    return [name.strip() for name in header]


def _repeated_header_names(path: Path) -> list[str]:
    """Return the column names that the CSV file's header line has more than once.

    Empty names are left out: :func:`_drop_unnamed_columns` handles them.
    """
    names = _header_names(path)
    return sorted({name for name in names if name and names.count(name) > 1})


def _is_empty_column(column: pd.Series) -> bool:
    """Return whether every cell of a text column is empty or only whitespace."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        texts = pd.Series(column.cat.categories.astype("str"))
    else:
        texts = column.dropna().astype("str")
    return bool(texts.str.strip().eq("").all())


def _drop_unnamed_columns(raw: pd.DataFrame, path: Path, table: str) -> pd.DataFrame:
    """Drop the columns of a CSV file whose header name is empty.

    Excel writes a trailing ``;`` in the header for each empty column after
    the last one. Such columns without values are dropped silently. Columns
    with values are named in a warning by their 1-based column number, because
    pandas gives them placeholder names such as ``Unnamed: 6``.
    """
    header = _header_names(path)
    if len(header) != len(raw.columns):
        return raw
    unnamed = [i for i, name in enumerate(header) if not name]
    if not unnamed:
        return raw
    with_values = [i + 1 for i in unnamed if not _is_empty_column(raw.iloc[:, i])]
    if with_values:
        # Only the column numbers: the values may be personal data.
        logger.warning(
            "%s: table '%s' has values in column(s) %s, which have no name in the "
            "header; they are not read or stored. Name the column or delete it.",
            path,
            table,
            ", ".join(str(number) for number in with_values),
        )
    named = [i for i in range(len(header)) if i not in unnamed]
    return raw.iloc[:, named]


def _csv_line_starts(path: Path) -> list[int]:
    """Return the 1-based line on which each data row of a CSV file starts.

    A quoted value can span lines, so a row's position plus 2 is its line only
    in simple files. An empty line is a row, as :func:`_read_raw` reads it.
    This reads the file once more with the :mod:`csv` module and is called
    only when there are problems.
    """
    starts = []
    with path.open(encoding=CSV_OPTIONS["encoding"], newline="") as handle:
        reader = csv.reader(handle, delimiter=CSV_OPTIONS["sep"])
        previous_end = 0
        for record in reader:
            # Empty lines before the header are not rows.
            if record or starts:
                starts.append(previous_end + 1)
            previous_end = reader.line_num
    return starts[1:]


class _Checker:
    """Collects problems for one table file."""

    def __init__(self, path: Path, table: str) -> None:
        self.path = path
        self.table = table
        self.problems: list[Problem] = []
        self._line_starts: list[int] | None = None
        self.blank_rows = 0
        """Rows of the file skipped because every cell is empty."""
        self._kept_rows: np.ndarray | None = None
        self.written_dates: dict[str, pd.Series] = {}
        """Date and timestamp columns as read from the file, to show values as
        written in problems that compare rows, tables or dates."""

    def skip_rows(self, blank: np.ndarray) -> None:
        """Record which rows of the file were skipped, so later rows keep their line."""
        self.blank_rows = int(blank.sum())
        self._kept_rows = np.flatnonzero(~blank)

    def _row_number(self, position: int) -> int:
        """Return the 1-based CSV line (header is line 1) or the 0-based Parquet row."""
        if self._kept_rows is not None:
            position = int(self._kept_rows[position])
        if self.path.suffix != ".csv":
            return position
        if self._line_starts is None:
            self._line_starts = _csv_line_starts(self.path)
        if position < len(self._line_starts):
            return self._line_starts[position]
        return position + 2

    def add(
        self,
        column: str,
        positions: np.ndarray,
        values: pd.Series,
        expected: str,
        details: list[str] | None = None,
    ) -> None:
        """Add a problem for each row in ``positions``.

        ``details``, when given, has one sentence per position.
        """
        for index, position in enumerate(positions):
            self.problems.append(
                Problem(
                    str(self.path),
                    self.table,
                    column,
                    self._row_number(int(position)),
                    values.iloc[int(position)],
                    expected,
                    details[index] if details is not None else "",
                )
            )

    def written(self, column: str, typed: pd.Series) -> pd.Series:
        """Return the date or timestamp column as the file writes it, or ``typed``
        without one."""
        return self.written_dates.get(column, typed)

    def add_file_problem(self, message: str, line: int | None = None) -> None:
        """Add a problem with the whole file, such as an empty one."""
        self.problems.append(
            Problem(str(self.path), self.table, "*", line, None, message)
        )


@dataclass(frozen=True)
class _Texts:
    """A column as its distinct stripped texts and, per row, which one it holds.

    Checks and parsing run once per distinct text, not once per row, and the
    rows then take their result by ``codes``. A marks table repeats a few
    pupils, lessons and codes millions of times, so this saves both time and
    the memory of a Python string per row.
    """

    codes: np.ndarray
    """Per row, the position of its text in ``values``, or -1 when it is empty."""
    values: pd.Series
    """The distinct non-empty texts, stripped of surrounding whitespace."""

    @property
    def missing(self) -> np.ndarray:
        return self.codes < 0

    def per_row(self, per_value: np.ndarray, empty: Any) -> np.ndarray:
        """Return ``per_value`` (one item per text) spread to the rows."""
        return np.append(per_value, np.array([empty], dtype=per_value.dtype))[
            self.codes
        ]


def _as_text(column: pd.Series) -> _Texts:
    """Return ``column`` as stripped text; a missing or blank value is empty."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    stripped = pd.Index(uniques).astype("str").str.strip().to_numpy(dtype=object)
    stripped[stripped == ""] = None
    # Two raw values may strip to the same text.
    text_codes, texts = pd.factorize(stripped, use_na_sentinel=True)
    codes = np.append(text_codes, -1)[codes]
    return _Texts(codes, pd.Series(texts, dtype=object))


EARLIEST_DATE = pd.Timestamp("1900-01-01")
LATEST_DATE = pd.Timestamp("2200-12-31")
"""Dates outside this range are reported as invalid. Far-future placeholders
such as 31.12.9999 for an open end do not fit pandas' nanosecond timestamps,
so the contract writes an open end as an empty value."""


def _in_range(values: pd.Series) -> pd.Series:
    """Return ``values`` as ``datetime64[ns]``, with dates out of range as NaT."""
    inside = (values >= EARLIEST_DATE) & (values <= LATEST_DATE)
    return values.where(inside).astype("datetime64[ns]")


def _parse_dates(text: pd.Series) -> pd.Series:
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for fmt in _DATE_FORMATS:
        todo = parsed.isna() & (text != "")
        if not todo.any():
            break
        parsed[todo] = _in_range(
            pd.to_datetime(text[todo], format=fmt, errors="coerce")
        )
    return parsed


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """Parse timestamps to Helsinki local wall-clock time, without a time zone.

    Values with a UTC offset are converted to Helsinki time; values without one
    are taken as Helsinki local time already.
    """
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    with_offset = text.str.contains(_OFFSET, regex=True)
    if with_offset.any():
        utc = pd.to_datetime(
            text[with_offset], utc=True, format="ISO8601", errors="coerce"
        )
        parsed[with_offset] = _in_range(
            utc.dt.tz_convert(TIME_ZONE).dt.tz_localize(None)
        )
    well_formed = text.str.contains(_TWO_DIGIT_MINUTES, regex=True)
    for fmt in _LOCAL_TIME_FORMATS:
        todo = parsed.isna() & (text != "") & ~with_offset & well_formed
        if not todo.any():
            break
        parsed[todo] = _in_range(
            pd.to_datetime(text[todo], format=fmt, errors="coerce")
        )
    return parsed


def _native_times(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return _in_range(column.dt.tz_convert(TIME_ZONE).dt.tz_localize(None))
    return _in_range(column)


def _check_column(
    raw: pd.DataFrame, spec: ColumnSpec, checker: _Checker, categories: bool = False
) -> pd.Series | None:
    """Check one column of a table and return its typed values.

    Text is returned as ``str``, or as a category with ``categories``.
    """
    column = raw[spec.name]
    native_time = pd.api.types.is_datetime64_any_dtype(column.dtype)
    text = _as_text(column) if not native_time else None
    missing = column.isna().to_numpy() if native_time else text.missing
    if spec.required:
        checker.add(spec.name, np.flatnonzero(missing), column, "a non-empty value")

    if spec.kind in ("date", "timestamp"):
        if native_time:
            values = _native_times(column)
        else:
            parse = _parse_dates if spec.kind == "date" else _parse_timestamps
            parsed = parse(text.values).to_numpy("datetime64[ns]")
            values = pd.Series(
                text.per_row(parsed, np.datetime64("NaT")), index=column.index
            )
        if spec.kind == "date":
            values = values.dt.normalize()
        bad = values.isna().to_numpy() & ~missing
        expected = (
            "a date as dd.mm.yyyy or yyyy-mm-dd"
            if spec.kind == "date"
            else "a timestamp as ISO 8601 with a UTC offset, or local time as "
            "dd.mm.yyyy hh:mm, dd.mm.yyyy hh.mm or yyyy-mm-dd hh:mm"
        ) + f" from {EARLIEST_DATE.year} to {LATEST_DATE.year}"
        if not spec.required:
            expected += "; leave an open end empty instead of a far-future date"
        checker.add(spec.name, np.flatnonzero(bad), column, expected)
        return values

    if spec.kind == "int":
        numbers = pd.to_numeric(text.values, errors="coerce").astype(float)
        wrong = np.isnan(numbers) | (numbers % 1 != 0)
        with np.errstate(invalid="ignore"):
            if spec.low is not None:
                wrong |= numbers < spec.low
            if spec.high is not None:
                wrong |= numbers > spec.high
        numbers[wrong] = np.nan
        checker.add(
            spec.name,
            np.flatnonzero(text.per_row(wrong, False)),
            column,
            f"a whole number from {spec.low} to {spec.high}",
        )
        return pd.Series(text.per_row(numbers, np.nan), index=column.index).astype(
            "Int64"
        )

    if spec.kind == "id":
        wrong = ~text.values.str.fullmatch(ID_PATTERN).to_numpy(dtype=bool)
        checker.add(
            spec.name,
            np.flatnonzero(text.per_row(wrong, False)),
            column,
            ID_EXPECTED,
        )
    if spec.choices:
        wrong = ~text.values.isin(spec.choices).to_numpy()
        rows = np.flatnonzero(text.per_row(wrong, False))
        details = None
        if spec.other_codes:
            details = [
                _other_code_hint(spec, text.values.iloc[text.codes[row]])
                for row in rows
            ]
        checker.add(
            spec.name, rows, column, f"one of {', '.join(spec.choices)}", details
        )
    if categories:
        return pd.Series(
            pd.Categorical.from_codes(
                text.codes, categories=pd.Index(text.values, dtype="str")
            ),
            index=column.index,
        )
    return pd.Series(
        text.per_row(text.values.to_numpy(dtype=object), None),
        index=column.index,
        dtype="str",
    )


def _other_code_hint(spec: ColumnSpec, value: str) -> str:
    """Return which choice a code of another system means, or "" for other values."""
    choice = (spec.other_codes or {}).get(value.lower())
    if choice is None:
        return ""
    return f"{value!r} is the Koski code of {choice!r}: write {choice}"


def _blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """Return, per row, whether every cell is missing or only whitespace.

    Excel may leave such rows, written as separators only, after the last row
    it exported.
    """
    blank = np.ones(len(raw), dtype=bool)
    for name in raw.columns:
        column = raw[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            # Each category is checked once. A missing cell (code -1) takes the last item.
            empty = column.cat.categories.astype("str").str.strip() == ""
            cells = np.append(np.asarray(empty, dtype=bool), True)[
                column.cat.codes.to_numpy()
            ]
        elif pd.api.types.is_string_dtype(column.dtype):
            text = column.astype("str").str.strip()
            cells = (column.isna() | (text == "")).to_numpy(dtype=bool)
        else:
            cells = column.isna().to_numpy(dtype=bool)
        blank &= cells
        if not blank.any():
            break
    return blank


def _read_table(folder: Path, spec: TableSpec) -> tuple[pd.DataFrame | None, _Checker]:
    found = _find_files(folder, spec.name)
    path = found[0] if found else None
    checker = _Checker(path or folder / f"{spec.name}.csv", spec.name)

    def folder_problem(message: str) -> None:
        checker.problems.append(
            Problem(str(folder), spec.name, "*", None, None, message)
        )

    if len(found) > 1:
        # Either could be the newer export, so neither is chosen.
        folder_problem(
            f"both {spec.name}.csv and {spec.name}.parquet are in the export "
            "folder; keep only the one that contains the current export"
        )
        return None, checker
    if path is None:
        if not spec.optional:
            folder_problem(
                f"file {spec.name}.csv or {spec.name}.parquet not found in the "
                "export folder; export this table"
            )
        return None, checker
    try:
        raw = _read_raw(path)
    except pd.errors.EmptyDataError:
        if spec.optional:
            # A table exported with no rows and no header line: no notes. A
            # failed export looks the same, so a warning names the file.
            logger.warning(
                "%s is empty, so table '%s' is read as having no rows; if the "
                "export failed, export the table again with its header line",
                path,
                spec.name,
            )
            return empty_export_table(spec.name), checker
        columns = ";".join(c.name for c in spec.columns)
        checker.add_file_problem(
            f"the file is empty; export the table with its header line: {columns}"
        )
        return None, checker
    except pd.errors.ParserError as exc:
        # pandas names the line: "Expected 6 fields in line 4, saw 8".
        checker.add_file_problem(
            f"the file cannot be read as CSV: {exc}; check that every line has "
            "as many ';'-separated fields as the header and that quoted values "
            "are closed"
        )
        return None, checker
    except UnicodeDecodeError:
        line, where = locate_decode_error(
            path, CSV_OPTIONS["encoding"], CSV_OPTIONS["sep"]
        )
        checker.add_file_problem(
            f"the file is not UTF-8: {where}; save it as CSV UTF-8", line
        )
        return None, checker
    except (OSError, ValueError) as exc:
        if path.suffix != ".parquet":
            raise
        # pyarrow raises ArrowInvalid (a ValueError) for a truncated or empty file.
        checker.add_file_problem(
            f"the file cannot be read as Parquet: {exc}; export the table again"
        )
        return None, checker
    raw.columns = [str(c).strip() for c in raw.columns]
    if path.suffix == ".csv":
        raw = _drop_unnamed_columns(raw, path, spec.name)
        # pandas renames a repeated column to "name.1", so the header is read as written.
        for name in _repeated_header_names(path):
            checker.problems.append(
                Problem(
                    str(path),
                    spec.name,
                    name,
                    1,
                    None,
                    "the column once in the header; it appears more than once, so "
                    "which values to read is unclear",
                )
            )
    if checker.problems:
        return None, checker
    absent = [c.name for c in spec.columns if c.name not in raw.columns]
    if absent:
        message = missing_columns_message(list(raw.columns), absent, CSV_OPTIONS["sep"])
        checker.problems.append(Problem(str(path), spec.name, "*", 1, None, message))
        return None, checker
    known = {c.name for c in spec.columns} | set(DERIVED_COLUMNS.get(spec.name, ()))
    extra = [str(name) for name in raw.columns if name not in known]
    if extra:
        # Only the names, because such a column may contain personal data, such as a hetu.
        logger.warning(
            "%s: table '%s' has columns that the data contract does not define "
            "(%s); they are not read or stored",
            path,
            spec.name,
            ", ".join(repr(name) for name in extra),
        )
    blank = _blank_rows(raw)
    if blank.any():
        checker.skip_rows(blank)
        raw = raw[~blank].reset_index(drop=True)
        logger.info(
            "%s: skipped %d rows whose every cell is empty", path, checker.blank_rows
        )
    only_header = (
        "only its header line"
        if not checker.blank_rows
        else f"only its header line and {checker.blank_rows} empty row(s)"
    )
    if raw.empty and spec.name in REFERENCED_TABLES:
        checker.add_file_problem(
            f"the file has {only_header}; export the table with its rows"
        )
        return None, checker
    if raw.empty and not spec.optional:
        # Valid for a table such as support_decisions, but a failed export of
        # the marks or grades looks the same and would replace their stored rows.
        logger.warning(
            "%s has no rows, %s, so table '%s' is read as having "
            "no rows; if the export failed, export the table again with its rows",
            path,
            only_header,
            spec.name,
        )
    # The marks' text repeats a few values millions of times.
    categories = spec.name == "attendance_marks"
    table = pd.DataFrame(
        {c.name: _check_column(raw, c, checker, categories) for c in spec.columns}
    )
    checker.written_dates = {
        c.name: raw[c.name] for c in spec.columns if c.kind in ("date", "timestamp")
    }
    if spec.key:
        _check_key(table, spec.key, checker)
    return table, checker


def _as_written(value: object) -> str:
    """Return a value for a problem's detail: quoted text, or a date as dd.mm.yyyy."""
    if isinstance(value, str):
        return repr(value)
    if value is None or pd.isna(value):
        return "(empty)"
    if isinstance(value, pd.Timestamp):
        return f"{value:%d.%m.%Y}"
    return str(value)


def _check_key(table: pd.DataFrame, key: tuple[str, ...], checker: _Checker) -> None:
    """Report each row whose key repeats an earlier row's, naming that row."""
    columns = list(key)
    repeated = np.flatnonzero(table.duplicated(columns, keep="first").to_numpy())
    if not len(repeated):
        return
    group = table.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(table))).groupby(group).transform("min")
    last = columns[-1]
    details = []
    for position in repeated:
        same = (
            f"Row {checker._row_number(int(first.iloc[position]))} has the same {last}"
        )
        others = [
            f"{name} {_as_written(checker.written(name, table[name]).iloc[position])}"
            for name in columns[:-1]
        ]
        if others:
            same += f" for {' and '.join(others)}"
        details.append(f"{same}: remove one of the two rows or correct its {last}")
    checker.add(
        last,
        repeated,
        checker.written(last, table[last]),
        f"a unique value of ({', '.join(columns)})",
        details,
    )


def _check_reference(
    tables: dict[str, pd.DataFrame],
    checkers: dict[str, _Checker],
    table: str,
    column: str,
    target: str,
) -> None:
    if table not in tables or target not in tables:
        return
    unknown = ~tables[table][column].isin(tables[target][column])
    checkers[table].add(
        column,
        np.flatnonzero(unknown.to_numpy()),
        tables[table][column],
        f"an id listed in {target}",
    )


def _contract_marks(mark_codes: pd.Series, codes: dict[str, str]) -> pd.Series:
    """Return the contract mark of each local code, as a category.

    Each distinct code is looked up once. An unknown code gives a missing mark.
    """
    local = pd.Series(mark_codes, dtype="category")
    marks = local.cat.categories.map(codes)
    kinds = pd.Index(marks.dropna().unique(), dtype="str")
    positions = np.append(kinds.get_indexer(marks), -1)
    return pd.Series(
        pd.Categorical.from_codes(positions[local.cat.codes.to_numpy()], kinds),
        index=mark_codes.index,
    )


def _resolve_duplicate_marks(marks: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one mark per pupil, date and lesson.

    An office correction outranks a teacher's mark. Among marks by the same
    kind of recorder, the latest ``recorded_at`` wins, and a missing
    ``recorded_at`` counts as earliest. A remaining tie keeps the later file row.

    Only the rows whose key repeats are sorted, so an export without
    duplicates costs one hashing pass and is returned as it is.
    """

    def codes(column: str) -> np.ndarray:
        # A missing value (-1) becomes a code of its own.
        return pd.factorize(marks[column], use_na_sentinel=True)[0] + 1

    pupil, lesson = codes("pupil_id"), codes("lesson")
    day = codes("date")
    key = (pupil * (day.max(initial=0) + 1) + day) * (
        lesson.max(initial=0) + 1
    ) + lesson
    repeated = np.flatnonzero(pd.Series(key).duplicated(keep=False).to_numpy())
    if not len(repeated):
        return marks, 0
    recorded_at = marks["recorded_at"].iloc[repeated]
    recorded = recorded_at.to_numpy("datetime64[ns]").astype("int64")
    recorded[recorded_at.isna().to_numpy()] = np.iinfo("int64").min
    office = (marks["recorded_by"].iloc[repeated] == "office").to_numpy()
    # Sort by the key, then by precedence, so each key's last row is the one to keep.
    order = np.lexsort((repeated, recorded, office, key[repeated]))
    sorted_keys = key[repeated][order]
    superseded = np.zeros(len(order), dtype=bool)
    superseded[:-1] = sorted_keys[1:] == sorted_keys[:-1]
    keep = np.ones(len(marks), dtype=bool)
    keep[repeated[order[superseded]]] = False
    dropped = len(marks) - int(keep.sum())
    return marks[keep].reset_index(drop=True), dropped


EXACT_DUPLICATES_DROPPED = ("grades", "support_decisions", "behaviour_notes")
"""Tables without a key whose rows are dropped when every column repeats an
earlier row. Each such row would count a grade, a support decision or a
behaviour note twice."""


def _drop_exact_duplicates(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the rows whose every column equals an earlier row's.

    Returns the remaining rows and the number dropped.
    """
    repeated = table.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return table, 0
    return table[~repeated].reset_index(drop=True), int(repeated.sum())


MARK_CATEGORY_COLUMNS = (
    "pupil_id",
    "school_id",
    "lesson",
    "subject",
    "mark_code",
    "recorded_by",
    "mark",
)
"""Text columns of the attendance marks kept as categories once checked."""


def _check_support_ends(support: pd.DataFrame, checker: _Checker) -> None:
    """Report support decisions that end before they start."""
    reversed_ = np.flatnonzero(
        (support["end_date"] < support["start_date"]).fillna(False).to_numpy()
    )
    starts = checker.written("start_date", support["start_date"])
    checker.add(
        "end_date",
        reversed_,
        checker.written("end_date", support["end_date"]),
        "a date on or after start_date",
        [
            f"The row's start_date is {_as_written(starts.iloc[i])}: correct the "
            "end_date or the start_date"
            for i in reversed_
        ],
    )


def _check_states_after_start(
    tables: dict[str, pd.DataFrame], checkers: dict[str, _Checker]
) -> None:
    """Report states dated before their study right's start_date."""
    states = tables["study_right_states"]
    rights = tables["study_rights"]
    rights_checker = checkers["study_rights"]

    # The first row of a repeated study_right_id counts, because the repeat
    # itself is reported as a problem.
    first_row = pd.Series(np.arange(len(rights)), index=rights["study_right_id"])
    first_row = first_row[~first_row.index.duplicated(keep="first")]
    right_row = states["study_right_id"].map(first_row)
    start = right_row.map(
        pd.Series(rights["start_date"].to_numpy()), na_action="ignore"
    )
    early = np.flatnonzero((states["state_from"] < start).fillna(False).to_numpy())

    written_starts = rights_checker.written("start_date", rights["start_date"])
    details = []
    for position in early:
        row = int(right_row.iloc[position])
        details.append(
            f"Study right {states['study_right_id'].iloc[position]!r} starts on "
            f"{_as_written(written_starts.iloc[row])} ({rights_checker.path.name}, "
            f"row {rights_checker._row_number(row)}): correct the state_from or "
            "the start_date"
        )

    checker = checkers["study_right_states"]
    checker.add(
        "state_from",
        early,
        checker.written("state_from", states["state_from"]),
        "a date on or after the study right's start_date",
        details,
    )


def _study_right_spans(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Return each study right's pupil, school, ``start_date`` and ``end_date``.

    ``end_date`` is the date of the last state when it is terminal, and missing
    while the right is in force. A right without states is in force from its
    ``start_date``.
    """
    rights = tables["study_rights"]
    states = tables["study_right_states"].merge(
        rights[["study_right_id", "pupil_id"]], on="study_right_id"
    )
    spells = study_right_spells(
        states.rename(columns={"pupil_id": "learner_id"}).assign(level=None)
    )
    spans = rights[["study_right_id", "pupil_id", "school_id", "start_date"]].merge(
        spells[["study_right_id", "end"]], on="study_right_id", how="left"
    )
    # Without any state the merged end has no date type, which DuckDB needs.
    spans["end"] = spans["end"].astype("datetime64[ns]")
    return spans.rename(columns={"end": "end_date"}).drop(columns="study_right_id")


def _outside_study_rights(events: pd.DataFrame, spans: pd.DataFrame) -> np.ndarray:
    """Return, per event, whether its ``date`` lies outside every study right of
    its pupil at its school.

    The join runs in DuckDB because marks run to millions of rows, and it
    returns only the positions of the events outside, which are few.
    """
    keyed = pd.DataFrame(
        {
            "pupil_id": events["pupil_id"],
            "school_id": events["school_id"],
            "date": events["date"],
            "_event": np.arange(len(events), dtype=np.int64),
        }
    )
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.register("events", keyed)
        con.register("spans", spans)
        found = con.execute(
            """
            SELECT e._event
            FROM events e
            WHERE NOT EXISTS (
                SELECT 1 FROM spans s
                WHERE s.pupil_id = e.pupil_id AND s.school_id = e.school_id
                  AND e.date >= s.start_date
                  AND (s.end_date IS NULL OR e.date <= s.end_date)
            )
            """
        ).fetchnumpy()["_event"]
    outside = np.zeros(len(events), dtype=bool)
    outside[found] = True
    return outside


_SPAN_TABLES = ("study_rights", "study_right_states")
"""Tables whose problems make the study rights' spans unreliable, so that the
marks and grades are not compared with them."""


def _check_within_study_rights(
    tables: dict[str, pd.DataFrame],
    checkers: dict[str, _Checker],
    reported: dict[tuple[str, str], np.ndarray],
) -> None:
    """Report marks and grades outside every study right of the pupil at the school.

    Each event then has an enrolment to belong to when the records are mapped.
    Events whose date, pupil or school is already reported, here or in
    ``reported``, are skipped.
    """
    if any(name not in tables or checkers[name].problems for name in _SPAN_TABLES):
        return
    if "pupils" not in tables or "schools" not in tables:
        return
    spans = _study_right_spans(tables)
    for name, column, kind in (
        ("attendance_marks", "lesson_start", "mark"),
        ("grades", "date", "grade"),
    ):
        if name not in tables:
            continue
        table = tables[name]
        # The marks' ids stay categories: DuckDB compares them with text.
        events = pd.DataFrame(
            {
                "pupil_id": table["pupil_id"],
                "school_id": table["school_id"],
                "date": table[column].dt.normalize(),
            }
        )
        known = (
            events["date"].notna()
            & events["pupil_id"].isin(tables["pupils"]["pupil_id"])
            & events["school_id"].isin(tables["schools"]["school_id"])
        ).to_numpy()
        if (name, column) in reported:
            known = known & ~reported[(name, column)]
        outside = np.flatnonzero(_outside_study_rights(events, spans) & known)
        details = []
        for position in outside:
            row = table.iloc[position]
            subject = row["subject"]
            subject_text = "" if pd.isna(subject) else f" in subject {subject!r}"
            details.append(
                f"The {kind} of pupil {row['pupil_id']!r} at school "
                f"{row['school_id']!r} on {row[column]:%d.%m.%Y}{subject_text} is "
                f"outside them: correct the school or date of the {kind}, or the "
                "study right's dates in study_rights and study_right_states"
            )
        checkers[name].add(
            column,
            outside,
            checkers[name].written(column, table[column]),
            "a date within one of the pupil's study rights at this school",
            details,
        )


MAX_DAYS_AFTER_ACTIVITY = 366
"""Event dates may lie at most this many days after the export's last
attendance mark or grade (the day of the load when it has neither). The last recorded date ends every label window, so
one mistyped year such as 2099 would otherwise make the data seem to run for
decades, with pupils active and labelled in years that have not happened."""

_EVENT_DATES = (
    ("study_rights", "start_date"),
    ("study_right_states", "state_from"),
    ("support_decisions", "start_date"),
    ("behaviour_notes", "date"),
    ("grade_levels", "start_date"),
)


def load_day() -> pd.Timestamp:
    """Return today's date in Helsinki, without a time zone: the day of the load."""
    return pd.Timestamp.now(tz=TIME_ZONE).tz_localize(None).normalize()


def _check_after_activity(
    tables: dict[str, pd.DataFrame], checkers: dict[str, _Checker], today: pd.Timestamp
) -> dict[tuple[str, str], np.ndarray]:
    """Report event dates far after the last attendance mark or grade.

    Without marks or grades the limit counts from the day of the load. Returns,
    per table and column checked, which rows were reported.
    """
    ends = [
        tables[name][column].max()
        for name, column in (("attendance_marks", "lesson_start"), ("grades", "date"))
        if name in tables and len(tables[name])
    ]
    ends = [end for end in ends if pd.notna(end)]
    if ends:
        last = max(ends).normalize()
        since = f"the export's last attendance mark or grade ({last:%d.%m.%Y})"
    else:
        # Without marks or grades, the day of the load bounds the dates.
        last = today
        since = (
            f"the day of the load ({last:%d.%m.%Y}), because the export has no "
            "attendance marks or grades"
        )
    limit = last + pd.Timedelta(days=MAX_DAYS_AFTER_ACTIVITY)
    reported = {}
    for name, column in _EVENT_DATES:
        if name not in tables:
            continue
        late = (tables[name][column] > limit).fillna(False).to_numpy()
        if (name, column) in _HAPPENED_DATES and today <= limit:
            # The day of the load is the tighter bound for these dates, so
            # _check_not_after_load reports them, with its hint, instead.
            late = np.zeros_like(late)
        checkers[name].add(
            column,
            np.flatnonzero(late),
            checkers[name].written(column, tables[name][column]),
            f"a date on or before {limit:%d.%m.%Y}, at most {MAX_DAYS_AFTER_ACTIVITY} "
            f"days after {since}; correct the date",
        )
        reported[(name, column)] = late
    return reported


_HAPPENED_DATES = {
    ("attendance_marks", "lesson_start"): "correct the date of the lesson",
    ("attendance_marks", "recorded_at"): "correct the time the mark was entered",
    ("grades", "date"): "correct the date of the grade",
    ("behaviour_notes", "date"): "correct the date of the note",
    ("study_right_states", "state_from"): (
        "a state counts as having happened from its state_from, so add a "
        "planned state, such as a graduation, once it takes effect: correct the "
        "date, or leave the row out until then"
    ),
}
"""Dates of things that must have happened by the day of the load, and what to
do about one that lies after it. The last mark, grade or state ends the data,
so one mistyped year would make the data seem to run into the future, with
labels for days that have not come. Study-right starts, support decisions and
grade levels may be planned ahead, so they are held only to
:data:`MAX_DAYS_AFTER_ACTIVITY`."""


def _check_not_after_load(
    tables: dict[str, pd.DataFrame],
    checkers: dict[str, _Checker],
    today: pd.Timestamp,
    reported: dict[tuple[str, str], np.ndarray],
) -> dict[tuple[str, str], np.ndarray]:
    """Report dates of :data:`_HAPPENED_DATES` after ``today``.

    Rows in ``reported`` already have a problem for the same date and are
    skipped. Returns, per table and column checked, which rows were reported.
    """
    future_rows = {}
    for (name, column), action in _HAPPENED_DATES.items():
        if name not in tables:
            continue
        dates = tables[name][column]
        future = (dates.dt.normalize() > today).fillna(False).to_numpy()
        if (name, column) in reported:
            future = future & ~reported[(name, column)]
        positions = np.flatnonzero(future)
        written = checkers[name].written(column, dates)
        checkers[name].add(
            column,
            positions,
            written,
            f"a date on or before {today:%d.%m.%Y}, the day of the load; {action}",
            _helsinki_dates(written, dates, positions),
        )
        future_rows[(name, column)] = future
    return future_rows


def _helsinki_dates(
    written: pd.Series, dates: pd.Series, positions: np.ndarray
) -> list[str]:
    """Return, per position, the Helsinki date of a value written with a UTC offset.

    A value without an offset is Helsinki time already and gets an empty text.
    """
    details = []
    for position in positions:
        text = written.iloc[int(position)]
        if isinstance(text, str) and re.search(_OFFSET, text.strip()):
            day = dates.iloc[int(position)]
            details.append(f"{text.strip()} falls on {day:%d.%m.%Y} in Helsinki")
        else:
            details.append("")
    return details


EXPORT_MARK_CODES = "mark_codes.csv"
"""File name of the mark-code table that an export may bring."""


def _is_store(folder: Path) -> bool:
    """Return whether ``folder`` has the Parquet file of every table that
    :func:`write_records` stores, as a store of load-records has."""
    return all((folder / f"{name}.parquet").is_file() for name in TABLES)


def _unknown_code_expected(folder: Path, table: Path, example_codes: bool) -> str:
    """Return the expected text for a mark code missing from the mark-code table.

    The bundled example table is the product's file, so then the text names the
    export's own table to add instead of the example.
    """
    if example_codes:
        return (
            f"a code listed in the mark-code table, but the export has no "
            f"{EXPORT_MARK_CODES}, so only the bundled example codes apply; add "
            f"{folder / EXPORT_MARK_CODES} with the columns code;mark and a line "
            "for every local code (load-records also takes --mark-codes FILE)"
        )
    return f"a code listed in the mark-code table {table}; add the code there"


# NOTE: the whole export is read into pandas and checked in memory, about 160
# bytes per attendance mark at peak with the mapping and validation that follow
# (1.2 GB for 8 million marks, benchmarks/records_load.py). A city's export of
# 100 million marks would need about 16 GB: a streaming reader or checks in
# DuckDB would remove the limit.
def read_records(folder: Path, mark_codes: Path | None = None) -> SchoolRecords:
    """Read, validate and type every table of the export in ``folder``.

    Each table is ``<name>.csv`` (``;``-separated, UTF-8 with or without a BOM)
    or ``<name>.parquet``; ``behaviour_notes`` and ``grade_levels`` may be left
    out. Without ``mark_codes``, the mark-code table is the export's
    ``mark_codes.csv``, or the bundled example table with a warning when the
    export has none.

    Raises
    ------
    InputDataError
        Listing every problem in every table: missing files and columns,
        unparseable values, values outside their allowed set, unknown mark codes
        and grades, repeated keys, references to missing ids, dates after the
        day of the load and marks or grades outside every study right of the
        pupil at their school.
    """
    example_codes = mark_codes is None and not (folder / EXPORT_MARK_CODES).is_file()
    if mark_codes is None:
        mark_codes = DEFAULT_MARK_CODES if example_codes else folder / EXPORT_MARK_CODES
    codes = read_mark_codes(mark_codes)
    if example_codes and _is_store(folder):
        logger.warning(
            "%s has no %s but contains the Parquet files that load-records "
            "stores, so it is a store written before load-records kept the "
            "mark-code table, and the bundled example mark codes (%s) apply; "
            "load the export again with load-records to store its mark codes",
            folder,
            EXPORT_MARK_CODES,
            ", ".join(codes),
        )
    elif example_codes:
        logger.warning(
            "%s has no %s, so the bundled example mark codes (%s) apply, and those "
            "codes are assumed, not taken from your platform; add %s to the export "
            "with your platform's codes (columns code;mark)",
            folder,
            EXPORT_MARK_CODES,
            ", ".join(codes),
            EXPORT_MARK_CODES,
        )
    tables: dict[str, pd.DataFrame] = {}
    checkers: dict[str, _Checker] = {}
    for name, spec in TABLES.items():
        table, checker = _read_table(folder, spec)
        checkers[name] = checker
        if table is not None:
            tables[name] = table

    for table, column, target in (
        ("study_rights", "pupil_id", "pupils"),
        ("study_rights", "school_id", "schools"),
        ("study_right_states", "study_right_id", "study_rights"),
        ("attendance_marks", "pupil_id", "pupils"),
        ("attendance_marks", "school_id", "schools"),
        ("grades", "pupil_id", "pupils"),
        ("grades", "school_id", "schools"),
        ("support_decisions", "pupil_id", "pupils"),
        ("behaviour_notes", "pupil_id", "pupils"),
        ("grade_levels", "study_right_id", "study_rights"),
    ):
        _check_reference(tables, checkers, table, column, target)

    if "attendance_marks" in tables:
        marks = tables["attendance_marks"]
        unknown = ~marks["mark_code"].isin(codes) & marks["mark_code"].notna()
        checkers["attendance_marks"].add(
            "mark_code",
            np.flatnonzero(unknown.to_numpy()),
            marks["mark_code"],
            _unknown_code_expected(folder, mark_codes, example_codes),
        )
        marks["date"] = marks["lesson_start"].dt.normalize()
        marks["mark"] = _contract_marks(marks["mark_code"], codes)

    if "grades" in tables:
        grades = tables["grades"]
        parsed = [
            parse_grade(t) if isinstance(t, str) else None for t in grades["grade"]
        ]
        missing = np.array([p is None for p in parsed], dtype=bool)
        bad = missing & grades["grade"].notna().to_numpy()
        positions = np.flatnonzero(bad)
        checkers["grades"].add(
            "grade",
            positions,
            grades["grade"],
            GRADE_EXPECTED,
            [off_scale_detail(grades["grade"].iloc[p]) for p in positions],
        )
        grades["value"] = pd.array(
            [p.value if p else None for p in parsed], dtype="Float64"
        )
        grades["passed"] = pd.array(
            [p.passed if p else None for p in parsed], dtype="boolean"
        )

    if "support_decisions" in tables:
        _check_support_ends(tables["support_decisions"], checkers["support_decisions"])

    if "study_right_states" in tables and "study_rights" in tables:
        _check_states_after_start(tables, checkers)

    today = load_day()
    reported = _check_after_activity(tables, checkers, today)
    future = _check_not_after_load(tables, checkers, today, reported)
    _check_within_study_rights(tables, checkers, future)

    problems = [p for checker in checkers.values() for p in checker.problems]
    if problems:
        logger.info("export in %s has %d problems", folder, len(problems))
        raise InputDataError(problems)

    counts = {name: len(table) for name, table in tables.items()}
    tables["attendance_marks"], dropped = _resolve_duplicate_marks(
        tables["attendance_marks"]
    )
    counts["duplicate_marks_dropped"] = dropped
    for name in EXACT_DUPLICATES_DROPPED:
        if name in tables:
            tables[name], dropped = _drop_exact_duplicates(tables[name])
        else:
            dropped = 0
        counts[f"duplicate_{name}_dropped"] = dropped
    counts["blank_rows_skipped"] = sum(c.blank_rows for c in checkers.values())
    # Marks are most of an export, and their text columns repeat a few values
    # (pupils, schools, lessons, codes), so categories hold them in a fraction
    # of the memory.
    marks = tables["attendance_marks"]
    for column in MARK_CATEGORY_COLUMNS:
        marks[column] = marks[column].astype("category")
    absent = tuple(
        name for name, spec in TABLES.items() if spec.optional and name not in tables
    )
    for name in absent:
        tables[name] = empty_export_table(name)
    logger.info("read export from %s: %s", folder, counts)
    return SchoolRecords(
        **tables, mark_codes=codes, counts=counts, absent_tables=absent
    )


REFERENCED_TABLES = ("pupils", "schools", "study_rights")
"""Tables that other tables refer to, so an export cannot do without their rows.
Other tables, such as support decisions, may have only a header line."""

STORED_FILES = frozenset(f"{name}.parquet" for name in TABLES) | {EXPORT_MARK_CODES}
"""The files that :func:`write_records` writes."""


def check_replaceable(
    out_dir: Path, expected: set[str] | frozenset[str], writer: str
) -> None:
    """Raise ``ValueError`` unless ``writer`` may replace the folder ``out_dir``.

    The folder may be replaced when it does not exist, is empty or contains
    only files named in ``expected`` (an earlier output), so a mistyped path
    never deletes other files.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(
            f"{out_dir} is a file; {writer} writes a folder. Choose a folder path."
        )
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in expected)
    if others:
        listed = ", ".join(others[:5])
        if len(others) > 5:
            listed += f" and {len(others) - 5} more"
        raise ValueError(
            f"{out_dir} already contains {listed}, which {writer} did not write "
            "and which replacing the folder would delete. Choose a new or empty "
            "folder, or move those files away first."
        )


def emptied_tables(records: SchoolRecords, out_dir: Path) -> dict[str, int]:
    """Return the tables that storing ``records`` in ``out_dir`` would empty.

    A table counts when ``records`` has none of its rows and the earlier load
    in ``out_dir`` has some. The result maps each such table to its stored row
    count, read from the Parquet footer.
    """
    import pyarrow.parquet as pq

    emptied = {}
    for name in TABLES:
        stored = out_dir / f"{name}.parquet"
        if len(getattr(records, name)) or not stored.is_file():
            continue
        rows = pq.ParquetFile(stored).metadata.num_rows
        if rows:
            emptied[name] = rows
    return emptied


def _write_mark_codes(codes: dict[str, str], path: Path) -> None:
    """Write a mark-code table that :func:`read_mark_codes` reads back as ``codes``."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(
            "# The mark-code table of this load: reading this folder maps the "
            "codes as the load did.\n"
        )
        writer = csv.writer(handle, delimiter=CSV_OPTIONS["sep"], lineterminator="\n")
        writer.writerow(["code", "mark"])
        writer.writerows(codes.items())


def write_records(records: SchoolRecords, out_dir: Path) -> None:
    """Store ``records`` as one Parquet file per table in ``out_dir``.

    Optional tables in ``records.absent_tables`` get no file.

    ``out_dir`` also gets the mark-code table of the records as
    ``mark_codes.csv``, so that :func:`read_records` of ``out_dir`` maps each
    stored ``mark_code`` to the same mark as the load did. The files are
    written to a new sibling folder that then replaces ``out_dir``, so readers
    see either the old or the new load, and loading the same export twice
    gives the same files.

    Raises
    ------
    ValueError
        If ``out_dir`` is a file or contains files other than the tables.
    """
    out_dir = out_dir.resolve()
    check_replaceable(out_dir, STORED_FILES, "load-records --store")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        for name in TABLES:
            # An optional table that the export left out stays out of the
            # store, so that reading the store finds it absent too, as
            # scoring must (it refuses features fed by an absent table).
            if name in records.absent_tables:
                continue
            getattr(records, name).to_parquet(staging / f"{name}.parquet", index=False)
        _write_mark_codes(records.mark_codes, staging / EXPORT_MARK_CODES)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
