"""Model versions for the reviewer pages, read from the MLflow model registry.

A model card here is what the registry stores about a version: its tags
(artifact digest, training data fingerprint, source), the metrics of the run
that trained it and the run's artifacts. The training job logs
``fairness_report.html`` and ``summary.json`` as run artifacts, and the model
card as ``model_card/model_card.html`` and ``model_card/model_card.md``. A
document named ``model_card.html`` or ``model_card.md`` in the ``model_card``
folder or at the top level, or a ``model_card_url`` tag, is linked as the model
card document. Anything absent is shown as not available.

Sign-off is recorded as model version tags (:mod:`fairness.signoff`), and
``ajoissa promote`` reads it before it moves the ``champion`` alias.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fairness.registry import TAG_REPORT
from fairness.signoff import MAX_REASON_CHARS, SIGNOFF_DECISIONS, SIGNOFF_TAGS
from models.store import (
    ARTIFACT_DIGEST_TAG,
    ASOF_ORDER_PARAM,
    TRAINING_DATA_TAG,
    configure_mlflow,
)

logger = logging.getLogger(__name__)

FAIRNESS_ARTIFACT = "fairness_report.html"
SUMMARY_ARTIFACT = "summary.json"
MODEL_CARD_ARTIFACTS = ("model_card.html", "model_card.md")
MODEL_CARD_FOLDER = "model_card"
"""Run artifact folder in which the training job stores the model card."""
MODEL_CARD_URL_TAG = "model_card_url"


@dataclass(frozen=True)
class VersionSummary:
    """One row of the model version list."""

    name: str
    version: str
    aliases: tuple[str, ...]
    created: dt.datetime
    signoff: str | None


@dataclass
class VersionCard:
    """The registry's record of one model version: tags, run metrics and artifacts."""

    name: str
    version: str
    aliases: tuple[str, ...]
    created: dt.datetime
    description: str
    run_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()

    @property
    def metric_tables(self) -> list[MetricTable]:
        order = self.params.get(ASOF_ORDER_PARAM, "")
        return metric_tables(self.metrics, tuple(filter(None, order.split(","))))

    @property
    def top_share(self) -> float | None:
        """Share of learners per as-of date that the ``_at_k_share`` metrics
        select, from the run's ``top_share`` parameter; None when not recorded."""
        return _number_param(self.params, "top_share")

    @property
    def k_per_unit(self) -> int | None:
        """Learners per unit and as-of date that the ``_at_k_per_unit`` metrics
        select, from the run's ``k_per_unit`` parameter; None when not recorded."""
        k = _number_param(self.params, "k_per_unit")
        return None if k is None else int(k)

    @property
    def scores_champion(self) -> bool:
        """Whether a metrics table has a row for the champion the run compared with."""
        return any(
            model == "champion"
            for table in self.metric_tables
            for model, _ in table.rows
        )

    @property
    def source(self) -> str | None:
        return self.tags.get("source")

    @property
    def training_data(self) -> str | None:
        return self.tags.get(TRAINING_DATA_TAG)

    @property
    def artifact_digest(self) -> str | None:
        return self.tags.get(ARTIFACT_DIGEST_TAG)

    @property
    def model_card_artifact(self) -> str | None:
        """Name of the first model card document stored with the run, if any."""
        return next(
            (a for a in MODEL_CARD_ARTIFACTS if self.stored_path(a) is not None), None
        )

    def stored_path(self, artifact: str) -> str | None:
        """Return the run artifact path of ``artifact``, or None if it is absent.

        The fairness report is the one stored with the version's audit (its
        ``fairness.report`` tag), which the promotion gate reads; ``ajoissa
        audit`` may have replaced the run's own report. A version without that
        tag shows the run's ``fairness_report.html``. A model card document is
        looked up in ``MODEL_CARD_FOLDER`` first, then at the top level. Other
        documents are looked up at the top level.
        """
        if artifact == FAIRNESS_ARTIFACT and self.tags.get(TAG_REPORT):
            return self.tags[TAG_REPORT]
        return stored_path(artifact, self.artifacts)

    @property
    def model_card_url(self) -> str | None:
        return self.tags.get(MODEL_CARD_URL_TAG)

    @property
    def signoff(self) -> dict[str, str] | None:
        values = {key: self.tags.get(tag) for key, tag in SIGNOFF_TAGS.items()}
        if values["decision"] is None:
            return None
        return {key: value or "" for key, value in values.items()}


def _number_param(params: dict[str, str], key: str) -> float | None:
    # The training run logs every setting as text, and an unset k as "None".
    try:
        return float(params[key])
    except (KeyError, ValueError):
        return None


def stored_path(artifact: str, artifacts: tuple[str, ...]) -> str | None:
    """Return the run artifact path of document ``artifact``, or None if absent.

    ``artifacts`` are the paths that :func:`_artifact_paths` lists. A model
    card document is looked up in ``MODEL_CARD_FOLDER`` first, then at the
    top level. Other documents are looked up at the top level.
    """
    candidates = [artifact]
    if artifact in MODEL_CARD_ARTIFACTS:
        candidates.insert(0, f"{MODEL_CARD_FOLDER}/{artifact}")
    return next((path for path in candidates if path in artifacts), None)


def model_card_document(run_id: str) -> str | None:
    """Return the name of the first model card document of the run, or None.

    Raises
    ------
    mlflow.exceptions.MlflowException
        If the run's artifacts cannot be listed.
    """
    artifacts = _artifact_paths(_client(), run_id)
    return next(
        (name for name in MODEL_CARD_ARTIFACTS if stored_path(name, artifacts)), None
    )


def model_card_path(name: str, version: str, document: str) -> str:
    """Return the path, relative to the server, of a version's model card page."""
    return (
        f"/ui/models/{quote(name, safe='')}/{quote(version, safe='')}/artifacts/"
        f"{document}"
    )


def _client():
    import mlflow

    configure_mlflow()
    return mlflow.MlflowClient()


def list_versions() -> list[VersionSummary]:
    """Return every version of every registered model, newest version first."""
    client = _client()
    summaries = []
    for model in client.search_registered_models():
        aliases_of: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases_of.setdefault(str(version), []).append(alias)
        for version in client.search_model_versions(f"name = '{model.name}'"):
            summaries.append(
                VersionSummary(
                    name=model.name,
                    version=str(version.version),
                    aliases=tuple(sorted(aliases_of.get(str(version.version), []))),
                    created=_from_millis(version.creation_timestamp),
                    signoff=(version.tags or {}).get(SIGNOFF_TAGS["decision"]),
                )
            )
    summaries.sort(key=lambda s: (s.name, -int(s.version)))
    return summaries


def version_card(name: str, version: str) -> VersionCard:
    """Return the model card of ``name`` version ``version``.

    Raises
    ------
    LookupError
        If the registry has no such version.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        found = client.get_model_version(name, version)
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise LookupError(f"no model {name!r} version {version!r}") from exc
    aliases = tuple(
        sorted(a for a, v in (model.aliases or {}).items() if str(v) == version)
    )
    card = VersionCard(
        name=name,
        version=version,
        aliases=aliases,
        created=_from_millis(found.creation_timestamp),
        description=found.description or "",
        run_id=found.run_id,
        tags=dict(found.tags or {}),
    )
    if found.run_id:
        try:
            run = client.get_run(found.run_id)
            card.metrics = dict(run.data.metrics)
            card.params = dict(run.data.params)
            card.artifacts = _artifact_paths(client, found.run_id)
        except MlflowException as exc:
            logger.warning("failed to read run %s: %s", found.run_id, exc)
    return card


@dataclass(frozen=True)
class MetricTable:
    """Metrics of one fold or as-of date: a row per model or baseline."""

    kind: str
    """``fold``, ``asof`` or ``other`` (names that follow neither pattern)."""
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]


METRIC_ORDER = (
    "roc_auc",
    "pr_auc",
    "precision_at_k_share",
    "recall_at_k_share",
    "precision_at_k_per_unit",
    "recall_at_k_per_unit",
    "precision_at_10pct",
    "recall_at_10pct",
    "brier",
    "ece",
)
"""Column order of the metric tables; metrics not listed follow by name."""


def metric_tables(
    metrics: dict[str, float], asof_order: tuple[str, ...] = ()
) -> list[MetricTable]:
    """Group run metrics into tables by fold and by as-of date.

    The training job logs ``fold.<fold>.<model>.<metric>`` for each temporal
    or cross-validation fold and ``<as-of>.<model>.<metric>`` for each as-of
    date of the latest fold. Other names go to one ``other`` table, a row each.
    Folds come first, then as-of dates in ``asof_order`` (the run's
    ``asof_order`` parameter, labels by date). Folds, and as-of dates that
    ``asof_order`` lacks (runs logged before it), are sorted by name with
    numbers compared as numbers (``day_30`` before ``day_120``).
    """
    position = {label: index for index, label in enumerate(asof_order)}
    grouped: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    other: list[tuple[str, tuple[float | None, ...]]] = []
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "fold":
            section, model, metric = ("fold", parts[1]), parts[2], parts[3]
        elif len(parts) == 3:
            section, model, metric = ("asof", parts[0]), parts[1], parts[2]
        else:
            other.append((key, (value,)))
            continue
        grouped.setdefault(section, {}).setdefault(model, {})[metric] = value
    tables = []

    def section_key(section: tuple[str, str]) -> tuple[bool, int, list]:
        kind, name = section
        return (kind != "fold", position.get(name, len(position)), _natural(name))

    for (kind, name), by_model in sorted(
        grouped.items(), key=lambda item: section_key(item[0])
    ):
        found = {metric for values in by_model.values() for metric in values}
        columns = [m for m in METRIC_ORDER if m in found]
        columns += sorted(found - set(METRIC_ORDER))
        # The model first, then the baselines by name.
        models = sorted(by_model, key=lambda m: (m != "model", m))
        rows = tuple(
            (model, tuple(by_model[model].get(c) for c in columns)) for model in models
        )
        tables.append(MetricTable(kind, name, tuple(columns), rows))
    if other:
        tables.append(MetricTable("other", "", ("value",), tuple(sorted(other))))
    return tables


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Return a sort key that orders the digit runs of ``name`` by value."""
    return [
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|\D+", name)
    ]


LABEL_WINDOW_PARAMS = ("label_rule_window_days", "label_window_days")
"""Run parameters with the label window in days: the study-right label rule's
window, else the withdrawal window of other sources ("None" when the label
counts any later withdrawal from the unit)."""


_label_windows: dict[tuple[str, str], int | None] = {}
"""Label windows read so far, by model name and version. A version never
changes its run, so an entry never goes stale."""


def label_window_days(name: str, version: str) -> int | None:
    """Return the label window in days of a model version, or None without one.

    A version whose label counts any withdrawal before its unit ends has no
    window. A version the registry cannot read also gives None, with a
    warning, and is read again on the next call.
    """
    from mlflow.exceptions import MlflowException

    key = (name, version)
    if key in _label_windows:
        return _label_windows[key]
    client = _client()
    try:
        found = client.get_model_version(name, version)
        params = client.get_run(found.run_id).data.params if found.run_id else {}
    except MlflowException as exc:
        logger.warning(
            "failed to read the label window of %s %s: %s", name, version, exc
        )
        return None
    window = None
    for param in LABEL_WINDOW_PARAMS:
        value = params.get(param)
        if value not in (None, "", "None"):
            window = int(value)
            break
    _label_windows[key] = window
    return window


def _artifact_paths(client, run_id: str) -> tuple[str, ...]:
    """Return the run's top-level artifact paths and those in ``MODEL_CARD_FOLDER``."""
    paths = []
    for item in client.list_artifacts(run_id):
        paths.append(item.path)
        if item.is_dir and item.path == MODEL_CARD_FOLDER:
            paths.extend(
                inner.path for inner in client.list_artifacts(run_id, item.path)
            )
    return tuple(paths)


def read_artifact(card: VersionCard, artifact: str) -> bytes | None:
    """Return a run artifact of the version, or None if it is absent.

    ``artifact`` is a document name; :meth:`VersionCard.stored_path` finds it.
    """
    import mlflow

    path = card.stored_path(artifact)
    if card.run_id is None or path is None:
        return None
    with tempfile.TemporaryDirectory(prefix="ajoissa-card-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=card.run_id, artifact_path=path, dst_path=tmp
        )
        return Path(local).read_bytes()


def record_signoff(
    name: str, version: str, reviewer: str, decision: str, reason: str
) -> dict[str, str]:
    """Store a sign-off as tags on the model version and return it.

    Raises
    ------
    ValueError
        If ``decision`` is not one of ``SIGNOFF_DECISIONS`` or ``reason`` is
        empty or longer than ``MAX_REASON_CHARS``.
    """
    if decision not in SIGNOFF_DECISIONS:
        raise ValueError(
            f"invalid decision {decision!r}: expected one of "
            f"{', '.join(SIGNOFF_DECISIONS)}"
        )
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise ValueError(
            f"invalid reason: expected 1 to {MAX_REASON_CHARS} characters, "
            f"got {len(reason)}"
        )
    values = {
        "decision": decision,
        "reviewer": reviewer,
        "reason": reason,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    client = _client()
    for key, tag in SIGNOFF_TAGS.items():
        client.set_model_version_tag(name, version, tag, values[key])
    logger.info("recorded sign-off %s for %s version %s", decision, name, version)
    return values


def _from_millis(millis: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp((millis or 0) / 1000, dt.UTC)
