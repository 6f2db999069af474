"""The main job on a slice of real OULAD data, through the installed command line.

``ajoissa run`` trains, registers and audits; ``ajoissa serve`` then serves the
registered champion on 127.0.0.1 and its scores must equal the offline ones.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OULAD = REPO_ROOT / "ajoissa" / "data" / "oulad"
SLICE_MODULES = ("AAA", "GGG")
"""Two small modules with presentations in both 2013 and 2014."""

METRIC_KEYS = {"roc_auc", "pr_auc", "precision_at_10pct", "recall_at_10pct", "brier"}
AJOISSA = str(Path(sys.executable).with_name("ajoissa"))

pytestmark = pytest.mark.e2e


def _write_slice(target: Path) -> Path:
    """Copy the OULAD tables, keeping only the rows of ``SLICE_MODULES``."""
    target.mkdir(parents=True)
    courses = pd.read_csv(OULAD / "courses.csv", dtype=str)
    assessments = pd.read_csv(OULAD / "assessments.csv", dtype=str)
    keep_assessments = assessments[assessments["code_module"].isin(SLICE_MODULES)]
    for name in ("courses", "assessments"):
        frame = courses if name == "courses" else assessments
        frame[frame["code_module"].isin(SLICE_MODULES)].to_csv(
            target / f"{name}.csv", index=False
        )
    for name in ("studentInfo", "studentRegistration"):
        frame = pd.read_csv(OULAD / f"{name}.csv.gz", dtype=str, keep_default_na=False)
        frame[frame["code_module"].isin(SLICE_MODULES)].to_csv(
            target / f"{name}.csv", index=False
        )
    submissions = pd.read_csv(
        OULAD / "studentAssessment.csv.gz", dtype=str, keep_default_na=False
    )
    submissions[
        submissions["id_assessment"].isin(keep_assessments["id_assessment"])
    ].to_csv(target / "studentAssessment.csv", index=False)
    return target


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env |= {
        "AJOISSA_HOME": str(home),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home / "bentoml"),
    }
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def run_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("e2e")
    data = _write_slice(base / "data")
    out, home = base / "out", base / "home"
    result = subprocess.run(
        [AJOISSA, "run", "--source", "oulad", "--data", str(data), "--out", str(out)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return out, home, summary | {"_stdout": result.stdout}


def test_run_summary_metrics(run_output):
    _, _, summary = run_output
    assert summary["source"] == "oulad"
    assert set(summary["metrics"]) == {"day_30", "day_60", "day_90", "day_120"}
    for by_model in summary["metrics"].values():
        assert set(by_model) >= {"model", "rule", "logistic"}
        for values in by_model.values():
            assert set(values) == METRIC_KEYS
            assert 0.0 <= values["brier"] <= 1.0


def test_run_summary_label_rates(run_output):
    _, _, summary = run_output
    rows = summary["rows"]
    evaluation = rows["evaluation_label_rate_by_asof"]
    assert set(evaluation) == set(summary["metrics"])
    assert set(rows["label_rate_by_asof"]) == set(summary["metrics"])
    assert all(0.0 < rate < 1.0 for rate in evaluation.values())
    # The evaluation rows are the 2014 test units only, a strict subset.
    assert rows["evaluation_rows"] < rows["feature_rows"]


def test_run_registers_version(run_output):
    _, _, summary = run_output
    assert summary["model_uri"] == f"models:/ajoissa-oulad/{summary['model_version']}"
    assert summary["validation"]["kind"] == "temporal"
    assert summary["validation"]["train_cohorts"] == ["2013J"]


def test_run_writes_outputs(run_output):
    out, _, summary = run_output
    report = Path(summary["fairness_report"])
    assert report.is_file()
    assert "gender" in report.read_text()
    reasons = out / "reason_codes.jsonl"
    first = json.loads(reasons.read_text().splitlines()[0])
    assert first["reasons"]
    # Pupil-level outputs are for their owner only.
    assert reasons.stat().st_mode & 0o777 == 0o600
    assert report.stat().st_mode & 0o777 == 0o600
    assert first["reasons"][0]["direction"] in {"raises", "lowers"}
    assert summary["shap_additivity_max_error"] < 1e-6


def test_run_prints_headline_table(run_output):
    _, _, summary = run_output
    assert "Headline figures" in summary["_stdout"]
    assert "models:/ajoissa-oulad/" in summary["_stdout"]


def test_run_prints_steps_without_terminal(run_output):
    _, _, summary = run_output
    assert re.search(r"\d\d:\d\d:\d\d building point-in-time", summary["_stdout"])


def test_serve_matches_offline_scores(run_output):
    out, home, _ = run_output
    created = subprocess.run(
        [AJOISSA, "tokens", "create", "--role", "platform"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    auth = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    port = _free_port()
    server = subprocess.Popen(
        [AJOISSA, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the server did not become ready within 120 s")

        body = json.loads((out / "example_request.json").read_text())
        response = httpx.post(f"{base}/v1/score", json=body, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        served = [s["probability"] for s in response.json()["scores"]]
        offline = [
            json.loads(line)["probability"]
            for line in (out / "reason_codes.jsonl").read_text().splitlines()
        ][: len(served)]
        assert served == pytest.approx(offline, abs=1e-6)

        bad = {"records": [body["records"][0] | {"mean_score": "high"}]}
        rejected = httpx.post(f"{base}/v1/score", json=bad, headers=auth, timeout=30)
        assert rejected.status_code == 400
        assert "mean_score" in rejected.text
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_run_reports_bad_value(tmp_path):
    data = _write_slice(tmp_path / "data")
    frame = pd.read_csv(
        data / "studentRegistration.csv", dtype=str, keep_default_na=False
    )
    frame.loc[4, "date_registration"] = "yesterday"
    frame.to_csv(data / "studentRegistration.csv", index=False)
    result = subprocess.run(
        [
            AJOISSA,
            "run",
            "--source",
            "oulad",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
        ],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "studentRegistration.csv" in result.stderr
    assert "date_registration" in result.stderr
    assert "row 6" in result.stderr
    assert "'yesterday'" in result.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_run_reports_missing_file(tmp_path):
    data = _write_slice(tmp_path / "data")
    (data / "assessments.csv").unlink()
    result = subprocess.run(
        [
            AJOISSA,
            "run",
            "--source",
            "oulad",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
        ],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "assessments.csv" in result.stderr


STRICT_POLICY = """
version: "e2e-strict"
audit:
  sensitive_attributes: [gender, disability, age_band, deprivation_band]
  intersections: [[gender, deprivation_band]]
  min_group_learners: 10
  bootstrap: {replicates: 50, confidence: 0.95, seed: 0}
gate:
  interval_rule: point_estimate
  undefined: warn
  rules:
    - {metric: recall, measure: ratio, lower: 0.99, upper: 1.01}
"""
"""A policy no real model meets, so the exception path is exercised."""


def _open_in_chromium(path: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
        finally:
            browser.close()
    return errors


def test_audit_and_exception(run_output, tmp_path):
    out, home, summary = run_output
    policy = tmp_path / "policy.yaml"
    policy.write_text(STRICT_POLICY, encoding="utf-8")
    env = _env(home) | {"AJOISSA_FAIRNESS_POLICY": str(policy)}
    report = tmp_path / "report.html"
    audited = subprocess.run(
        [
            AJOISSA,
            "audit",
            "--model",
            "ajoissa-oulad@champion",
            "--data",
            str(out.parent / "data"),
            "--out",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert audited.returncode == 0, audited.stdout[-3000:] + audited.stderr[-3000:]
    assert "(policy e2e-strict): fails" in audited.stdout
    html = report.read_text(encoding="utf-8")
    assert "Verdict: breaches fairness policy e2e-strict" in html
    assert "gender x deprivation_band" in html
    assert "Mitigation trade-offs" in html
    assert _open_in_chromium(report) == []

    model = f"ajoissa-oulad@{summary['model_version']}"
    excepted = subprocess.run(
        [
            AJOISSA,
            "review-exception",
            "--model",
            model,
            "--reviewer",
            "Aino Virtanen",
            "--reason",
            "Pilot in two schools with every flag reviewed by hand.",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert excepted.returncode == 0, excepted.stdout[-3000:] + excepted.stderr[-3000:]
    assert "(policy e2e-strict): passes" in excepted.stdout
    assert "exception recorded by Aino Virtanen" in excepted.stdout


def test_audit_rejects_bad_model(run_output, tmp_path):
    _, home, _ = run_output
    result = subprocess.run(
        [
            AJOISSA,
            "audit",
            "--model",
            "ajoissa-oulad",
            "--out",
            str(tmp_path / "r.html"),
        ],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "NAME@VERSION or NAME@ALIAS" in result.stderr
