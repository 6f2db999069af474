import re

import pandas as pd
import pytest

import fairness.report
from fairness.audit import FairnessAudit, audit_groups
from fairness.mitigation import MethodResult, MitigationResult
from fairness.report import write_report

REPORT_ARGS = {
    "model_uri": "models:/ajoissa-risk/3",
    "source": "synthetic test frame",
    "operating_point": "top 10 % of learners by risk within each as-of date",
}


def make_audit() -> FairnessAudit:
    """Two attributes: gender has a tiny group and a group without positives."""
    gender = ["f"] * 12 + ["m"] * 12 + ["<b>x</b>"] * 12 + ["n"] * 2
    frame = pd.DataFrame(
        {
            "gender": gender,
            "disability": ["Y", "N"] * 19,
            "y_true": [1, 0, 0, 0] * 6 + [0] * 12 + [1, 0],
            "selected": [1, 1, 0, 0] * 6 + [1, 0, 0, 0] * 3 + [1, 1],
            "score": [0.5] * 38,
        }
    )
    return audit_groups(frame, sensitive_features=["gender", "disability"])


@pytest.fixture
def html(tmp_path) -> str:
    path = write_report(make_audit(), tmp_path / "report.html", **REPORT_ARGS)
    return path.read_text(encoding="utf-8")


def test_report_written(tmp_path):
    path = tmp_path / "report.html"
    returned = write_report(make_audit(), path, **REPORT_ARGS)
    assert returned == path
    assert path.is_file()
    assert path.stat().st_size > 0


def test_report_self_contained(html):
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html)
    assert external == []
    assert "<script src=" not in html
    assert "<link" not in html
    assert "@import" not in html
    assert "url(" not in html


def test_report_has_no_script(html):
    assert "<script" not in html


def test_report_chart_inline(html):
    assert 'src="data:image/png;base64,' in html


def test_report_metadata(html):
    assert '<html lang="en">' in html
    assert "models:/ajoissa-risk/3" in html
    assert "synthetic test frame" in html
    assert "top 10 % of learners by risk within each as-of date" in html
    assert re.search(r"<dd>\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC</dd>", html)


def test_report_statements(html):
    assert "are not model features" in html
    assert "supports staff judgement and never decides" in html


def test_report_attribute_tables(html):
    assert "<caption>Metrics by gender</caption>" in html
    assert "<caption>Metrics by disability</caption>" in html
    assert "Disparities across the shown groups of gender" in html
    assert "Disparities across the shown groups of disability" in html


def test_report_table_headers(html):
    assert '<th scope="col">recall</th>' in html
    assert '<th scope="col">false positive rate</th>' in html
    assert '<th scope="row">f</th>' in html


def test_report_escapes_group(html):
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" not in html


def test_report_escapes_arguments(tmp_path):
    path = write_report(
        make_audit(),
        tmp_path / "report.html",
        model_uri="<script>alert(1)</script>",
        source="a & b",
        operating_point="top 10 %",
        notes=["<i>note</i>"],
    )
    html = path.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "a &amp; b" in html
    assert "&lt;i&gt;note&lt;/i&gt;" in html


def test_report_undefined_recall(html):
    # Group <b>x</b> has no positives, so its recall is undefined.
    assert "undefined</span>" in html
    assert 'title="no row in this group has y_true = 1' in html
    assert 'id="note-1"' in html
    assert 'href="#note-1"' in html


def test_report_suppression_line(html):
    assert "1 group was suppressed because it has fewer than 10" in html
    assert "2 rows" not in html
    assert "protects the privacy" in html
    assert "No group was suppressed" in html


def test_report_disparity_values(html):
    # Selection rates: f and m 50 %, <b>x</b> 25 %, so the difference is 25 points.
    assert "<td>25.0</td>" in html
    assert "<td>0.50</td>" in html


def test_report_notes(tmp_path):
    path = write_report(
        make_audit(), tmp_path / "r.html", **REPORT_ARGS, notes=["Scores are random."]
    )
    assert "<p>Scores are random.</p>" in path.read_text(encoding="utf-8")


def test_report_write_atomic(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("earlier report", encoding="utf-8")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(fairness.report.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_report(make_audit(), path, **REPORT_ARGS)
    assert path.read_text(encoding="utf-8") == "earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_report_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(make_audit(), tmp_path / "absent" / "r.html", **REPORT_ARGS)


def test_report_all_suppressed(tmp_path):
    frame = pd.DataFrame(
        {"gender": ["f", "m"], "y_true": [1, 0], "selected": [1, 0], "score": [1, 0]}
    )
    audit = audit_groups(frame, sensitive_features=["gender"])
    html = write_report(audit, tmp_path / "r.html", **REPORT_ARGS).read_text()
    assert "No group of gender has at least 10 learners" in html
    assert "2 groups were suppressed because each has fewer than 10" in html


def _method(name: str, ratio: float | None) -> MethodResult:
    return MethodResult(name, "d", 0.1, 0.3, 0.4, 0.3, {"a": 0.4, "b": 0.3}, ratio)


def test_mitigation_further_from_parity_named(tmp_path):
    mitigation = MitigationResult(
        "gender",
        0.1,
        0,
        methods=[
            _method("unmitigated model", 0.82),
            _method("equal opportunity", 0.69),
            _method("threshold", 0.95),
        ],
    )
    html = write_report(
        make_audit(), tmp_path / "r.html", **REPORT_ARGS, mitigation=mitigation
    ).read_text(encoding="utf-8")
    assert (
        "equal opportunity ended with a recall ratio of 0.69, further from parity "
        "than the unmitigated model&#39;s 0.82" in html
    )
    assert "threshold ended with" not in html


def test_report_verdict_nothing_assessed(tmp_path):
    from fairness.policy import load_policy

    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(
        'version: "p1"\n'
        "audit: {sensitive_attributes: [gender], min_group_learners: 1}\n"
        "gate:\n"
        "  interval_rule: interval_outside\n"
        "  rules: [{metric: recall, measure: ratio, lower: 0.8, upper: 1.25}]\n",
        encoding="utf-8",
    )
    frame = pd.DataFrame(
        {
            "gender": ["f", "m"] * 20,
            "y_true": [0, 0, 0, 1] * 10,
            "selected": [0] * 40,
            "score": [0.5] * 40,
        }
    )
    audit = audit_groups(frame, sensitive_features=["gender"])
    path = write_report(
        audit, tmp_path / "r.html", policy=load_policy(policy_path), **REPORT_ARGS
    )
    text = " ".join(path.read_text(encoding="utf-8").split())
    assert "Verdict: the audit could not assess the model" in text
    assert "no breach" not in text
    assert "no reviewer exception can accept" in text
