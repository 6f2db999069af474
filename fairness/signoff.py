"""An ethics reviewer's sign-off on a model version, kept as registry tags.

A reviewer reads the fairness report and the model card, then approves or
rejects the version with a reason. The decision is stored as tags on the MLflow
model version (``SIGNOFF_TAGS``), so it travels with the version. The review
screens record it; :func:`training.promotion.promote` reads it: a rejection
blocks promotion, and a missing approval blocks it when the caller requires one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SIGNOFF_DECISIONS = ("approve", "reject")
MAX_REASON_CHARS = 1000
SIGNOFF_TAGS = {
    "decision": "signoff_decision",
    "reviewer": "signoff_reviewer",
    "reason": "signoff_reason",
    "time": "signoff_time",
}
"""Model version tags that contain the latest sign-off."""


@dataclass(frozen=True)
class Signoff:
    """The latest sign-off of one model version."""

    decision: str
    reviewer: str
    reason: str
    time: str

    @property
    def approved(self) -> bool:
        return self.decision == "approve"


def read_signoff(tags: Mapping[str, str] | None) -> Signoff | None:
    """Return the sign-off stored in a model version's tags, or None without one."""
    tags = tags or {}
    decision = tags.get(SIGNOFF_TAGS["decision"])
    if decision is None:
        return None
    return Signoff(
        decision=decision,
        reviewer=tags.get(SIGNOFF_TAGS["reviewer"], ""),
        reason=tags.get(SIGNOFF_TAGS["reason"], ""),
        time=tags.get(SIGNOFF_TAGS["time"], ""),
    )


def signoff_reasons(signoff: Signoff | None, *, required: bool) -> list[str]:
    """Return the reasons the sign-off blocks promotion; empty when it does not.

    A rejection always blocks. With ``required``, so does a missing approval.
    """
    if signoff is not None and signoff.decision not in SIGNOFF_DECISIONS:
        return [
            f"invalid sign-off decision {signoff.decision!r} on the version: "
            f"expected one of {', '.join(SIGNOFF_DECISIONS)}; record a new sign-off"
        ]
    if signoff is not None and not signoff.approved:
        return [
            f"reviewer {signoff.reviewer or '(unnamed)'} rejected this version on "
            f"{signoff.time or 'an unknown date'}: {signoff.reason}"
        ]
    if required and signoff is None:
        return [
            "no reviewer sign-off recorded; a reviewer approves the version on its "
            "model page in the review screens"
        ]
    return []
