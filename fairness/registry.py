"""Audit results and reviewer exceptions stored with a registered model version.

Both live in the MLflow run that produced the version, as artifacts under
``fairness/``, and are indexed by model version tags so they can be found from
the version alone:

``fairness.audit``
    Artifact path of the audit JSON (``fairness/audit-v<version>.json``).
``fairness.audit_sha256``
    SHA-256 of that JSON, so an exception is tied to the audit it was made for.
``fairness.policy_version``
    Policy version the audit was computed under.
``fairness.report``
    Artifact path of the HTML report, when one was logged.
``fairness.exception.*``
    The latest reviewer exception: ``reviewer``, ``reason``, ``policy_version``,
    ``audit_sha256`` and ``recorded_at``. Every exception is also kept as an
    artifact ``fairness/exception-v<version>-<timestamp>.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.store import configure_mlflow

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "fairness"
TAG_AUDIT = "fairness.audit"
TAG_AUDIT_SHA = "fairness.audit_sha256"
TAG_POLICY = "fairness.policy_version"
TAG_REPORT = "fairness.report"
TAG_EXCEPTION = "fairness.exception."
MAX_TAG_CHARS = 4000
"""Tag values are cut to this length to keep the registry listing short (MLflow
3.17 accepts up to 100,000). Long texts are stored in full as artifacts."""


class AuditNotFoundError(LookupError):
    """The model version has no stored audit."""


@dataclass(frozen=True)
class ReviewerException:
    """A named reviewer's decision to promote a version despite a breach."""

    reviewer: str
    reason: str
    policy_version: str
    audit_sha256: str
    recorded_at: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def mlflow_client() -> Any:
    import mlflow

    configure_mlflow()
    return mlflow.MlflowClient()


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, indent=1, default=str).encode("utf-8")


def resolve_version(model_name: str, version_or_alias: str) -> str:
    """Return the version number that ``version_or_alias`` names.

    Raises
    ------
    LookupError
        If the model, version or alias does not exist in the registry.
    """
    from mlflow.exceptions import MlflowException

    client = mlflow_client()
    try:
        if version_or_alias.isdigit():
            return str(client.get_model_version(model_name, version_or_alias).version)
        return str(
            client.get_model_version_by_alias(model_name, version_or_alias).version
        )
    except MlflowException as exc:
        raise LookupError(
            f"model {model_name!r} has no version or alias {version_or_alias!r} in the "
            "registry; list versions with `mlflow ui` or check AJOISSA_HOME"
        ) from exc


def log_json_artifact(model_name: str, version: str, name: str, data: dict) -> str:
    """Log ``data`` as ``fairness/<name>`` in the version's run; return the path."""
    run_id = mlflow_client().get_model_version(model_name, version).run_id
    return _log_file(run_id, name, _canonical(data))


def _log_file(run_id: str, name: str, data: bytes) -> str:
    client = mlflow_client()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    return f"{ARTIFACT_DIR}/{name}"


def store_audit(
    model_name: str,
    version: str,
    payload: dict[str, Any],
    report: Path | None = None,
) -> str:
    """Log the audit JSON (and report) with the version; return the JSON's SHA-256.

    ``payload`` must contain ``policy_version``. Storing again replaces the
    version's audit and report (without ``report``, the earlier report's tag
    is removed), and exceptions recorded for the earlier audit stop counting.
    """
    client = mlflow_client()
    model_version = client.get_model_version(model_name, version)
    run_id = model_version.run_id
    data = _canonical(payload)
    digest = hashlib.sha256(data).hexdigest()
    audit_path = _log_file(run_id, f"audit-v{version}.json", data)
    client.set_model_version_tag(model_name, version, TAG_AUDIT, audit_path)
    client.set_model_version_tag(model_name, version, TAG_AUDIT_SHA, digest)
    client.set_model_version_tag(
        model_name, version, TAG_POLICY, str(payload["policy_version"])
    )
    if report is not None:
        report_path = _log_file(run_id, f"report-v{version}.html", report.read_bytes())
        client.set_model_version_tag(model_name, version, TAG_REPORT, report_path)
    elif TAG_REPORT in model_version.tags:
        # A report of the replaced audit would no longer describe the audit.
        client.delete_model_version_tag(model_name, version, TAG_REPORT)
    logger.info("stored fairness audit of %s version %s", model_name, version)
    return digest


def load_audit(model_name: str, version: str) -> tuple[dict[str, Any], str]:
    """Return the stored audit payload of a version and its SHA-256.

    Raises
    ------
    AuditNotFoundError
        If the version has no stored audit.
    ValueError
        If the stored JSON does not match its recorded SHA-256.
    """
    model_version = mlflow_client().get_model_version(model_name, version)
    return load_version_audit(model_name, version, model_version)


def load_version_audit(
    model_name: str, version: str, model_version: Any
) -> tuple[dict[str, Any], str]:
    """Return the stored audit payload and its SHA-256 for a fetched version.

    ``model_version`` is the registry's record of ``model_name`` version
    ``version`` (an MLflow ``ModelVersion``), so that a caller that has it
    need not fetch it again. Raises as :func:`load_audit` does.
    """
    import mlflow

    tags = dict(model_version.tags)
    if TAG_AUDIT not in tags:
        raise AuditNotFoundError(
            f"{model_name} version {version} has no stored fairness audit; run "
            f"`ajoissa audit --model {model_name}@{version} --out report.html`"
        )
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            run_id=model_version.run_id, artifact_path=tags[TAG_AUDIT], dst_path=folder
        )
        data = Path(local).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != tags.get(TAG_AUDIT_SHA):
        raise ValueError(
            f"stored audit {tags[TAG_AUDIT]} of {model_name} version {version} has "
            f"SHA-256 {digest}, but the version records {tags.get(TAG_AUDIT_SHA)}; "
            "rerun `ajoissa audit` for this version"
        )
    return json.loads(data), digest


def record_exception(
    model_name: str, version: str, *, reviewer: str, reason: str
) -> ReviewerException:
    """Record a reviewer exception for the version's current stored audit.

    Raises
    ------
    ValueError
        If ``reviewer`` or ``reason`` is blank, or the reason is shorter than 20
        characters.
    AuditNotFoundError
        If the version has no stored audit to make an exception for.
    """
    reviewer, reason = reviewer.strip(), reason.strip()
    if not reviewer:
        raise ValueError("reviewer is blank; give the reviewer's full name")
    if len(reason) < 20:
        raise ValueError(
            f"reason {reason!r} is shorter than 20 characters; say why the breach "
            "is acceptable for this version"
        )
    payload, digest = load_audit(model_name, version)
    exception = ReviewerException(
        reviewer=reviewer,
        reason=reason,
        policy_version=str(payload["policy_version"]),
        audit_sha256=digest,
        recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    client = mlflow_client()
    run_id = client.get_model_version(model_name, version).run_id
    stamp = exception.recorded_at.replace(":", "").replace("+0000", "Z")
    _log_file(
        run_id,
        f"exception-v{version}-{stamp}.json",
        _canonical(exception.to_dict()),
    )
    for key, value in exception.to_dict().items():
        client.set_model_version_tag(
            model_name, version, TAG_EXCEPTION + key, value[:MAX_TAG_CHARS]
        )
    logger.info("recorded a fairness exception for %s version %s", model_name, version)
    return exception


def read_exception(model_name: str, version: str) -> ReviewerException | None:
    """Return the version's latest recorded exception, or ``None``."""
    tags = dict(mlflow_client().get_model_version(model_name, version).tags)
    return exception_from_tags(tags)


def exception_from_tags(tags: Mapping[str, str]) -> ReviewerException | None:
    """Return the latest exception recorded in a version's ``tags``, or ``None``."""
    fields = ReviewerException.__dataclass_fields__
    values = {name: tags.get(TAG_EXCEPTION + name) for name in fields}
    if values["reviewer"] is None:
        return None
    return ReviewerException(**{k: str(v or "") for k, v in values.items()})


def set_version_tags(model_name: str, version: str, tags: dict[str, str]) -> None:
    """Set model version tags, cutting each value to ``MAX_TAG_CHARS``."""
    client = mlflow_client()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value[:MAX_TAG_CHARS])
