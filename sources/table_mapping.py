"""The mapping file: how to read a one-row-per-pupil table and what its columns mean.

A mapping file is YAML. :func:`load_mapping` reads and validates it with the
pydantic models below and raises :class:`MappingError` naming the mapping file and
the key for anything missing or invalid. ``docs/bring-your-own-data.md`` walks
through writing one; ``ajoissa/mappings/`` contains the shipped examples.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sources.errors import MappingError

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""Mapping names become part of the registered model name ``ajoissa-table-<name>``."""

RULE_PATTERN = re.compile(
    r"^\s*(?P<column>.+?)\s*(?P<operator><=|>=|==|!=|<|>)\s*"
    r"(?P<threshold>[-+]?\d+(?:\.\d+)?)\s*$"
)
"""An outcome rule such as ``G3 < 10``: a column, an operator and a number."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Strict):
    """Location of the data file and the options for reading it."""

    path: str
    """Path of the data file, relative to the mapping file unless absolute."""
    format: Literal["csv", "excel", "parquet"] | None = None
    """File format. Default: from the suffix (.csv/.txt, .xlsx/.xlsm, .parquet)."""
    separator: str = Field(default=",", min_length=1, max_length=1)
    """CSV field separator, one character."""
    encoding: str = "utf-8"
    """CSV text encoding. ``utf-8`` also reads files that start with a BOM."""
    decimal: Literal[".", ","] = "."
    """Decimal mark of numbers in CSV and text cells; ``,`` for a decimal comma."""
    sheet: str | int | None = None
    """Excel sheet name or 0-based position. Default: the first sheet."""
    missing_values: list[str] = Field(default_factory=lambda: [""])
    """Cell texts that mean a missing value, compared after stripping spaces."""

    @model_validator(mode="after")
    def _check_options(self) -> FileSpec:
        if self.sheet is not None and self.resolved_format() != "excel":
            raise ValueError("'sheet' applies only to Excel files (format: excel)")
        if self.decimal == "," and self.separator == ",":
            raise ValueError(
                "a decimal comma needs another separator; set separator to ';'"
            )
        return self

    def resolved_format(self) -> Literal["csv", "excel", "parquet"]:
        """Return ``format``, or the format its suffix implies."""
        if self.format is not None:
            return self.format
        suffix = Path(self.path).suffix.lower()
        if suffix in (".xlsx", ".xlsm"):
            return "excel"
        if suffix in (".parquet", ".pq"):
            return "parquet"
        return "csv"


class PeriodSpec(_Strict):
    """The column that places each row in time, which makes the split temporal."""

    column: str
    kind: Literal["date", "year", "ordinal"] = "date"
    """``date``: a calendar date. ``year``: a whole year such as 2024.
    ``ordinal``: ordered labels such as ``2023/24`` or period numbers, sorted
    numerically when every label is a number and as text otherwise. When every
    label is a school year (``2023/24``, ``2023-2024``), each period starts on
    1 August of its first year; other labels get placeholder dates from
    2000-01-01, one year apart."""
    date_format: str | None = None
    """strftime format of ``date`` values, such as ``%d.%m.%Y``. Default: ISO 8601."""
    test_periods: int = Field(default=1, ge=1)
    """How many of the latest periods test the model; earlier periods train it."""


class OutcomeSpec(_Strict):
    """Definition of the adverse outcome, the event the model warns about.

    Give either ``column`` with ``adverse_values``, or ``rule``.
    """

    column: str | None = None
    adverse_values: list[str] | None = None
    """Values of ``column`` that count as the adverse outcome; others do not."""
    rule: str | None = None
    """A rule on a numeric column, such as ``G3 < 10``. Operators: < <= > >= == !=."""

    @model_validator(mode="after")
    def _check_one_form(self) -> OutcomeSpec:
        by_values = self.column is not None or self.adverse_values is not None
        if by_values and self.rule is not None:
            raise ValueError("give either 'rule' or 'column' with 'adverse_values'")
        if self.rule is not None:
            if RULE_PATTERN.match(self.rule) is None:
                raise ValueError(
                    f"rule {self.rule!r} is invalid; write '<column> <operator> "
                    "<number>', for example 'G3 < 10'"
                )
            return self
        if self.column is None or not self.adverse_values:
            raise ValueError(
                "give 'column' and a non-empty 'adverse_values' list, or a 'rule'"
            )
        return self

    def parsed_rule(self) -> tuple[str, str, float]:
        """Return the rule's column, operator and threshold."""
        match = RULE_PATTERN.match(self.rule or "")
        if match is None:
            raise ValueError("this outcome has no rule")
        return match["column"], match["operator"], float(match["threshold"])

    @property
    def source_column(self) -> str:
        """The column that the outcome is read from."""
        return self.parsed_rule()[0] if self.rule is not None else str(self.column)

    def describe(self) -> str:
        """Return the outcome definition as one line of text."""
        if self.rule is not None:
            return f"adverse when {self.rule.strip()}"
        values = ", ".join(repr(v) for v in self.adverse_values or [])
        return f"adverse when {self.column} is one of {values}"


class BinsSpec(_Strict):
    """Bands of a numeric sensitive column, closed on the right like ``pandas.cut``."""

    edges: list[float] = Field(min_length=2)
    """Increasing band edges; ``.inf`` and ``-.inf`` are allowed in YAML."""
    labels: list[str]
    """One label per band, so one fewer than ``edges``."""

    @model_validator(mode="after")
    def _check_edges(self) -> BinsSpec:
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"edges {self.edges} must be strictly increasing")
        if len(self.labels) != len(self.edges) - 1:
            raise ValueError(
                f"{len(self.edges)} edges make {len(self.edges) - 1} bands, but "
                f"{len(self.labels)} labels are given"
            )
        return self


class DerivedSpec(_Strict):
    """A numeric feature computed from two numbers of the same row.

    Give exactly one of ``ratio`` and ``difference``. Each operand is a numeric
    feature column's header or the ``name`` of an earlier ``derived`` entry.
    """

    name: str = Field(min_length=1)
    """The feature's name; the feature frame uses it in snake case."""
    ratio: tuple[str, str] | None = None
    """Numerator and denominator. The value is missing where the denominator
    is 0 or either operand is missing."""
    difference: tuple[str, str] | None = None
    """The first operand minus the second."""

    @model_validator(mode="after")
    def _check_one_form(self) -> DerivedSpec:
        if (self.ratio is None) == (self.difference is None):
            raise ValueError(
                f"derived feature {self.name!r} needs exactly one of 'ratio' and "
                "'difference'"
            )
        return self

    @property
    def operands(self) -> tuple[str, str]:
        """The two operands, in the order the operation uses them."""
        return self.ratio or self.difference or ("", "")


class SensitiveSpec(_Strict):
    """A sensitive attribute, used only to audit the model, never as a feature."""

    column: str
    name: str | None = None
    """Name in the audit. Default: the column name in snake case."""
    categories: list[str] | dict[str, str] | None = None
    """Expected values (a list), or a map from each value to its group label.
    Any other value stops the run. Default: every value is its own group."""
    bins: BinsSpec | None = None
    """Bands for a numeric column such as age, instead of ``categories``."""
    reference: str | None = None
    """Reference group (after ``categories`` or ``bins``) that the audit
    compares every other group with, when the reviewers set one."""

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        # YAML reads codes such as 1 or yes as numbers or booleans; the table's
        # cells are text, so compare them as text.
        if isinstance(data, dict):
            categories = data.get("categories")
            if isinstance(categories, dict):
                data = data | {
                    "categories": {
                        _yaml_text(k): _yaml_text(v) for k, v in categories.items()
                    }
                }
            elif isinstance(categories, list):
                data = data | {"categories": [_yaml_text(v) for v in categories]}
            if "reference" in data and data["reference"] is not None:
                data = data | {"reference": _yaml_text(data["reference"])}
        return data

    @model_validator(mode="after")
    def _check_groups(self) -> SensitiveSpec:
        if self.categories is not None and self.bins is not None:
            raise ValueError("give either 'categories' or 'bins', not both")
        labels = self.group_labels()
        if self.reference is not None and labels and self.reference not in labels:
            raise ValueError(
                f"reference {self.reference!r} is not one of the groups {labels}"
            )
        return self

    def group_labels(self) -> list[str]:
        """Return the declared group labels, or [] when every value is a group."""
        if self.bins is not None:
            return list(self.bins.labels)
        if isinstance(self.categories, dict):
            return list(dict.fromkeys(self.categories.values()))
        return list(self.categories or [])

    @property
    def audit_name(self) -> str:
        """Name of the attribute in the learners table and the audit."""
        return self.name or snake_case(self.column)


class SplitSpec(_Strict):
    """Validation settings. The split is temporal when a period column exists."""

    folds: int = Field(default=5, ge=2, le=20)
    """Cross-validation folds, used when the table has no period column."""
    seed: int = 0
    """Seed of the fold assignment and of LightGBM."""


class TableMapping(_Strict):
    """A mapping file: one table, one row per pupil (or per pupil and period)."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    """Short name in lower case, digits and hyphens; the model is registered as
    ``ajoissa-table-<name>``."""
    description: str = ""
    file: FileSpec
    id_column: str | None = None
    """Pupil id column. Default: none, and the 1-based data row number is the id."""
    group_column: str | None = None
    """School or class column. Each group (per period) becomes one unit. The
    column stays a feature unless it is in ``exclude``."""
    period: PeriodSpec | None = None
    outcome: OutcomeSpec
    sensitive: list[SensitiveSpec] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    """Columns that are never features: identifiers, free text, and leakage such
    as the final grade that the outcome is computed from."""
    categorical: list[str] = Field(default_factory=list)
    """Columns to treat as categories even though every value is a number
    (codes such as 1 = urban, 2 = rural)."""
    numeric: list[str] = Field(default_factory=list)
    """Columns that must be numbers; any other value stops the run."""
    derived: list[DerivedSpec] = Field(default_factory=list)
    """Features computed from two numbers of the same row, such as a share of
    courses passed; they follow the other features in the given order."""
    split: SplitSpec = Field(default_factory=SplitSpec)
    min_group_size: int = Field(default=10, ge=1)
    """Audit groups with fewer rows are suppressed; inspect warns about them."""

    @model_validator(mode="after")
    def _check_roles(self) -> TableMapping:
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise ValueError(f"columns {both} are in both 'categorical' and 'numeric'")
        names = [s.audit_name for s in self.sensitive]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensitive attribute names {duplicates} repeat")
        derived = [snake_case(d.name) for d in self.derived]
        repeated = sorted({n for n in derived if derived.count(n) > 1})
        if repeated:
            raise ValueError(f"derived feature names {repeated} repeat in snake case")
        keyed = [
            ("id_column", self.id_column),
            ("group_column", self.group_column),
            ("period.column", self.period.column if self.period else None),
        ]
        for key, column in keyed:
            if column is not None and column in self.sensitive_columns:
                raise ValueError(f"{key} {column!r} is also a sensitive column")
        return self

    @property
    def sensitive_columns(self) -> list[str]:
        """The source columns of the sensitive attributes."""
        return [s.column for s in self.sensitive]


def snake_case(text: str) -> str:
    """Return ``text`` in lower case ASCII with every run of other characters as ``_``.

    Letters with diacritics lose them first, so ``Sähköposti`` becomes
    ``sahkoposti``, not ``s_hk_posti``.
    """
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]+", "_", plain).strip("_")


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        # YAML 1.1 reads yes/no as booleans; a table cell would contain the word.
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_mapping(path: Path) -> TableMapping:
    """Read and validate the mapping file at ``path``.

    Raises
    ------
    MappingError
        If the file is missing, is not valid YAML, or a key is missing, unknown or
        invalid. The message names the file and every key at fault.
    """
    if not path.is_file():
        raise MappingError(path, [("*", "file not found; check the --mapping path")])
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as exc:
        raise MappingError(path, [(exc.key, str(exc))]) from exc
    except yaml.YAMLError as exc:
        raise MappingError(path, [("*", f"invalid YAML: {exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise MappingError(path, [("*", f"not UTF-8 text: {exc}")]) from exc
    if not isinstance(content, dict):
        raise MappingError(path, [("*", "expected a YAML mapping of keys at the top")])
    try:
        return TableMapping.model_validate(content)
    except ValidationError as exc:
        problems = [
            (".".join(str(part) for part in error["loc"]) or "*", _plain_message(error))
            for error in exc.errors()
        ]
        raise MappingError(path, problems) from exc


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, first: int, second: int) -> None:
        self.key = key
        super().__init__(
            f"the key appears twice, on lines {first} and {second}; keep one, "
            "because YAML would silently use the last"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKeyError(str(key), seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _field_names() -> set[str]:
    """Return every key a mapping file may contain, at any level."""
    names: set[str] = set()
    for model in _Strict.__subclasses__():
        names |= set(model.model_fields)
    return names


def _plain_message(error: dict[str, Any]) -> str:
    """Return a pydantic error about a mapping key in plain words."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        close = difflib.get_close_matches(key, sorted(_field_names()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        return f"unknown key{hint} docs/bring-your-own-data.md lists the keys."
    if kind == "missing":
        return "missing; this key is required"
    if kind == "string_pattern_mismatch" and error["loc"] == ("name",):
        return (
            f"invalid value {value!r}: expected lower-case letters, digits and "
            "'-', starting with a letter or digit, at most 63 characters"
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(value, dict | list):
        return message
    return f"invalid value {value!r}: {message}"


def data_path(mapping_path: Path, mapping: TableMapping) -> Path:
    """Return the data file's path, resolved against the mapping file's folder."""
    path = Path(mapping.file.path).expanduser()
    return path if path.is_absolute() else (mapping_path.parent / path).resolve()
