"""The promotion gate: a version's stored audit against the reviewers' policy.

:func:`check_gate` never recomputes the audit. It reads the audit stored with the
version by ``ajoissa audit`` (or by the main job), checks it against the current
policy file and honours a reviewer exception recorded for that same audit and
policy version. It stores its decision with the version: in full as an artifact
``fairness/gate-v<version>-<time>.json`` and in short as tags ``fairness.gate.*``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fairness.policy import (
    FairnessPolicy,
    evaluate_policy,
    load_policy,
    meets_policy_sentence,
)
from fairness.registry import (
    AuditNotFoundError,
    ReviewerException,
    exception_from_tags,
    load_version_audit,
    log_json_artifact,
    mlflow_client,
    set_version_tags,
)

logger = logging.getLogger(__name__)

TAG_GATE = "fairness.gate."


@dataclass
class GateDecision:
    """Whether a model version may be promoted, and why.

    ``passed`` is true when the audit meets the policy, or when it breaches it
    and a reviewer exception was recorded for this audit under this policy
    version (``exception`` is then set), unless the audit assessed no
    comparison. ``reasons`` lists every breach, warning
    and the exception in plain sentences.
    """

    passed: bool
    reasons: list[str]
    model_name: str = ""
    version: str = ""
    policy_version: str | None = None
    breaches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exception: ReviewerException | None = None
    audit_sha256: str | None = None
    audit_policy_version: str | None = None
    """Policy version the stored audit was computed under, or None without an audit."""
    nothing_assessed: bool = False
    """Whether the stored audit could not assess any comparison. No reviewer
    exception applies to such an audit."""
    recorded_exception: ReviewerException | None = None
    """Latest exception recorded for the version, honoured or not. It is left
    out of :meth:`to_dict`, and so of the stored decision."""

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__ | {
            "exception": self.exception.to_dict() if self.exception else None
        }
        del data["recorded_exception"]
        return dict(data)


def check_gate(model_name: str, version: str) -> GateDecision:
    """Decide whether ``model_name`` version ``version`` may be promoted.

    Stores the decision with the version (see :func:`evaluate_gate`, which
    does not).

    Raises
    ------
    LookupError
        If the model version does not exist.
    fairness.policy.PolicyError
        If the policy file is missing or invalid.
    """
    decision = evaluate_gate(model_name, version)
    _store(decision)
    logger.info(
        "fairness gate for %s version %s: passed=%s, %d breaches, %d warnings",
        model_name,
        decision.version,
        decision.passed,
        len(decision.breaches),
        len(decision.warnings),
    )
    return decision


def evaluate_gate(model_name: str, version: str) -> GateDecision:
    """Decide whether a version may be promoted, without storing the decision.

    Raises
    ------
    LookupError
        If the model version does not exist.
    fairness.policy.PolicyError
        If the policy file is missing or invalid.
    """
    from mlflow.exceptions import MlflowException

    version = str(version)
    try:
        model_version = mlflow_client().get_model_version(model_name, version)
    except MlflowException as exc:
        raise LookupError(
            f"model {model_name!r} has no version {version!r} in the registry"
        ) from exc
    exception = exception_from_tags(dict(model_version.tags))
    policy = load_policy()
    try:
        payload, digest = load_version_audit(model_name, version, model_version)
    except AuditNotFoundError as exc:
        return GateDecision(
            passed=False,
            reasons=[str(exc)],
            model_name=model_name,
            version=version,
            policy_version=policy.version,
            breaches=[str(exc)],
            recorded_exception=exception,
        )

    breaches: list[str] = []
    warnings: list[str] = []
    if str(payload["policy_version"]) != policy.version:
        breaches.append(
            f"the stored audit was computed under policy {payload['policy_version']}, "
            f"but the policy in force is {policy.version}; rerun `ajoissa audit`"
        )
    breaches += _coverage_breaches(payload["audit"], policy)
    findings = evaluate_policy(payload["audit"], policy)
    breaches += findings.breaches
    warnings += findings.warnings
    evaluation_data = payload.get("evaluation_data")
    if evaluation_data and evaluation_data.get("matches_training_data") is not True:
        warnings.append(
            "the stored audit was computed on data that is not known to be the "
            "version's evaluation data, and was stored on request with "
            "`ajoissa audit --replace-stored-audit-with-other-data`"
        )

    honoured = None
    reasons = [f"breach: {text}" for text in breaches]
    reasons += [f"warning: {text}" for text in warnings]
    if breaches and exception is not None:
        if findings.nothing_assessed:
            reasons.append(
                f"the exception by {exception.reviewer} does not apply, because an "
                "exception accepts a measured disparity and this audit measured none"
            )
        elif (
            exception.audit_sha256 == digest
            and exception.policy_version == policy.version
        ):
            honoured = exception
            reasons.append(
                f"exception recorded by {exception.reviewer} on "
                f"{exception.recorded_at}: {exception.reason}"
            )
        else:
            reasons.append(
                f"an exception by {exception.reviewer} was recorded for another audit "
                "or policy version, so it does not apply"
            )
    passed = not breaches or honoured is not None
    if not breaches:
        reasons.insert(0, meets_policy_sentence(policy.version, findings))
    return GateDecision(
        passed=passed,
        reasons=reasons,
        model_name=model_name,
        version=version,
        policy_version=policy.version,
        breaches=breaches,
        warnings=warnings,
        exception=honoured,
        audit_sha256=digest,
        audit_policy_version=str(payload["policy_version"]),
        recorded_exception=exception,
        nothing_assessed=findings.nothing_assessed,
    )


def _coverage_breaches(audit: dict[str, Any], policy: FairnessPolicy) -> list[str]:
    """List the ways the stored audit covers less than the policy requires."""
    breaches = []
    if int(audit["min_group_size"]) < policy.min_group_learners:
        breaches.append(
            f"the audit shows groups from {audit['min_group_size']} learners, below "
            f"the policy's minimum of {policy.min_group_learners}"
        )
    covered = set(audit["attributes"]) | set(audit.get("absent_attributes", []))
    missing = [a for a in policy.sensitive_attributes if a not in covered]
    if missing:
        breaches.append(
            f"the audit leaves out the policy's attributes {missing}, which the "
            "source has; rerun `ajoissa audit`"
        )
    return breaches


def _store(decision: GateDecision) -> None:
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    stamp = checked_at.replace(":", "").replace("+0000", "Z")
    artifact = log_json_artifact(
        decision.model_name,
        decision.version,
        f"gate-v{decision.version}-{stamp}.json",
        decision.to_dict() | {"checked_at": checked_at},
    )
    set_version_tags(
        decision.model_name,
        decision.version,
        {
            TAG_GATE + "passed": str(decision.passed).lower(),
            TAG_GATE + "policy_version": str(decision.policy_version),
            TAG_GATE + "checked_at": checked_at,
            TAG_GATE + "decision": artifact,
            TAG_GATE + "reasons": "\n".join(decision.reasons),
            TAG_GATE + "exception_reviewer": (
                decision.exception.reviewer if decision.exception else ""
            ),
        },
    )
