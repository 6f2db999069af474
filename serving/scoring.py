"""Validate JSON records and score them with a registered model.

This module does not import BentoML, so the HTTP service and the tests call the
same code. A record is a JSON object keyed by the feature names in the model's
:class:`~models.spec.FeatureSpec`. Every feature key must be present, and no
other key is allowed. Key order does not matter.

Value rules
-----------
null
    Allowed for every feature and scored as missing, which LightGBM handles
    natively. A float NaN (from Python callers) is treated the same way.
Numeric features
    A JSON number (int or float) other than a boolean, because ``true`` is not a
    count or a score. The number must lie in the feature's range from
    :func:`features.bounds.feature_ranges` (for example 0 to 1 for a share, a
    whole number of at least 0 for a count). Features without a known range
    take any finite number. A string containing a plain decimal number, such as
    ``"12.5"``, ``"-3"`` or ``"1e3"``, is also accepted and parsed as a float,
    because CSV exports and spreadsheets often quote numbers. Surrounding
    whitespace is ignored. Decimal commas, thousands separators, ``"NaN"`` and
    ``"Infinity"`` are rejected, and so are infinite numbers.
Categorical features
    A string or a number, matched to the model's training categories by
    :func:`models.spec.category_text`: surrounding whitespace is stripped and an
    integral number compares as its integer text (``" 171 "``, ``171`` and
    ``171.0`` all match the category ``"171"``). An empty string, or one of
    whitespace only, is a missing value like null. The offline path
    (:meth:`models.spec.FeatureSpec.conform`) uses the same rule. A value that is
    not among the model's training categories is scored as missing. The response then contains
    one warning per field and unseen value, with the number of records affected.
    After ``MAX_UNSEEN_WARNINGS_PER_FIELD`` values, one warning sums up the rest.

Every problem in a batch is collected before :class:`RecordValidationError` is
raised, so one response lists all that needs fixing.

Rank percentile
---------------
``rank_percentile`` places each probability among the probabilities of the same
request: ``100 * (number of records with probability <= p) / n``. The record with
the highest risk gets 100, and tied probabilities get the same value. ``rank``
is the position by probability within the request: 1 is the highest risk, and
tied probabilities share the better rank. Both depend on which records are sent
together, while ``probability`` and ``reasons`` do not.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from operator import itemgetter
from typing import Any, Literal

import msgspec
import numpy as np
import pandas as pd

from features.bounds import ValueRange, feature_ranges
from models.reasons import contributions, reason_codes
from models.risk import predict_risk
from models.spec import FeatureSpec, category_text
from models.store import LoadedModel

logger = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 10_000
"""Maximum number of records in one scoring request."""

TOP_REASONS = 3
"""Number of reason codes returned per record."""

SINGLE_THREAD_MAX_ROWS = 64
"""Requests with at most this many records are scored on one LightGBM thread.

Waking OpenMP threads costs more than they save on a few rows, and on a busy
machine idle threads spin and slow the other requests.

NOTE: on a shared 2-core machine one row took 1 ms of SHAP on one thread and
12 ms on two. The cut-off of 64 is a judgement between those figures, not
tuned on a quiet machine."""

MAX_UNSEEN_WARNINGS_PER_FIELD = 20
"""Maximum distinct unseen categories listed per field. One warning sums up the rest."""

MAX_LISTED_PROBLEMS = 20
"""Maximum problems written into the exception message. ``problems`` keeps them all."""

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

ProblemKind = Literal["invalid", "missing", "unknown"]


@dataclass(frozen=True)
class RecordProblem:
    """One invalid record or field value in a scoring request.

    ``record`` is the 0-based position of the record in the request, or ``None``
    when the problem concerns the request as a whole (for example, an empty list).
    ``kind`` is ``missing`` for an absent feature key, ``unknown`` for a key that
    is not a feature, and ``invalid`` for a value of the wrong type.
    """

    record: int | None
    field: str
    value: Any
    expected: str
    kind: ProblemKind = "invalid"
    body_fault: str = "is invalid"
    """Predicate of the message for a problem of the field ``body``, such as
    ``is not UTF-8 text``, which follows "request body"."""

    def __str__(self) -> str:
        where = "request" if self.record is None else f"record {self.record}"
        if self.kind == "missing":
            return f"{where}, field {self.field!r}: missing; expected {self.expected}"
        if self.kind == "unknown":
            return (
                f"{where}, field {self.field!r}: unknown field; "
                f"expected {self.expected}"
            )
        if self.record is None and self.field == "body":
            # The body itself, whose text is not repeated back.
            return f"request body {self.body_fault}; expected {self.expected}"
        return (
            f"{where}, field {self.field!r}: value {_value_text(self.value)} is "
            f"invalid; expected {self.expected}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as JSON-compatible values, for an HTTP error body."""
        value = self.value
        if isinstance(value, str):
            value = _shorten(value)
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON has no such number, so the error body gives its token as text.
            value = _non_finite_token(value)
        elif not isinstance(value, (int, float, bool, type(None))):
            value = _short_repr(value)
        return {
            "record": self.record,
            "field": self.field,
            "kind": self.kind,
            "value": None if self.kind == "missing" else value,
            "expected": self.expected,
            "message": str(self),
        }


class RecordValidationError(ValueError):
    """Raised when a scoring request contains invalid records.

    ``problems`` lists every problem found. The message lists the first
    ``MAX_LISTED_PROBLEMS`` of them and the model's feature names.
    """

    def __init__(self, problems: list[RecordProblem], feature_names: list[str]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more problems")
        # The feature names help with a record's fields, not with the request's
        # own keys (record None).
        if any(
            p.kind in ("missing", "unknown") and p.record is not None for p in problems
        ):
            lines.append("Expected fields: " + ", ".join(feature_names) + ".")
        lines.append("Fix the listed values and send the request again.")
        super().__init__(
            f"{len(problems)} problem(s) in the scoring request:\n" + "\n".join(lines)
        )


class BatchTooLargeError(ValueError):
    """Raised when a scoring request contains more records than the limit allows."""

    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(
            f"batch of {count} records is too large. The maximum is {limit} records "
            f"per request, so split the records into batches of at most {limit} and "
            "send each batch separately. rank_percentile is then computed within "
            "each batch."
        )


@dataclass(frozen=True)
class ValidatedBatch:
    """Valid records as feature columns and a LightGBM matrix, with warnings."""

    values: dict[str, list[Any] | np.ndarray]
    """Each feature's values by record: floats (NaN where missing) for numeric
    features, strings (None where missing or unseen) for categorical ones. A
    numeric feature may come as a float array; :attr:`columns` has lists."""
    matrix: np.ndarray
    """The same values encoded by :meth:`~models.spec.FeatureSpec.encode`."""
    spec: FeatureSpec
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def columns(self) -> dict[str, list[Any]]:
        """Each feature's values by record as a list of Python values.

        Built on first use, because only reasons and :attr:`frame` read it: for
        1,000 records of 19 features the lists take about 0.2 ms.
        """
        return {
            name: column.tolist() if isinstance(column, np.ndarray) else column
            for name, column in self.values.items()
        }

    @property
    def frame(self) -> pd.DataFrame:
        """The records as a frame with the spec's columns and training dtypes."""
        return self.spec.conform(pd.DataFrame(self.columns, dtype="object"))


class _Score(msgspec.Struct, gc=False):
    """One record's score in an HTTP response; the fields in the JSON key order."""

    probability: float
    rank: int
    rank_percentile: float
    reasons: list[dict[str, Any]] | None
    model_name: str
    model_version: str
    as_of: str | None


@dataclass(frozen=True)
class ScoringResult:
    """Scores for one request, in the order of the records.

    The per-record values are kept as lists. :attr:`scores` builds a dict per
    record for callers, and :meth:`response_body` a msgspec struct per record
    for the HTTP response: for 1,000 records the structs and their encoding
    took 0.18 ms against 0.37 ms for dicts (docs/benchmarks.md).
    """

    probabilities: list[float]
    ranks: list[int]
    rank_percentiles: list[float]
    reasons: list[list[dict[str, Any]] | None]
    as_of: str | None
    warnings: list[str]
    model_name: str
    model_version: str

    @cached_property
    def scores(self) -> list[dict[str, Any]]:
        """Each record's score as a dict with the keys of the response's scores."""
        return [msgspec.structs.asdict(score) for score in self._structs()]

    def to_dict(self) -> dict[str, Any]:
        """Return the HTTP response body: ``scores``, ``warnings`` and ``model``."""
        return {
            "scores": self.scores,
            "warnings": self.warnings,
            "model": {"name": self.model_name, "version": self.model_version},
        }

    def response_body(self) -> dict[str, Any]:
        """Return :meth:`to_dict`'s body with structs as scores, for msgspec to encode."""
        return {
            "scores": self._structs(),
            "warnings": self.warnings,
            "model": {"name": self.model_name, "version": self.model_version},
        }

    def _structs(self) -> list[_Score]:
        n = len(self.probabilities)
        return list(
            map(
                _Score,
                self.probabilities,
                self.ranks,
                self.rank_percentiles,
                self.reasons,
                itertools.repeat(self.model_name, n),
                itertools.repeat(self.model_version, n),
                itertools.repeat(self.as_of, n),
            )
        )


def validate_records(
    records: object,
    spec: FeatureSpec,
    max_records: int = MAX_BATCH_RECORDS,
) -> ValidatedBatch:
    """Check ``records`` against ``spec`` and convert them to a feature frame.

    Parameters
    ----------
    records
        A list of JSON objects (dicts) keyed by the names in ``spec.features``.
    spec
        The feature specification of the model that will score the records.
    max_records
        Maximum number of records accepted.

    Raises
    ------
    BatchTooLargeError
        If there are more than ``max_records`` records. This is checked before
        any record is read.
    RecordValidationError
        If ``records`` is not a non-empty list, or any record breaks the value
        rules in the module docstring. Lists every problem.
    """
    if not isinstance(records, (list, tuple)):
        problem = RecordProblem(
            None, "records", records, "a JSON array of records (objects)"
        )
        raise RecordValidationError([problem], spec.features)
    if not records:
        problem = RecordProblem(
            None, "records", [], "a non-empty JSON array of records"
        )
        raise RecordValidationError([problem], spec.features)
    if len(records) > max_records:
        raise BatchTooLargeError(len(records), max_records)
    batch = _validate_columnwise(records, spec)
    if batch is None:
        batch = _validate_per_record(records, spec)
    return batch


def _validate_per_record(
    records: list[Any] | tuple[Any, ...], spec: FeatureSpec
) -> ValidatedBatch:
    """Check every record and value of a non-empty batch by the module's rules.

    Raises
    ------
    RecordValidationError
        If any record or value breaks the rules. Lists every problem, sorted
        by record.
    """
    known = set(spec.features)
    problems: list[RecordProblem] = []
    objects: list[dict[str, Any]] = []
    positions: list[int] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(
                RecordProblem(index, "*", record, "a JSON object keyed by feature name")
            )
            continue
        objects.append(record)
        positions.append(index)
        if record.keys() != known:
            problems.extend(_key_problems(index, record, spec.features, known))

    # Values are checked one feature at a time, which lets plain numeric
    # columns skip the per-value parser.
    columns: dict[str, list[Any]] = {}
    unseen: dict[str, Counter[str]] = {name: Counter() for name in spec.categorical}
    for name in spec.features:
        values = [record.get(name) for record in objects]
        if name in spec.categorical:
            columns[name] = _categorical_column(
                name,
                values,
                positions,
                spec.category_lookup[name],
                unseen[name],
                problems,
            )
        else:
            columns[name] = _numeric_column(name, values, positions, problems)

    problems.extend(_out_of_range(objects, positions, columns, spec))
    if problems:
        # Stable sort: request-level problems first, then by record.
        problems.sort(key=lambda p: -1 if p.record is None else p.record)
        raise RecordValidationError(problems, spec.features)

    return ValidatedBatch(
        values=columns,
        matrix=spec.encode(columns),
        spec=spec,
        warnings=_unseen_warnings(unseen),
    )


def _validate_columnwise(
    records: list[Any] | tuple[Any, ...], spec: FeatureSpec
) -> ValidatedBatch | None:
    """Validate a batch of well-formed records a column at a time, or return None.

    This path gives the same batch as :func:`_validate_per_record`, with far
    fewer Python operations per value. It returns None as soon as a value or
    record needs the per-record rules. Such are a record that is not a dict
    with exactly the feature keys, and a numeric value other than an int, a
    float or null. So are an infinite or out-of-range number and a
    categorical value other than a string, an int, a float or null. The
    per-record path then checks the whole batch again. It accepts decimal
    strings and reports every problem, so error responses have a single
    source.
    """
    features = spec.features
    if set(map(type, records)) != {dict}:
        return None
    if set(map(len, records)) != {len(set(features))}:
        return None
    numeric = [name for name in features if name not in spec.categorical]
    categorical = [name for name in features if name in spec.categorical]
    try:
        # A record with as many keys as features and every feature key
        # present has exactly the feature keys.
        rows = _value_rows(records, numeric)
        raw_categories = {
            name: list(map(itemgetter(name), records)) for name in categorical
        }
    except KeyError:
        return None

    values = itertools.chain.from_iterable(rows)
    if not set(map(type, values)) <= _PLAIN_NUMBER_TYPES:
        return None
    return batch_from_plain_values(rows, raw_categories, spec)


def batch_from_plain_values(
    rows: Sequence[Sequence[float | int | None]],
    raw_categories: dict[str, list[Any]],
    spec: FeatureSpec,
) -> ValidatedBatch | None:
    """Check and encode values whose types already pass, or return None.

    ``rows`` contains each record's numeric values (ints, floats or None) in the
    order of ``spec.features`` without the categorical features, and
    ``raw_categories`` each categorical feature's values by record. Returns
    None when a number is infinite or out of range, or a categorical value is
    not a string, an int, a float or null: the per-record rules report those.
    """
    numeric = [name for name in spec.features if name not in spec.categorical]
    try:
        # None becomes NaN.
        numbers = np.array(rows, dtype=float).reshape(len(rows), len(numeric))
    except OverflowError:
        return None
    if np.isinf(numbers).any() or _any_out_of_range(numbers, numeric):
        return None

    values: dict[str, Any] = {}
    unseen: dict[str, Counter[str]] = {name: Counter() for name in spec.categorical}
    for name in spec.categorical:
        column = _categories_by_value(
            raw_categories[name], spec.category_lookup[name], unseen[name]
        )
        if column is None:
            return None
        values[name] = column
    for position, name in enumerate(numeric):
        values[name] = numbers[:, position]
    # The matrix is encoded from the float arrays, which skips a conversion
    # per value.
    return ValidatedBatch(
        values={name: values[name] for name in spec.features},
        matrix=spec.encode(values),
        spec=spec,
        warnings=_unseen_warnings(unseen),
    )


def _value_rows(records: Sequence[dict[str, Any]], names: list[str]) -> list[tuple]:
    """Return each record's values of ``names`` as a tuple, in that order.

    Raises
    ------
    KeyError
        If a record lacks one of ``names``.
    """
    if not names:
        return [()] * len(records)
    if len(names) == 1:
        # itemgetter of one key returns the value itself, not a tuple.
        return [(value,) for value in map(itemgetter(names[0]), records)]
    return list(map(itemgetter(*names), records))


def _any_out_of_range(numbers: np.ndarray, names: list[str]) -> bool:
    """Return whether a value of ``numbers`` (records by ``names``) is out of range.

    ``numbers`` contains finite values or NaN. NaN is a missing value, never out
    of range.
    """
    lower, upper, whole = _range_bounds(tuple(names))
    with np.errstate(invalid="ignore"):
        outside = (numbers < lower) | (numbers > upper)
        outside |= whole & (numbers != np.floor(numbers))
    return bool((outside & ~np.isnan(numbers)).any())


@lru_cache(maxsize=8)
def _range_bounds(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the lower and upper bounds and the whole-number flags of ``names``.

    A feature without a known range gets -inf, inf and False, which no finite
    value breaks. With these arrays one NumPy pass checks the whole matrix.
    Validating one record took 0.12 ms of CPU time with a check per column and
    0.05 ms with this one.
    """
    ranges = _feature_ranges()
    unbounded = ValueRange()
    bounds = [ranges.get(name, unbounded) for name in names]
    return (
        np.array([bound.lower for bound in bounds], dtype=float),
        np.array([bound.upper for bound in bounds], dtype=float),
        np.array([bound.whole for bound in bounds], dtype=bool),
    )


_CATEGORY_VALUE_TYPES = frozenset({str, int, float, type(None)})


def _categories_by_value(
    values: list[Any], categories: dict[str, str], unseen: Counter[str]
) -> list[str | None] | None:
    """Return ``values`` as training categories, matching each distinct value once.

    Gives the same column and the same ``unseen`` counts, in the same order, as
    :func:`_categorical_column`. Returns None if a value is not a string, an
    int, a float or null, which only the per-value rules report.
    """
    if not set(map(type, values)) <= _CATEGORY_VALUE_TYPES:
        return None
    # Counter keeps first occurrences in order, which keeps the warnings'
    # order. Equal numbers such as 171 and 171.0 share a key and a category
    # text, so merging them changes nothing.
    matched: dict[Any, str] = {}
    for value, count in Counter(values).items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = category_text(value)
        if not text:
            # Blank text is a missing value, like null.
            continue
        category = categories.get(text)
        if category is None:
            unseen[text] += count
        else:
            matched[value] = category
    # A NaN or an unseen value is not in ``matched``, so it gets None.
    return list(map(matched.get, values))


def score_records(
    records: object,
    loaded: LoadedModel,
    max_records: int = MAX_BATCH_RECORDS,
    as_of: str | None = None,
    include_reasons: bool = True,
) -> ScoringResult:
    """Validate ``records`` and score them with ``loaded``.

    Each score has ``probability`` (of withdrawing), ``rank`` and
    ``rank_percentile`` (see the module docstring), ``as_of`` (the date the
    caller says the features describe, or None), ``reasons``, ``model_name`` and
    ``model_version``. ``reasons`` lists the ``TOP_REASONS`` features with the
    largest absolute TreeSHAP contribution in log-odds, or is None when
    ``include_reasons`` is false, which skips the SHAP computation. A record's
    probability and reasons depend only on that record, not on the other
    records or the key order.

    Raises
    ------
    BatchTooLargeError
        If there are more than ``max_records`` records.
    RecordValidationError
        If the request or any record is invalid. Lists every problem.
    """
    batch = validate_records(records, loaded.spec, max_records)
    return score_batch(batch, loaded, as_of, include_reasons)


def score_batch(
    batch: ValidatedBatch,
    loaded: LoadedModel,
    as_of: str | None = None,
    include_reasons: bool = True,
) -> ScoringResult:
    """Score records that :func:`validate_records` or another validator checked.

    ``batch.spec`` must be ``loaded.spec``. The scores are those of
    :func:`score_records`.
    """
    threads = 1 if len(batch.matrix) <= SINGLE_THREAD_MAX_ROWS else None
    probabilities = predict_risk(
        loaded.model, loaded.spec, batch.matrix, loaded.calibration, threads
    )
    if include_reasons:
        values, _ = contributions(loaded.model, loaded.spec, batch.matrix, threads)
        reasons = reason_codes(
            values,
            batch.columns,
            loaded.spec.features,
            TOP_REASONS,
            sentences=True,
        )
    else:
        reasons = [None] * len(probabilities)
    logger.debug(
        "scored %d records with %s version %s",
        len(probabilities),
        loaded.name,
        loaded.version,
    )
    # tolist() converts to Python numbers at once, far faster than per element.
    return ScoringResult(
        probabilities=np.asarray(probabilities, dtype=float).tolist(),
        ranks=request_ranks(probabilities).tolist(),
        rank_percentiles=rank_percentiles(probabilities).tolist(),
        reasons=reasons,
        as_of=as_of,
        warnings=batch.warnings,
        model_name=loaded.name,
        model_version=loaded.version,
    )


def rank_percentiles(probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return ``100 * (count of probabilities <= p) / n`` for each probability ``p``.

    The highest probability gets 100 and equal probabilities get equal values.
    """
    values = np.asarray(probabilities, dtype=float)
    if values.size == 0:
        return np.empty(0, dtype=float)
    ordered = np.sort(values)
    at_or_below = np.searchsorted(ordered, values, side="right")
    return 100.0 * at_or_below / values.size


def request_ranks(probabilities: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return ``1 + (count of probabilities > p)`` for each probability ``p``.

    The highest probability gets rank 1 and equal probabilities share a rank.
    """
    values = np.asarray(probabilities, dtype=float)
    ordered = np.sort(values)
    above = values.size - np.searchsorted(ordered, values, side="right")
    return 1 + above


_PLAIN_NUMBER_TYPES = frozenset({int, float, type(None)})
_NUMERIC_EXPECTED = "a finite number, a decimal number string such as '12.5', or null"


def _key_problems(
    index: int, record: dict[str, Any], features: list[str], known: set[str]
) -> list[RecordProblem]:
    problems = [
        RecordProblem(
            index, str(key), record[key], "only the model's feature names", "unknown"
        )
        for key in record
        if key not in known
    ]
    problems += [
        RecordProblem(index, name, None, "a value or null", "missing")
        for name in features
        if name not in record
    ]
    return problems


def _numeric_column(
    name: str, values: list[Any], positions: list[int], problems: list[RecordProblem]
) -> list[float]:
    """Return ``values`` as floats (NaN for null) and add a problem per invalid one."""
    if set(map(type, values)) <= _PLAIN_NUMBER_TYPES:
        try:
            # None becomes NaN. Integers beyond the float range raise and take
            # the per-value path below, which reports them.
            array = np.array(values, dtype=float)
        except OverflowError:
            pass
        else:
            for row in np.flatnonzero(np.isinf(array)):
                problems.append(
                    RecordProblem(positions[row], name, values[row], _NUMERIC_EXPECTED)
                )
                array[row] = np.nan
            return array.tolist()
    column = []
    for row, raw in enumerate(values):
        value, problem = _parse_numeric(positions[row], name, raw)
        if problem is not None:
            problems.append(problem)
        column.append(value)
    return column


def _categorical_column(
    name: str,
    values: list[Any],
    positions: list[int],
    categories: dict[str, str],
    unseen: Counter[str],
    problems: list[RecordProblem],
) -> list[str | None]:
    """Return ``values`` as training categories, with None for null and unseen ones.

    ``categories`` maps :func:`~models.spec.category_text` to the training
    category. Unseen categories are counted in ``unseen``, and invalid values
    are added to ``problems``.
    """
    column = []
    for row, raw in enumerate(values):
        text, problem = _parse_categorical(positions[row], name, raw)
        if problem is not None:
            problems.append(problem)
        category = None if text is None else categories.get(text)
        if text is not None and category is None:
            unseen[text] += 1
        column.append(category)
    return column


def _parse_numeric(
    index: int, name: str, raw: Any
) -> tuple[float, RecordProblem | None]:
    expected = _NUMERIC_EXPECTED
    if raw is None:
        return math.nan, None
    if isinstance(raw, bool):
        return math.nan, RecordProblem(index, name, raw, expected)
    if isinstance(raw, (int, float)):
        try:
            number = float(raw)
        except OverflowError:
            return math.nan, RecordProblem(index, name, raw, expected)
        if math.isnan(number):
            return math.nan, None
        if math.isinf(number):
            return math.nan, RecordProblem(index, name, raw, expected)
        return number, None
    if isinstance(raw, str) and _DECIMAL.fullmatch(raw.strip()):
        number = float(raw)
        if math.isfinite(number):
            return number, None
    return math.nan, RecordProblem(index, name, raw, expected)


def _out_of_range(
    objects: list[dict[str, Any]],
    positions: list[int],
    columns: dict[str, list[Any]],
    spec: FeatureSpec,
) -> list[RecordProblem]:
    """Return a problem for each numeric value outside its feature's range.

    ``objects`` are the records that are JSON objects, ``positions`` their
    indexes in the request, and ``columns`` their values by feature.
    """
    ranges = _feature_ranges()
    problems = []
    for name in spec.features:
        allowed = ranges.get(name)
        if allowed is None or name in spec.categorical:
            continue
        values = np.asarray(columns[name], dtype=float)
        with np.errstate(invalid="ignore"):
            outside = (values < allowed.lower) | (values > allowed.upper)
            if allowed.whole:
                outside |= values != np.floor(values)
        outside &= ~np.isnan(values)
        for row in np.flatnonzero(outside):
            problems.append(
                RecordProblem(
                    positions[row],
                    name,
                    objects[row][name],
                    f"{allowed.describe()}, or null",
                )
            )
    return problems


@lru_cache(maxsize=1)
def _feature_ranges() -> dict[str, ValueRange]:
    return feature_ranges()


def _parse_categorical(
    index: int, name: str, raw: Any
) -> tuple[str | None, RecordProblem | None]:
    if raw is None:
        return None, None
    if isinstance(raw, str):
        # Blank text is a missing value, like null.
        return category_text(raw) or None, None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if isinstance(raw, float) and math.isnan(raw):
            return None, None
        return category_text(raw), None
    problem = RecordProblem(index, name, raw, "a string, a number or null")
    return None, problem


def _unseen_warnings(unseen: dict[str, Counter[str]]) -> list[str]:
    warnings = []
    for name, counts in unseen.items():
        listed = counts.most_common(MAX_UNSEEN_WARNINGS_PER_FIELD)
        for value, count in listed:
            warnings.append(
                f"unseen category {_short_repr(value)} for field {name} in {count} record(s); "
                "scored as missing"
            )
        rest = counts.most_common()[MAX_UNSEEN_WARNINGS_PER_FIELD:]
        if rest:
            warnings.append(
                f"{len(rest)} more unseen categories for field {name} in "
                f"{sum(count for _, count in rest)} record(s); scored as missing"
            )
    return warnings


def _short_repr(value: Any) -> str:
    return _shorten(repr(value))


def _value_text(value: Any) -> str:
    """Return a received value for a message, with JSON's names for null and booleans.

    A non-finite number gets the body parser's token for it. ``Infinity`` is
    also the value of a number too large for a float, such as ``1e400``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return _non_finite_token(value)
    return _short_repr(value)


def _non_finite_token(value: float) -> str:
    """Return ``NaN``, ``Infinity`` or ``-Infinity``, the body parser's tokens."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _shorten(text: str, limit: int = 60) -> str:
    # Keeps error bodies small when a client sends a very long value.
    if len(text) > limit:
        return text[: limit - 3] + "..."
    return text
