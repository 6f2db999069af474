"""Where models are tracked and registered, and how a registered model is loaded.

By default everything is embedded in one folder, ``AJOISSA_HOME`` (default
``./ajoissa-store``): MLflow's tracking and registry in ``mlflow.db`` (SQLite)
and artifacts in ``artifacts/``. Setting ``MLFLOW_TRACKING_URI`` points both the
training and serving sides at an MLflow server instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb

from models.calibration import Calibration
from models.spec import FeatureSpec

logger = logging.getLogger(__name__)

MODEL_NAME_PREFIX = "ajoissa-"
"""Registered models are named ``ajoissa-<source>`` unless a name is given, because
each source has its own feature set."""
DEFAULT_MODEL_NAME = "ajoissa-oulad"
EXPERIMENT_NAME = "ajoissa"
CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_DIGEST_TAG = "artifact_sha256"
"""Model version tag with the SHA-256 digest of the model's artifact files, set at
registration and checked before the model is loaded for serving."""
ARTIFACT_FILES_TAG = "artifact_files_sha256"
"""Model version tag with a JSON object that maps each artifact file's path,
relative to the version's folder, to the SHA-256 of its content. Set at
registration so that a failed integrity check can name the files that changed."""
TRAINING_DATA_TAG = "training_data_sha256"
"""Model version tag with a SHA-256 fingerprint of the feature rows (with labels)
that the main job built before training."""
ASOF_ORDER_PARAM = "asof_order"
"""Training run parameter with the as-of labels of the run's metrics in date
order, comma-separated."""
CHALLENGER_REASON_TAG = "challenger_reason"
"""Model version tag with the reason the main job registered the version as the
challenger and not as the champion."""


class ModelIntegrityError(RuntimeError):
    """Raised when a model's artifact files do not match the digest recorded at
    registration, or no digest was recorded."""


def home_dir() -> Path:
    """Return the folder of the embedded store, from ``AJOISSA_HOME`` if set."""
    return Path(os.environ.get("AJOISSA_HOME", "ajoissa-store")).resolve()


def tracking_uri() -> str:
    """Return the MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or the embedded SQLite file."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    return f"sqlite:///{home_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Return the artifact location for new experiments in the embedded store."""
    return (home_dir() / "artifacts").as_uri()


_INITIALISED: set[str] = set()


def _initialise_sqlite(uri: str) -> None:
    """Create or migrate the SQLite store's tables while holding a file lock.

    MLflow creates and migrates the tables when a store is first opened; two
    processes doing that at once on a new file fail half-way through the
    migration. The lock makes the first process finish before the second looks.
    """
    # NOTE: fcntl locks exist on POSIX systems only; on Windows this import fails.
    import fcntl

    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    lock_path = home_dir() / "mlflow.db.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            SqlAlchemyStore(uri, artifact_root())
            RegistryStore(uri)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    _INITIALISED.add(uri)


def configure_mlflow() -> str:
    """Point MLflow at the store, creating the embedded folder when it is used."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        home_dir().mkdir(parents=True, exist_ok=True)
        if uri not in _INITIALISED:
            _initialise_sqlite(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version loaded for scoring."""

    name: str
    version: str
    alias: str | None
    model: lgb.LGBMClassifier
    spec: FeatureSpec
    run_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    """Metrics logged in the MLflow run that produced the model."""
    calibration: Calibration | None = None
    """Calibration fitted on a later held-out period, from the model metadata."""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def artifact_file_digests(directory: Path) -> dict[str, str]:
    """Return the SHA-256 hex digest of each file under ``directory``.

    Keys are paths relative to ``directory`` with ``/`` between parts, in sorted
    order.
    """
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(p for p in directory.rglob("*") if p.is_file())
    }


def artifact_digest(directory: Path) -> str:
    """Return the SHA-256 digest of every file under ``directory``.

    The digest covers each file's path relative to ``directory`` and its content,
    in sorted path order, so renaming, editing, adding or removing a file changes it.
    """
    return _combined_digest(artifact_file_digests(directory))


def _combined_digest(file_digests: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for relative, file_digest in file_digests.items():
        digest.update(relative.encode("utf-8"))
        digest.update(b"\0")
        digest.update(bytes.fromhex(file_digest))
    return digest.hexdigest()


def champion_version(name: str = DEFAULT_MODEL_NAME, alias: str = CHAMPION) -> str:
    """Return the version number that carries ``alias``, without loading the model.

    Raises
    ------
    LookupError
        If the registry has no such model or alias.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = configure_mlflow()
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        missing = f"no model {name!r} with alias {alias!r} in the registry at {uri}"
        if alias == CHAMPION:
            challenger = _challenger_note(client, name)
            if challenger is not None:
                raise LookupError(f"{missing}. {challenger}") from exc
        raise LookupError(
            f"{missing}; run `ajoissa run` first or set MLFLOW_TRACKING_URI / "
            "AJOISSA_HOME"
        ) from exc
    return str(version.version)


def _challenger_note(client: Any, name: str) -> str | None:
    """Return what to do about model ``name``'s challenger, or None without one.

    The note gives the reason the version was not made champion, as the main
    job recorded it in :data:`CHALLENGER_REASON_TAG`.
    """
    from mlflow.exceptions import MlflowException

    try:
        challenger = client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        return None
    reason = challenger.tags.get(CHALLENGER_REASON_TAG)
    explanation = (
        f"It was not made champion because {reason}."
        if reason
        else "Its tags do not record why it was not made champion."
    )
    return (
        f"Version {challenger.version} is its {CHALLENGER!r}, which is not served "
        f"or scored. {explanation} Check the version's figures and model card, then make "
        f"it the champion with `ajoissa promote --model-name {name}`, which "
        "requires it to beat every baseline and pass the fairness gate; or "
        "register a better version with `ajoissa run`"
    )


REGISTER_AGAIN = (
    "Register the model again with `ajoissa run`, or move the alias back to a "
    "version that passes the check"
)
"""Next step in the error of a version that fails its integrity check, for loaders
such as the server."""


def _check_artifact_files(
    name: str, version: str, directory: Path, tags: dict[str, str], remedy: str
) -> None:
    """Compare the digest of the files in ``directory`` with the version's tag.

    Raises
    ------
    ModelIntegrityError
        If the version has no ``ARTIFACT_DIGEST_TAG`` tag or the files do not
        match it. The message ends with ``remedy``, a sentence without its
        full stop.
    """
    expected = tags.get(ARTIFACT_DIGEST_TAG)
    if not expected:
        raise ModelIntegrityError(
            f"model {name} version {version} has no {ARTIFACT_DIGEST_TAG} tag, so "
            f"its artifact files cannot be verified. {remedy}"
        )
    found = artifact_file_digests(directory)
    actual = _combined_digest(found)
    if actual != expected:
        raise ModelIntegrityError(
            f"model {name} version {version} failed its integrity check: the "
            f"artifact files have SHA-256 {actual}, but {expected} was recorded at "
            f"registration (tag {ARTIFACT_DIGEST_TAG}). "
            f"{_changed_files(found, tags)}. {remedy}"
        )


SHORT_DIGEST_LENGTH = 12
"""Hex digits of a file's SHA-256 shown in an integrity error."""


def _changed_files(found: dict[str, str], tags: dict[str, str]) -> str:
    """Return a sentence, without its full stop, naming the files that differ.

    ``found`` maps the downloaded files to their digests, which are compared
    with the per-file digests recorded in ``ARTIFACT_FILES_TAG``.
    """
    recorded_text = tags.get(ARTIFACT_FILES_TAG)
    if not recorded_text:
        return (
            "The files were changed after registration. The version has no "
            f"{ARTIFACT_FILES_TAG} tag, as versions registered before Ajoissa "
            "recorded per-file digests have none, so the changed files cannot be "
            "named"
        )
    try:
        recorded = json.loads(recorded_text)
    except json.JSONDecodeError:
        recorded = None
    if not isinstance(recorded, dict):
        return (
            "The files were changed after registration. The version's "
            f"{ARTIFACT_FILES_TAG} tag is not a JSON object of file digests, so "
            "the changed files cannot be named"
        )
    problems = []
    for relative in sorted(set(recorded) | set(found)):
        before = str(recorded.get(relative, ""))[:SHORT_DIGEST_LENGTH]
        after = found.get(relative, "")[:SHORT_DIGEST_LENGTH]
        if relative not in found:
            problems.append(f"{relative} is missing (recorded {before})")
        elif relative not in recorded:
            problems.append(f"{relative} was added (found {after})")
        elif recorded[relative] != found[relative]:
            problems.append(f"{relative} changed (recorded {before}, found {after})")
    if not problems:
        return (
            f"Every file matches its digest in the {ARTIFACT_FILES_TAG} tag, so "
            f"that tag or the {ARTIFACT_DIGEST_TAG} tag was changed after "
            "registration"
        )
    return "Files changed after registration: " + "; ".join(problems)


def verify_version(name: str, version: str, remedy: str = REGISTER_AGAIN) -> None:
    """Download the files of ``name`` version ``version`` and check their digest.

    This is the check that :func:`load_registered` makes before it loads a
    model, for callers that need the verdict without the model.

    Raises
    ------
    LookupError
        If the registry has no such version.
    ModelIntegrityError
        If the version has no digest tag or its files do not match it. The
        message ends with ``remedy``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    try:
        found = mlflow.MlflowClient().get_model_version(name, version)
    except MlflowException as exc:
        raise LookupError(
            f"no model {name!r} version {version!r} in the registry"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="ajoissa-verify-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version}", dst_path=tmp
            )
        )
        _check_artifact_files(name, version, local, dict(found.tags), remedy)


def load_registered(
    name: str = DEFAULT_MODEL_NAME, alias: str = CHAMPION
) -> LoadedModel:
    """Load the model version that carries ``alias`` after checking its digest.

    The artifact files are downloaded to a temporary folder, their digest is
    compared with the version's ``ARTIFACT_DIGEST_TAG`` tag, and the model is
    loaded from those same files, so the checked bytes are the loaded bytes.

    Raises
    ------
    LookupError
        If the registry has no such model or alias.
    ModelIntegrityError
        If the version has no digest tag or its files do not match it.
    """
    import mlflow
    from mlflow.models import Model

    version_number = champion_version(name, alias)
    client = mlflow.MlflowClient()
    version = client.get_model_version(name, version_number)
    tags = dict(version.tags)
    model_uri = f"models:/{name}/{version_number}"
    with tempfile.TemporaryDirectory(prefix="ajoissa-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        _check_artifact_files(name, version_number, local, tags, REGISTER_AGAIN)
        metadata = Model.load(str(local / "MLmodel")).metadata or {}
        spec = FeatureSpec.from_dict(metadata["feature_spec"])
        calibration = Calibration.from_dict(metadata.get("calibration"))
        model = mlflow.lightgbm.load_model(str(local))
    metrics: dict[str, float] = {}
    if version.run_id:
        metrics = dict(client.get_run(version.run_id).data.metrics)
    logger.info("loaded model %s version %s (alias %s)", name, version_number, alias)
    return LoadedModel(
        name=name,
        version=version_number,
        alias=alias,
        model=model,
        spec=spec,
        run_id=version.run_id,
        tags=tags,
        metrics=metrics,
        calibration=calibration,
    )


def champion_model_names() -> list[str]:
    """Return the names of registered models that have a ``champion`` version."""
    import mlflow

    configure_mlflow()
    client = mlflow.MlflowClient()
    return sorted(
        model.name
        for model in client.search_registered_models()
        if CHAMPION in (model.aliases or {})
    )


def _challenger_notes() -> list[str]:
    """Return, per registered model with a ``challenger`` version, what to do about it."""
    import mlflow

    configure_mlflow()
    client = mlflow.MlflowClient()
    names = sorted(
        model.name
        for model in client.search_registered_models()
        if CHALLENGER in (model.aliases or {})
    )
    notes = []
    for name in names:
        note = _challenger_note(client, name)
        if note is not None:
            notes.append(f"Model {name!r}: {note}.")
    return notes


def resolve_model_name(name: str | None) -> str:
    """Return ``name``, or the only registered model with a champion if ``name`` is None.

    Raises
    ------
    LookupError
        If ``name`` is None and there is not exactly one such model.
    """
    if name:
        return name
    names = champion_model_names()
    if len(names) == 1:
        return names[0]
    if not names:
        notes = _challenger_notes()
        if notes:
            raise LookupError(
                f"no registered model has a {CHAMPION!r} version in "
                f"{tracking_uri()}. " + " ".join(notes)
            )
        raise LookupError(
            f"no registered model has a {CHAMPION!r} version in {tracking_uri()}; "
            "run `ajoissa run` first"
        )
    raise LookupError(
        f"several registered models have a {CHAMPION!r} version: {', '.join(names)}; "
        "choose one with --model-name"
    )
