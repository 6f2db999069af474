"""The reviewers' fairness policy: what is audited and which tolerances gate a model.

The policy lives in a versioned YAML file, by default ``fairness/policy.yaml``
in this package; ``AJOISSA_FAIRNESS_POLICY`` points at another file. Its
``version`` is stored with every audit and reviewer exception, so a decision can
always be traced to the rules it was made under.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fairness.comparison import COMPARED_METRICS, LARGEST, BootstrapSettings

logger = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.yaml")
POLICY_ENV = "AJOISSA_FAIRNESS_POLICY"

INTERVAL_RULES = ("interval_outside", "point_estimate", "interval_inside")
MEASURES = ("ratio", "difference")
UNDEFINED_ACTIONS = ("warn", "fail")


class PolicyError(ValueError):
    """The policy file is missing, unreadable or has an invalid value."""


@dataclass(frozen=True)
class ToleranceRule:
    """One tolerance: ``measure`` of ``metric`` against the reference in [lower, upper]."""

    metric: str
    measure: str
    lower: float
    upper: float

    def describe(self) -> str:
        return f"{self.metric} {self.measure} within [{self.lower:g}, {self.upper:g}]"


@dataclass(frozen=True)
class FairnessPolicy:
    """A parsed and checked policy file."""

    version: str
    path: str
    sensitive_attributes: list[str]
    intersections: list[list[str]]
    min_group_learners: int
    reference_group: str
    reference_overrides: dict[str, str]
    bootstrap: BootstrapSettings
    interval_rule: str
    undefined: str
    rules: list[ToleranceRule] = field(default_factory=list)
    mitigation_attribute: str | None = None

    def reference_for(self, attribute: str) -> str:
        """Return the reference rule or group name for one attribute."""
        return self.reference_overrides.get(attribute, self.reference_group)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": self.path,
            "sensitive_attributes": self.sensitive_attributes,
            "intersections": self.intersections,
            "min_group_learners": self.min_group_learners,
            "reference_group": self.reference_group,
            "reference_overrides": self.reference_overrides,
            "bootstrap": self.bootstrap.to_dict(),
            "interval_rule": self.interval_rule,
            "undefined": self.undefined,
            "rules": [rule.__dict__ for rule in self.rules],
            "mitigation_attribute": self.mitigation_attribute,
        }


def policy_path() -> Path:
    """Return the policy file in use: ``AJOISSA_FAIRNESS_POLICY`` or the packaged one."""
    configured = os.environ.get(POLICY_ENV)
    return Path(configured) if configured else DEFAULT_POLICY_PATH


def load_policy(path: Path | None = None) -> FairnessPolicy:
    """Read and check a policy file.

    Raises
    ------
    PolicyError
        Naming the file and the key when the file is missing, not YAML, or a
        value is missing or invalid.
    """
    path = Path(path) if path is not None else policy_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(
            f"fairness policy file {path} not found; restore it or set {POLICY_ENV}"
        ) from exc
    except yaml.YAMLError as exc:
        raise PolicyError(
            f"fairness policy file {path} is not valid YAML: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise PolicyError(f"fairness policy file {path} must contain a mapping")
    checker = _Checker(path)
    policy = checker.policy(data)
    logger.info("loaded fairness policy %s from %s", policy.version, path)
    return policy


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, message: str) -> PolicyError:
        return PolicyError(f"fairness policy file {self.path}, key {key}: {message}")

    def get(self, data: dict[str, Any], key: str, prefix: str = "") -> Any:
        if key not in data:
            raise self.fail(prefix + key, "missing; add it (see fairness/policy.yaml)")
        return data[key]

    def names(self, value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise self.fail(key, f"must be a list of names, got {value!r}")
        return list(value)

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {value!r}")
        return float(value)

    def choice(self, value: Any, key: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(key, f"must be one of {list(options)}, got {value!r}")
        return str(value)

    def policy(self, data: dict[str, Any]) -> FairnessPolicy:
        version = self.get(data, "version")
        if not isinstance(version, str | int | float) or not str(version).strip():
            raise self.fail("version", f"must be a non-empty string, got {version!r}")
        audit = self.get(data, "audit")
        gate = self.get(data, "gate")
        attributes = self.names(
            self.get(audit, "sensitive_attributes", "audit."),
            "audit.sensitive_attributes",
        )
        intersections = []
        for index, members in enumerate(audit.get("intersections") or []):
            key = f"audit.intersections[{index}]"
            members = self.names(members, key)
            if len(members) < 2 or not set(members) <= set(attributes):
                raise self.fail(
                    key,
                    f"{members} must name two or more of sensitive_attributes",
                )
            intersections.append(members)
        min_learners = self.get(audit, "min_group_learners", "audit.")
        if isinstance(min_learners, bool) or not isinstance(min_learners, int):
            raise self.fail(
                "audit.min_group_learners", f"must be an int, got {min_learners!r}"
            )
        if min_learners < 1:
            raise self.fail(
                "audit.min_group_learners", f"must be at least 1, got {min_learners}"
            )
        overrides = audit.get("reference_overrides") or {}
        if not isinstance(overrides, dict):
            raise self.fail("audit.reference_overrides", "must be a mapping")
        boot = audit.get("bootstrap") or {}
        try:
            bootstrap = BootstrapSettings(
                replicates=int(boot.get("replicates", 200)),
                confidence=float(boot.get("confidence", 0.95)),
                seed=int(boot.get("seed", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise self.fail("audit.bootstrap", str(exc)) from exc
        return FairnessPolicy(
            version=str(version),
            path=str(self.path),
            sensitive_attributes=attributes,
            intersections=intersections,
            min_group_learners=min_learners,
            reference_group=str(audit.get("reference_group", LARGEST)),
            reference_overrides={str(k): str(v) for k, v in overrides.items()},
            bootstrap=bootstrap,
            interval_rule=self.choice(
                self.get(gate, "interval_rule", "gate."),
                "gate.interval_rule",
                INTERVAL_RULES,
            ),
            undefined=self.choice(
                gate.get("undefined", "warn"), "gate.undefined", UNDEFINED_ACTIONS
            ),
            rules=self.rules(self.get(gate, "rules", "gate.")),
            mitigation_attribute=audit.get("mitigation_attribute"),
        )

    def rules(self, value: Any) -> list[ToleranceRule]:
        if not isinstance(value, list) or not value:
            raise self.fail("gate.rules", "must be a non-empty list")
        rules = []
        for index, rule in enumerate(value):
            key = f"gate.rules[{index}]"
            if not isinstance(rule, dict):
                raise self.fail(key, f"must be a mapping, got {rule!r}")
            metric = self.choice(rule.get("metric"), f"{key}.metric", COMPARED_METRICS)
            measure = self.choice(rule.get("measure"), f"{key}.measure", MEASURES)
            lower = self.number(rule.get("lower"), f"{key}.lower")
            upper = self.number(rule.get("upper"), f"{key}.upper")
            if lower >= upper:
                raise self.fail(key, f"lower {lower} must be below upper {upper}")
            rules.append(ToleranceRule(metric, measure, lower, upper))
        return rules


@dataclass
class PolicyFindings:
    """Outcome of checking one stored audit against a policy."""

    breaches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    # Comparisons without a value or interval to test: counted in ``checked``.
    not_assessed: int = 0
    # Comparisons whose estimate is outside the band although the interval
    # reaches into it (no breach under ``interval_outside``).
    outside_band: int = 0

    @property
    def assessed(self) -> int:
        return self.checked - self.not_assessed

    @property
    def nothing_assessed(self) -> bool:
        """Whether no comparison could be assessed, so the audit measured nothing."""
        return self.assessed == 0

    @property
    def passed(self) -> bool:
        return not self.breaches


def nothing_assessed_sentence(findings: PolicyFindings) -> str:
    """Return the verdict of an audit in which no comparison could be assessed.

    The report, the gate and ``ajoissa review-exception`` all use this sentence,
    so that they give one verdict.
    """
    if not findings.checked:
        return "the audit could not assess the model: it has no comparison to check"
    return (
        "the audit could not assess the model: none of its "
        f"{findings.checked} comparisons could be assessed"
    )


def meets_policy_sentence(version: str, findings: PolicyFindings) -> str:
    """Return the verdict of an audit without breaches, with how much was assessed.

    Comparisons that could not be assessed, or whose estimate lies outside the
    band, are warnings, not passes, so the sentence names them.
    """
    inside = findings.assessed - findings.outside_band
    plural = "s" if findings.checked != 1 else ""
    sentence = f"no breach of policy {version}: {findings.checked} comparison{plural}, "
    sentence += f"{inside} with the estimate inside the band"
    if findings.outside_band:
        sentence += (
            f", {findings.outside_band} with the estimate outside the band but an "
            "interval that reaches into it"
        )
    if findings.not_assessed:
        sentence += f", {findings.not_assessed} that could not be assessed"
    if findings.outside_band or findings.not_assessed:
        sentence += " (see the warnings)"
    return sentence


def _fmt(value: float, measure: str, edges: tuple[float, ...] = ()) -> str:
    """Return a ratio or a difference in points for a message.

    A value close to one of ``edges`` (the policy's band) gets more decimals,
    so that a value outside the band never reads as the band's edge.
    """
    scale, unit, decimals = (1, "", 2) if measure == "ratio" else (100, " pp", 1)
    scaled = value * scale
    for places in range(decimals, decimals + 4):
        rounded = round(scaled, places)
        if all(rounded != edge * scale or value == edge for edge in edges):
            break
    sign = "" if measure == "ratio" else "+"
    return f"{scaled:{sign}.{places}f}{unit}"


def evaluate_policy(audit: dict[str, Any], policy: FairnessPolicy) -> PolicyFindings:
    """Check the comparisons of a stored audit (``FairnessAudit.to_dict()``) against
    the policy's tolerance rules.

    Every shown group of every audited attribute and intersection is checked
    against its reference group under ``policy.interval_rule``. An undefined
    comparison or missing interval is a warning or a breach, as
    ``policy.undefined`` sets. An audit in which no comparison could be
    assessed is a breach (:func:`nothing_assessed_sentence`).
    """
    findings = PolicyFindings()
    for attribute, result in audit["attributes"].items():
        if result["reference"] is None:
            findings.warnings.append(
                f"{attribute}: no reference group ({result['reference_reason']}), "
                "so no tolerance could be checked"
            )
            continue
        for rule in policy.rules:
            for row in result["comparisons"]:
                if row["metric"] == rule.metric:
                    _check_row(findings, policy, rule, attribute, result, row)
    if findings.nothing_assessed:
        # An audit that measured nothing does not show that the policy is met,
        # so it is a breach whatever ``policy.undefined`` sets.
        findings.breaches.insert(0, nothing_assessed_sentence(findings))
    return findings


def _check_row(
    findings: PolicyFindings,
    policy: FairnessPolicy,
    rule: ToleranceRule,
    attribute: str,
    result: dict[str, Any],
    row: dict[str, Any],
) -> None:
    findings.checked += 1
    where = f"{attribute} = {row['group']} against {result['reference']}"
    value = row[rule.measure]
    low, high = row[f"{rule.measure}_low"], row[f"{rule.measure}_high"]
    if value is None or (policy.interval_rule != "point_estimate" and low is None):
        reason = row[f"{rule.measure}_reason"] or "no value"
        message = f"{where}: {rule.metric} {rule.measure} not assessed ({reason})"
        findings.not_assessed += 1
        target = findings.breaches if policy.undefined == "fail" else findings.warnings
        target.append(message)
        return
    inside = rule.lower <= value <= rule.upper
    shown = _fmt(value, rule.measure, (rule.lower, rule.upper))
    if low is not None:
        shown += f" ({policy.bootstrap.confidence:.0%} interval "
        shown += f"{_fmt(low, rule.measure)} to {_fmt(high, rule.measure)})"
    message = f"{where}: {rule.metric} {rule.measure} {shown}; policy {rule.describe()}"
    if policy.interval_rule == "point_estimate":
        breach = not inside
    elif policy.interval_rule == "interval_inside":
        breach = not (rule.lower <= low and high <= rule.upper)
    else:
        breach = high < rule.lower or low > rule.upper
        if not breach and not inside:
            findings.outside_band += 1
            findings.warnings.append(
                message + "; the estimate is outside the band but the interval "
                "reaches into it"
            )
    if breach:
        findings.breaches.append(message)
