"""Map any one-row-per-pupil table into the input contract, as its mapping file describes.

The table is read as text, so that a value that does not parse is reported with
its file, column, row and text. The mapping (see :mod:`sources.table_mapping`)
names the id, group, period, outcome and sensitive columns; every other column
that the mapping does not exclude becomes a feature, numeric when every value is
a number and categorical otherwise, unless the mapping says which.

Like the UCI dropout loader, each row becomes one snapshot:

- one unit per group (and per period, when the table has a period column),
  starting on the period's start date, or on ``SNAPSHOT_START`` without a
  period, and lasting ``UNIT_LENGTH``.
- one enrolment per row, starting with its unit.
- every feature column becomes an attribute known from the unit's start.
- the pipeline scores each enrolment ``SNAPSHOT_OFFSET_DAYS`` after its unit's
  start. A row with the adverse outcome ends as ``withdrawn`` one day after
  that, so it is labelled 1; any other row stays open and is labelled 0. The
  contract calls the outcome a withdrawal whatever the table means by it (a
  failed course, for example).
- there are no assessment or attendance events.
"""

from __future__ import annotations

import json
import logging
import operator
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from sources.contract import ID_EXPECTED, ID_PATTERN, InputTables, empty_table
from sources.csvread import locate_decode_error
from sources.errors import InputDataError, Problem
from sources.identifiers import identifier_reason
from sources.table_mapping import (
    SensitiveSpec,
    TableMapping,
    data_path,
    load_mapping,
    snake_case,
)

logger = logging.getLogger(__name__)

SNAPSHOT_START = pd.Timestamp("2000-01-01")
"""Placeholder start of every unit when the table has no period column, and of
the first period of ``ordinal`` periods other than school years. It carries
no meaning, so dates shown for such units are not calendar dates."""

SNAPSHOT_OFFSET_DAYS = 1
"""As-of offset, in days after each unit's start, at which every row is scored."""

UNIT_LENGTH = pd.DateOffset(years=1)

MAX_PROBLEMS_PER_COLUMN = 20

INFINITE_EXPECTED = (
    "a finite number; replace the infinite or out-of-range value with a real "
    "one, or leave the cell empty if it is not known"
)

Role = Literal[
    "id", "group", "period", "outcome", "sensitive", "excluded", "feature", "derived"
]
"""The purpose of a column; ``derived`` marks a feature computed from two others."""
Kind = Literal["numeric", "categorical"]

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class ColumnInfo:
    """A column of the table with its role and inferred type."""

    column: str
    role: Role
    kind: Kind
    missing_share: float
    distinct: int
    feature_name: str | None = None
    """Attribute name (``attr_`` is prepended in the feature frame) of a feature."""


@dataclass
class MappedTable:
    """A table read and checked against its mapping, before the contract mapping."""

    mapping: TableMapping
    mapping_path: Path
    path: Path
    columns: list[ColumnInfo]
    adverse: np.ndarray
    """True for rows with the adverse outcome."""
    learner_id: pd.Series
    unit_group: pd.Series
    """Group of each row (``all`` without a group column)."""
    period_start: pd.Series | None
    """Start date of each row's period, or None without a period column."""
    period_label: pd.Series | None
    features: pd.DataFrame
    """Feature columns under their attribute names: float or text."""
    sensitive: pd.DataFrame
    """Sensitive attributes under their audit names, as text, missing as NA."""

    @property
    def rows(self) -> int:
        return len(self.adverse)

    @property
    def validation(self) -> Literal["temporal", "stratified"]:
        return "stratified" if self.period_start is None else "temporal"

    def temporal_cutoff(self) -> str | None:
        """Return the ISO start date of the earliest test period, or None."""
        if self.period_start is None or self.mapping.period is None:
            return None
        starts = sorted(self.period_start.unique())
        return (
            pd.Timestamp(starts[-self.mapping.period.test_periods]).date().isoformat()
        )


class _Reader:
    """Row numbering and problem collection for one data file."""

    def __init__(self, mapping: TableMapping, path: Path) -> None:
        self.mapping = mapping
        self.path = path
        # CSV and Excel rows are numbered as in the file, where the header is
        # row 1. Parquet has no header row, so its data rows count from 1.
        self.first_row = 1 if mapping.file.resolved_format() == "parquet" else 2
        self.problems: list[Problem] = []

    def problem(
        self, column: str, position: int | None, value: object, expected: str
    ) -> None:
        row = None if position is None else position + self.first_row
        self.problems.append(
            Problem(str(self.path), self.mapping.name, column, row, value, expected)
        )

    def bad_values(
        self, column: str, text: pd.Series, bad: pd.Series, expected: str
    ) -> None:
        positions = np.flatnonzero(bad.to_numpy())
        for position in positions[:MAX_PROBLEMS_PER_COLUMN]:
            value = text.iloc[position]
            self.problem(
                column, int(position), "" if pd.isna(value) else value, expected
            )
        if len(positions) > MAX_PROBLEMS_PER_COLUMN:
            more = len(positions) - MAX_PROBLEMS_PER_COLUMN
            self.problems.append(
                Problem(
                    str(self.path),
                    self.mapping.name,
                    "*",
                    None,
                    None,
                    f"column {column!r}: {more} more row(s) are invalid in the same "
                    f"way ({len(positions)} in all); expected {expected}",
                )
            )

    def numbers(self, column: str, text: pd.Series, expected: str) -> pd.Series:
        """Parse ``text`` as finite numbers; report the values that are not."""
        numbers, bad, infinite = _parse_numbers(text, self.mapping.file.decimal)
        self.bad_values(column, text, bad, expected)
        self.bad_values(column, text, infinite, INFINITE_EXPECTED)
        return numbers

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputDataError(self.problems)


def read_mapped_table(mapping_path: Path) -> MappedTable:
    """Read the table that the mapping file at ``mapping_path`` describes.

    Raises
    ------
    MappingError
        If the mapping file is missing or invalid.
    InputDataError
        If the data file or a named column is missing, or a column looks like
        a direct identifier and is not excluded. Also if a value does not
        parse, a sensitive value is not a declared category, ids repeat, or
        the outcome has a single class.
    """
    mapping = load_mapping(mapping_path)
    path = data_path(mapping_path, mapping)
    reader = _Reader(mapping, path)
    logger.info("reading table %s from %s", mapping.name, path)
    raw = _read_text(mapping, path, reader)
    if raw.empty:
        reader.problem(
            "*",
            None,
            None,
            f"the file has no data rows, only the columns {list(raw.columns)}; "
            "export the table with its rows",
        )
    _check_named_columns(mapping, raw, reader)
    _check_identifiers(mapping, raw, reader)
    reader.raise_if_any()

    roles = _roles(mapping, list(raw.columns))
    adverse = _outcome(mapping, raw, reader)
    period_start, period_label = _periods(mapping, raw, reader)
    sensitive = _sensitive(mapping, raw, reader)
    features, infos = _features(mapping, raw, roles, reader)
    features, infos = _with_derived(mapping, features, infos, reader)
    learner_id, unit_group = _keys(mapping, raw, reader)
    reader.raise_if_any()

    _check_both_classes(mapping, adverse, reader)
    _check_duplicates(learner_id, unit_group, period_label, reader)
    reader.raise_if_any()
    logger.info(
        "read %d rows and %d feature columns; %d rows adverse",
        len(raw),
        features.shape[1],
        int(adverse.sum()),
    )
    return MappedTable(
        mapping=mapping,
        mapping_path=mapping_path,
        path=path,
        columns=infos,
        adverse=adverse,
        learner_id=learner_id,
        unit_group=unit_group,
        period_start=period_start,
        period_label=period_label,
        features=features,
        sensitive=sensitive,
    )


def load_table(mapping_path: Path) -> InputTables:
    """Read the table described by ``mapping_path`` and map it into the contract.

    ``learner_id`` is the id column's value, or ``row-<n>`` for the 1-based data
    row ``n`` without one. ``unit_id`` is ``unit-<group>``, followed by
    ``@<period>`` with a period column. Warnings that ``ajoissa inspect`` prints
    are logged.
    """
    from sources.table_inspect import inspect_mapped_table

    table = read_mapped_table(mapping_path)
    for warning in inspect_mapped_table(table).warnings:
        logger.warning("%s: %s", table.mapping.name, warning)
    return to_input_tables(table)


def to_input_tables(table: MappedTable) -> InputTables:
    """Map a read table into the contract tables."""
    if table.period_start is None:
        start = pd.Series(SNAPSHOT_START, index=table.unit_group.index)
        unit_id = "unit-" + table.unit_group
        cohort = pd.Series("snapshot", index=table.unit_group.index, dtype="str")
    else:
        start = table.period_start
        unit_id = "unit-" + table.unit_group + "@" + table.period_label
        cohort = table.period_label
    enrolment_id = unit_id + "-" + table.learner_id

    units = (
        pd.DataFrame({"unit_id": unit_id, "cohort": cohort, "start_date": start})
        .drop_duplicates("unit_id")
        .sort_values(["start_date", "unit_id"])
        .reset_index(drop=True)
    )
    units["end_date"] = units["start_date"] + UNIT_LENGTH

    withdrawal = start + pd.Timedelta(days=SNAPSHOT_OFFSET_DAYS + 1)
    adverse = pd.Series(table.adverse, index=start.index)
    enrolments = pd.DataFrame(
        {
            "enrolment_id": enrolment_id,
            "learner_id": table.learner_id,
            "unit_id": unit_id,
            "start_date": start,
            "end_date": withdrawal.where(adverse),
            "end_reason": pd.Series(
                np.where(adverse, "withdrawn", None), index=start.index, dtype="str"
            ),
        }
    )

    # A learner with rows in several periods keeps the sensitive attributes of
    # the latest row.
    order = np.lexsort((np.arange(len(start)), start.to_numpy()))
    latest = (
        pd.concat([table.learner_id.rename("learner_id"), table.sensitive], axis=1)
        .iloc[order]
        .drop_duplicates("learner_id", keep="last")
        .sort_index()
        .reset_index(drop=True)
    )

    attributes = pd.concat(
        [
            pd.DataFrame({"enrolment_id": enrolment_id, "known_from": start}),
            table.features,
        ],
        axis=1,
    )
    logger.info(
        "mapped %d enrolments of %d learners in %d units",
        len(enrolments),
        len(latest),
        len(units),
    )
    return InputTables(
        learners=latest,
        units=units,
        enrolments=enrolments,
        attributes=attributes,
        assessments=empty_table("assessments"),
        origin=str(table.path),
        sensitive=tuple(table.sensitive.columns),
    )


# Reading


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    """Read one sheet of an .xlsx or .xlsm workbook as text.

    Raises ``ValueError`` when the file is not such a workbook. With openpyxl
    3.1, reading raises ``BadZipFile`` for a file that is not a ZIP archive,
    such as a CSV or an old .xls file, and ``KeyError`` for a ZIP archive
    without a workbook in it.
    """
    try:
        return pd.read_excel(
            path,
            sheet_name=sheet if sheet is not None else 0,
            dtype=str,
            keep_default_na=False,
            engine="openpyxl",
        )
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"not an .xlsx or .xlsm workbook: {exc}") from exc


def _read_text(mapping: TableMapping, path: Path, reader: _Reader) -> pd.DataFrame:
    """Read every cell as stripped text, with the mapping's missing texts as NA."""
    if not path.is_file():
        reader.problem(
            "*", None, None, "file not found; check 'file.path' in the mapping"
        )
        reader.raise_if_any()
    spec = mapping.file
    file_format = spec.resolved_format()
    encoding = (
        "utf-8-sig" if spec.encoding.lower() in ("utf-8", "utf8") else spec.encoding
    )
    try:
        if file_format == "csv":
            raw = pd.read_csv(
                path,
                sep=spec.separator,
                dtype=str,
                keep_default_na=False,
                encoding=encoding,
                encoding_errors="strict",
            )
        elif file_format == "excel":
            raw = _read_excel(path, spec.sheet)
        else:
            raw = pd.read_parquet(path)
            raw = raw.astype(object).where(raw.notna(), "").astype(str)
    except UnicodeDecodeError:
        line, where = locate_decode_error(path, encoding, spec.separator)
        reader.problems.append(
            Problem(
                str(path),
                mapping.name,
                "*",
                line,
                None,
                f"the file is not valid {spec.encoding!r} text: {where}; save it as "
                "CSV UTF-8, or set 'file.encoding' in the mapping to the file's "
                "encoding, for example latin-1",
            )
        )
    except LookupError as exc:
        reader.problem(
            "*",
            None,
            None,
            f"the encoding {spec.encoding!r} is unknown ({exc}); set "
            "'file.encoding' in the mapping, for example to utf-8 or latin-1",
        )
    except (ValueError, OSError) as exc:
        # pandas raises ParserError (a ValueError) for a row with too many
        # fields and ValueError for a missing Excel sheet. _read_excel raises
        # ValueError for a file that is not a workbook.
        reader.problem(
            "*",
            None,
            None,
            f"the file could not be read as {file_format} ({exc}); check "
            "'file.format', 'file.separator' and 'file.sheet' in the mapping",
        )
    reader.raise_if_any()

    raw.columns = [str(c).strip() for c in raw.columns]
    text = raw.apply(lambda column: column.astype(str).str.strip())
    missing = text.isin(spec.missing_values)
    return text.where(~missing, None)


def _named_columns(mapping: TableMapping) -> list[tuple[str, str]]:
    """Return (key, column) for every column the mapping names."""
    named = [
        ("id_column", mapping.id_column),
        ("group_column", mapping.group_column),
        ("period.column", mapping.period.column if mapping.period else None),
        ("outcome", mapping.outcome.source_column),
    ]
    named += [
        (f"sensitive[{i}].column", s.column) for i, s in enumerate(mapping.sensitive)
    ]
    for key in ("exclude", "categorical", "numeric"):
        named += [(key, column) for column in getattr(mapping, key)]
    return [(key, column) for key, column in named if column is not None]


SEPARATORS = (",", ";", "\t", "|")
"""Field separators that CSV exports commonly use, for the wrong-separator hint."""


def _check_named_columns(
    mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> None:
    header_row = -1 if reader.first_row == 2 else None
    if mapping.file.resolved_format() == "csv" and len(raw.columns) == 1:
        header = str(raw.columns[0])
        counts = {sep: header.count(sep) for sep in SEPARATORS}
        guess = max(counts, key=lambda sep: counts[sep])
        if counts[guess] > 0:
            reader.problem(
                "*",
                header_row,
                None,
                f"the header is one column {header!r}, so the file seems to use "
                f"{guess!r} as its separator, not {mapping.file.separator!r}; set "
                f"'separator: {json.dumps(guess)}' under 'file' in the mapping",
            )
            return
    for key, column in _named_columns(mapping):
        if column not in raw.columns:
            reader.problem(
                "*",
                -1 if reader.first_row == 2 else None,
                None,
                f"the header lacks the column {column!r}, which the mapping key "
                f"{key!r} names; the file has the columns {list(raw.columns)}",
            )


def _check_identifiers(
    mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> None:
    """Reject columns that look like direct identifiers and are not excluded.

    The values are not echoed in the message, because they are personal data.
    """
    for column in raw.columns:
        if column in mapping.exclude:
            continue
        reason = identifier_reason(column, raw[column].dropna())
        if reason is None:
            continue
        if column == mapping.id_column:
            advice = "replace the ids with pseudonymous ones before loading"
        else:
            advice = "add the column to 'exclude' in the mapping"
        reader.problem(
            column,
            None,
            "<not shown>",
            f"no direct identifiers, but {reason}; {advice}",
        )


def _roles(mapping: TableMapping, columns: list[str]) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for column in columns:
        if column == mapping.id_column:
            roles[column] = "id"
        elif mapping.period is not None and column == mapping.period.column:
            roles[column] = "period"
        elif column == mapping.outcome.source_column:
            roles[column] = "outcome"
        elif column in mapping.sensitive_columns:
            roles[column] = "sensitive"
        elif column in mapping.exclude:
            roles[column] = "excluded"
        elif column == mapping.group_column:
            roles[column] = "group"
        else:
            roles[column] = "feature"
    return roles


def _to_float(text: pd.Series, decimal: str) -> pd.Series:
    """Return ``text`` as floats; NaN where a value does not parse."""
    candidate = text.str.replace(",", ".", regex=False) if decimal == "," else text
    return pd.to_numeric(candidate, errors="coerce").astype(float)


def _parse_numbers(
    text: pd.Series, decimal: str
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Return the finite numbers in ``text`` and two masks of present values.

    The first mask marks values that do not parse, the second values that parse
    to an infinite number (``inf``, ``-Infinity``, or ``1e400``, which overflows
    a float). Both kinds are NaN in the returned numbers.
    """
    numbers = _to_float(text, decimal)
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=text.index)
    return numbers.where(~infinite), numbers.isna() & text.notna(), infinite


def _outcome(mapping: TableMapping, raw: pd.DataFrame, reader: _Reader) -> np.ndarray:
    spec = mapping.outcome
    column = spec.source_column
    text = raw[column]
    reader.bad_values(
        column,
        text,
        text.isna(),
        "an outcome value; remove rows whose outcome is not known yet",
    )
    if spec.rule is None:
        adverse = [str(value) for value in spec.adverse_values or []]
        # A value that differs from an adverse value only in case or spaces
        # (Kyllä for kyllä) is almost always a typo, and it would silently
        # count as not adverse.
        # Parquet keeps numbers as numbers, and the mapping lists text.
        as_text = text.astype(str)
        exact = text.notna() & as_text.isin(adverse)
        folded = {value.strip().casefold() for value in adverse}
        near = text.notna() & ~exact
        near &= as_text.str.strip().str.casefold().isin(folded)
        reader.bad_values(
            column,
            text,
            near,
            f"exactly one of the adverse values {adverse} or another value; "
            "fix the spelling in the file or list it in outcome.adverse_values",
        )
        return exact.to_numpy()
    _, symbol, threshold = spec.parsed_rule()
    numbers = reader.numbers(
        column, text, f"a number, because the outcome rule is {spec.rule!r}"
    )
    return _OPERATORS[symbol](numbers, threshold).fillna(False).to_numpy(dtype=bool)


def _check_both_classes(
    mapping: TableMapping, adverse: np.ndarray, reader: _Reader
) -> None:
    if adverse.all() or not adverse.any():
        value = "adverse" if adverse.all() else "not adverse"
        reader.problem(
            "*",
            None,
            None,
            f"column {mapping.outcome.source_column!r}: every row is {value}, but "
            f"training needs both outcome classes; the outcome is "
            f"{mapping.outcome.describe()}, so check the adverse values or the rule",
        )


def _periods(
    mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> tuple[pd.Series | None, pd.Series | None]:
    spec = mapping.period
    if spec is None:
        return None, None
    text = raw[spec.column]
    reader.bad_values(spec.column, text, text.isna(), "a period value in every row")
    if spec.kind == "date":
        starts = pd.to_datetime(
            text, format=spec.date_format or "ISO8601", errors="coerce"
        ).dt.normalize()
        expected = f"a date in the format {spec.date_format or 'YYYY-MM-DD'}"
        reader.bad_values(spec.column, text, starts.isna() & text.notna(), expected)
        labels = starts.dt.strftime("%Y-%m-%d")
    elif spec.kind == "year":
        years, unparsed, infinite = _parse_numbers(text, mapping.file.decimal)
        bad = (
            unparsed
            | infinite
            | (years.notna() & ((years % 1 != 0) | (years < 1900) | (years > 2200)))
        )
        reader.bad_values(spec.column, text, bad, "a whole year between 1900 and 2200")
        valid = years.where(~bad)
        starts = pd.to_datetime(
            valid.astype("Int64").astype(str).where(valid.notna(), None), format="%Y"
        )
        labels = valid.astype("Int64").astype(str)
    else:
        starts = _school_year_starts(text)
        if starts is None:
            order = _ordinal_order(text.dropna().unique())
            offsets = text.map({label: i for i, label in enumerate(order)})
            starts = pd.Series(
                [
                    SNAPSHOT_START + pd.DateOffset(years=int(i))
                    if pd.notna(i)
                    else pd.NaT
                    for i in offsets
                ],
                index=text.index,
                dtype="datetime64[ns]",
            )
        labels = text
    starts = starts.astype("datetime64[ns]")
    if reader.problems:
        return starts, labels.astype(str)
    distinct = starts.nunique()
    if distinct <= spec.test_periods:
        reader.problem(
            "*",
            None,
            None,
            f"column {spec.column!r} has {distinct} distinct period(s), but needs "
            f"more than period.test_periods = {spec.test_periods}, so that earlier "
            "periods can train the model; or remove 'period' to use "
            "cross-validation",
        )
    return starts, labels.astype(str)


_SCHOOL_YEAR = re.compile(r"\s*(\d{4})\s*[/\-\u2013]\s*(\d{2}|\d{4})\s*")
"""A school-year label such as ``2023/24``, ``2023-2024`` or ``2023–24``."""


def _school_year_starts(text: pd.Series) -> pd.Series | None:
    """Return 1 August of each school-year label's first year, or None.

    Finnish school years run from 1 August to 31 July, so ``2023/24`` starts
    on 2023-08-01 and staff see real dates. Unless every label is a school
    year whose second year follows its first, the labels are only ordered.
    """
    first_years = {}
    for label in text.dropna().unique():
        match = _SCHOOL_YEAR.fullmatch(str(label))
        if match is None:
            return None
        first, second = int(match[1]), int(match[2])
        following = first + 1 if len(match[2]) == 4 else (first + 1) % 100
        if second != following:
            return None
        first_years[label] = first
    if not first_years:
        return None
    years = text.map(first_years)
    return pd.to_datetime(
        {"year": years, "month": 8, "day": 1}, errors="coerce"
    ).astype("datetime64[ns]")


def _ordinal_order(labels: Iterable[str]) -> list[str]:
    labels = list(labels)
    numbers = pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce")
    if numbers.notna().all():
        return [label for _, label in sorted(zip(numbers, labels, strict=True))]
    return sorted(labels)


def _sensitive(
    mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> pd.DataFrame:
    columns = {
        spec.audit_name: _sensitive_groups(spec, mapping, raw, reader)
        for spec in mapping.sensitive
    }
    return pd.DataFrame(columns, index=raw.index)


def _sensitive_groups(
    spec: SensitiveSpec, mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> pd.Series:
    text = raw[spec.column]
    if spec.bins is not None:
        numbers = reader.numbers(
            spec.column, text, "a number, because the mapping gives bins"
        )
        bands = pd.cut(
            numbers, bins=spec.bins.edges, labels=spec.bins.labels, right=True
        )
        outside = bands.isna() & numbers.notna()
        reader.bad_values(
            spec.column,
            text,
            outside,
            f"a number within the bin edges {spec.bins.edges}",
        )
        return bands.astype(object).where(bands.notna(), None).astype("str")
    if spec.categories is None:
        return text.astype("str")
    allowed = (
        spec.categories
        if isinstance(spec.categories, dict)
        else {c: c for c in spec.categories}
    )
    unknown = text.notna() & ~text.isin(list(allowed))
    reader.bad_values(
        spec.column,
        text,
        unknown,
        "one of the categories "
        + ", ".join(repr(c) for c in allowed)
        + " in the mapping",
    )
    return text.map(allowed).astype("str")


def _features(
    mapping: TableMapping, raw: pd.DataFrame, roles: dict[str, Role], reader: _Reader
) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """Type the feature columns; return them under their attribute names, and every
    column's description.

    Categorical columns come first, then numeric ones, each in file order. The
    order matters beyond display: LightGBM breaks ties between equally good
    splits by column position.
    """
    infos: list[ColumnInfo] = []
    typed: dict[str, tuple[Kind, pd.Series]] = {}
    sensitive_names = {spec.audit_name for spec in mapping.sensitive}
    used_names: dict[str, str] = {}
    for column in raw.columns:
        text = raw[column]
        kind = _kind(mapping, column, text)
        role = roles[column]
        if role == "feature" and kind == "categorical":
            _check_decimal_comma(mapping, column, text, reader)
        name = None
        if role in ("feature", "group"):
            name = snake_case(column)
            clash = used_names.get(name) or (name if name in sensitive_names else None)
            if not name or clash:
                reader.problem(
                    column,
                    None,
                    None,
                    f"a header that gives a unique feature name, but {column!r} "
                    f"becomes {name!r} like {clash!r}; rename the column or exclude it",
                )
                continue
            used_names[name] = column
            if kind == "numeric":
                numbers = reader.numbers(
                    column,
                    text,
                    "a number, because the mapping lists the column under 'numeric'",
                )
                typed[name] = (kind, numbers)
            else:
                typed[name] = (kind, text.astype("str"))
        infos.append(
            ColumnInfo(
                column=column,
                role=role,
                kind=kind,
                missing_share=float(text.isna().mean()) if len(text) else 0.0,
                distinct=int(text.nunique()),
                feature_name=name,
            )
        )
    ordered = [n for n, (k, _) in typed.items() if k == "categorical"] + [
        n for n, (k, _) in typed.items() if k == "numeric"
    ]
    features = pd.DataFrame({n: typed[n][1] for n in ordered}, index=raw.index)
    return features, infos


def _with_derived(
    mapping: TableMapping,
    features: pd.DataFrame,
    infos: list[ColumnInfo],
    reader: _Reader,
) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """Append the mapping's ``derived`` features to ``features`` and ``infos``."""
    infos = list(infos)
    columns = dict(features.items())
    numeric = {
        name
        for name, values in columns.items()
        if pd.api.types.is_numeric_dtype(values.dtype)
    }
    for spec in mapping.derived:
        name = snake_case(spec.name)
        operands = []
        for operand in spec.operands:
            key = snake_case(operand)
            if key not in numeric:
                reader.problem(
                    operand,
                    None,
                    None,
                    f"a numeric feature column or an earlier derived feature, "
                    f"because the derived feature {spec.name!r} uses it",
                )
                break
            operands.append(columns[key].astype(float))
        if len(operands) < 2:
            continue
        if name in columns:
            reader.problem(
                spec.name,
                None,
                None,
                f"a derived feature name unlike any feature, but it becomes "
                f"{name!r}; rename it",
            )
            continue
        first, second = operands
        if spec.ratio is not None:
            values = first / second.where(second != 0)
        else:
            values = first - second
        columns[name] = values
        numeric.add(name)
        infos.append(
            ColumnInfo(
                column=spec.name,
                role="derived",
                kind="numeric",
                missing_share=float(values.isna().mean()) if len(values) else 0.0,
                distinct=int(values.nunique()),
                feature_name=name,
            )
        )
    return pd.DataFrame(columns, index=features.index), infos


def _check_decimal_comma(
    mapping: TableMapping, column: str, text: pd.Series, reader: _Reader
) -> None:
    """Report a column of numbers written with decimal commas under decimal '.'.

    Such a column would otherwise become categories, one per distinct number.
    """
    if mapping.file.decimal != "." or column in mapping.categorical:
        return
    present = text.dropna().astype(str)
    if present.empty or not present.str.contains(",", regex=False).any():
        return
    if _to_float(present, ",").notna().all():
        reader.problem(
            column,
            None,
            present[present.str.contains(",", regex=False)].iloc[0],
            "numbers with '.' as the decimal mark (file.decimal), but the column "
            "uses ','; set file.decimal: ',' or list the column under 'categorical'",
        )


def _kind(mapping: TableMapping, column: str, text: pd.Series) -> Kind:
    if column in mapping.categorical:
        return "categorical"
    if column in mapping.numeric:
        return "numeric"
    # An infinite value keeps the column numeric, so that it is reported
    # instead of turning the column into categories.
    unparsed = _to_float(text, mapping.file.decimal).isna() & text.notna()
    return "categorical" if unparsed.any() or text.isna().all() else "numeric"


def _keys(
    mapping: TableMapping, raw: pd.DataFrame, reader: _Reader
) -> tuple[pd.Series, pd.Series]:
    if mapping.id_column is None:
        learner_id = pd.Series(
            [f"row-{n}" for n in range(1, len(raw) + 1)], index=raw.index, dtype="str"
        )
    else:
        learner_id = raw[mapping.id_column]
        reader.bad_values(
            mapping.id_column, learner_id, learner_id.isna(), "a pupil id in every row"
        )
        unreadable = learner_id.notna() & ~learner_id.astype("str").str.fullmatch(
            ID_PATTERN
        ).fillna(False).astype(bool)
        reader.bad_values(mapping.id_column, learner_id, unreadable, ID_EXPECTED)
        learner_id = learner_id.astype("str")
    if mapping.group_column is None:
        group = pd.Series("all", index=raw.index, dtype="str")
    else:
        group = raw[mapping.group_column]
        reader.bad_values(
            mapping.group_column, group, group.isna(), "a group value in every row"
        )
        # The group names the school that scores and staff tokens are scoped
        # to, so it follows the id rule of the API and the screens.
        unreadable = group.notna() & ~group.astype("str").str.fullmatch(
            ID_PATTERN
        ).fillna(False).astype(bool)
        reader.bad_values(
            mapping.group_column,
            group,
            unreadable,
            f"a group value that is {ID_EXPECTED}, because the group names the "
            "school that staff tokens are scoped to; recode the column, for "
            "example with '_' in place of spaces",
        )
        group = group.astype("str")
    return learner_id, group


def _check_duplicates(
    learner_id: pd.Series,
    group: pd.Series,
    period: pd.Series | None,
    reader: _Reader,
) -> None:
    """Reject a pupil id that repeats without a period, or within one period."""
    keys = [learner_id] if period is None else [learner_id, period]
    repeated = pd.concat(keys, axis=1).duplicated(keep="first")
    expected = (
        "a pupil id that is unique within its period"
        if period is not None
        else "a unique pupil id; add a period column if the table has one row per "
        "pupil and period"
    )
    column = reader.mapping.id_column or "*"
    reader.bad_values(column, learner_id, repeated, expected)
