from pathlib import Path

import pytest

from fairness.policy import (
    PolicyError,
    evaluate_policy,
    load_policy,
    meets_policy_sentence,
)

BASE = """
version: "p1"
audit:
  sensitive_attributes: [gender, age_band]
  intersections: [[gender, age_band]]
  min_group_learners: 10
gate:
  interval_rule: {rule}
  rules:
    - {{metric: recall, measure: ratio, lower: 0.8, upper: 1.25}}
"""


def policy_file(
    tmp_path: Path, rule: str = "interval_outside", text: str | None = None
):
    path = tmp_path / "policy.yaml"
    path.write_text(
        text if text is not None else BASE.format(rule=rule), encoding="utf-8"
    )
    return load_policy(path)


def audit_with(ratio, low, high) -> dict:
    row = {
        "group": "b",
        "metric": "recall",
        "ratio": ratio,
        "ratio_low": low,
        "ratio_high": high,
        "ratio_reason": None if ratio is not None else "undefined in this group",
    }
    return {
        "attributes": {
            "gender": {"reference": "a", "reference_reason": "", "comparisons": [row]}
        }
    }


def test_packaged_policy_loads():
    policy = load_policy()
    assert policy.version
    assert "gender" in policy.sensitive_attributes
    assert ["gender", "deprivation_band"] in policy.intersections
    assert policy.rules[0].metric == "recall"


def test_interval_outside_breach(tmp_path):
    findings = evaluate_policy(audit_with(0.5, 0.4, 0.7), policy_file(tmp_path))
    assert len(findings.breaches) == 1


def test_interval_outside_overlap_warns(tmp_path):
    findings = evaluate_policy(audit_with(0.7, 0.5, 0.9), policy_file(tmp_path))
    assert findings.breaches == []
    assert "reaches into it" in findings.warnings[0]
    sentence = meets_policy_sentence("p1", findings)
    assert "0 with the estimate inside the band" in sentence
    assert "1 with the estimate outside the band" in sentence


def test_point_estimate_rule(tmp_path):
    policy = policy_file(tmp_path, "point_estimate")
    findings = evaluate_policy(audit_with(0.7, 0.5, 0.9), policy)
    assert len(findings.breaches) == 1


def test_interval_inside_rule(tmp_path):
    policy = policy_file(tmp_path, "interval_inside")
    findings = evaluate_policy(audit_with(1.0, 0.7, 1.1), policy)
    assert len(findings.breaches) == 1


def test_undefined_warns(tmp_path):
    audit = audit_with(1.0, 0.9, 1.1)
    undefined = dict(audit_with(None, None, None)["attributes"]["gender"])
    audit["attributes"]["age_band"] = undefined
    findings = evaluate_policy(audit, policy_file(tmp_path))
    assert findings.breaches == []
    assert "not assessed" in findings.warnings[0]
    assert (findings.checked, findings.assessed, findings.not_assessed) == (2, 1, 1)


def test_nothing_assessed_is_breach(tmp_path):
    findings = evaluate_policy(audit_with(None, None, None), policy_file(tmp_path))
    assert findings.nothing_assessed
    assert not findings.passed
    assert findings.breaches == [
        "the audit could not assess the model: none of its 1 comparisons could "
        "be assessed"
    ]
    assert "not assessed" in findings.warnings[0]


def test_no_comparison_is_breach(tmp_path):
    audit = {"attributes": {}}
    findings = evaluate_policy(audit, policy_file(tmp_path))
    assert findings.nothing_assessed
    assert "it has no comparison to check" in findings.breaches[0]


def test_verdict_names_comparisons_not_assessed(tmp_path):
    audit = audit_with(1.0, 0.9, 1.1)
    undefined = dict(audit_with(None, None, None)["attributes"]["gender"])
    undefined["comparisons"] = [dict(undefined["comparisons"][0], group="c")]
    audit["attributes"]["age_band"] = undefined
    findings = evaluate_policy(audit, policy_file(tmp_path))
    assert findings.passed
    assert (findings.assessed, findings.not_assessed) == (1, 1)
    sentence = meets_policy_sentence("p1", findings)
    assert "2 comparisons, 1 with the estimate inside the band" in sentence
    assert "1 that could not be assessed" in sentence


def test_rejects_missing_version(tmp_path):
    text = BASE.format(rule="point_estimate").replace('version: "p1"\n', "")
    with pytest.raises(PolicyError, match="key version: missing"):
        policy_file(tmp_path, text=text)


def test_rejects_unknown_rule(tmp_path):
    with pytest.raises(PolicyError, match="gate.interval_rule"):
        policy_file(tmp_path, "sometimes")


def test_rejects_unknown_metric(tmp_path):
    text = BASE.format(rule="point_estimate").replace("metric: recall", "metric: luck")
    with pytest.raises(PolicyError, match=r"gate.rules\[0\].metric"):
        policy_file(tmp_path, text=text)


def test_rejects_intersection_outside(tmp_path):
    text = BASE.format(rule="point_estimate").replace(
        "[[gender, age_band]]", "[[gender, x]]"
    )
    with pytest.raises(PolicyError, match=r"audit.intersections\[0\]"):
        policy_file(tmp_path, text=text)


def test_rejects_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("value", "measure", "expected"),
    [
        (0.7996, "ratio", "0.7996"),
        (0.83, "ratio", "0.83"),
        (0.8, "ratio", "0.80"),
        (1.2504, "ratio", "1.2504"),
        (-0.0996, "difference", "-9.96 pp"),
        (0.05, "difference", "+5.0 pp"),
    ],
)
def test_values_near_band_edges_get_decimals(value, measure, expected):
    from fairness.policy import _fmt

    edges = (0.8, 1.25) if measure == "ratio" else (-0.1, 0.1)
    assert _fmt(value, measure, edges) == expected
