"""The full report renders in headless Chromium without errors or network access."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from fairness.audit import audit_groups
from fairness.comparison import BootstrapSettings
from fairness.explain import explanation_overview
from fairness.mitigation import compare_mitigations
from fairness.policy import load_policy
from fairness.report import write_report
from models.spec import FeatureSpec

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame(
        {
            "unexcused_share_recent": rng.random(n) * 0.3,
            "mean_score": rng.normal(60, 15, n).clip(0, 100),
            "attr_module": pd.Categorical(rng.choice(["AAA", "GGG"], n)),
        }
    )
    logit = 8 * X["unexcused_share_recent"] - 0.03 * (X["mean_score"] - 60) - 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    spec = FeatureSpec.from_frame(X)
    model = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(spec.conform(X), y)
    scores = model.predict_proba(spec.conform(X))[:, 1]
    frame = pd.DataFrame(
        {
            "learner": (np.arange(n) // 2).astype(str),
            "gender": rng.choice(["F", "M", None], n, p=[0.5, 0.45, 0.05]),
            "deprivation_band": rng.choice(["0-10%", "10-20%"], n),
            "y_true": y,
            "score": scores,
        }
    )
    frame["selected"] = (scores >= np.quantile(scores, 0.9)).astype(int)
    audit = audit_groups(
        frame,
        sensitive_features=["gender", "deprivation_band"],
        learner="learner",
        intersections=[("gender", "deprivation_band")],
        bootstrap=BootstrapSettings(replicates=50),
        absent_attributes=["mother_tongue"],
    )
    mitigation = compare_mitigations(
        X,
        y,
        scores,
        frame["gender"],
        attribute="gender",
        learners=frame["learner"].to_numpy(),
        top_share=0.1,
    )
    explanations = explanation_overview(model, spec, X, sample=500)
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(
        audit,
        path,
        model_uri="models:/browser-test/1",
        source="synthetic",
        operating_point="top 10 %",
        policy=load_policy(),
        mitigation=mitigation,
        explanations=explanations,
        data=None,
    )


def test_report_renders_in_chromium(report):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian chromium: apt-get install -y chromium"
    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "request",
                lambda r: (
                    remote.append(r.url)
                    if not r.url.startswith(("file:", "data:"))
                    else None
                ),
            )
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            broken_images = page.evaluate(
                "Array.from(document.images)"
                ".filter(i => !i.complete || i.naturalWidth === 0).length"
            )
            image_count = page.evaluate("document.images.length")
            verdict = page.locator("#verdict").inner_text()
            headings = page.locator("h2").all_inner_texts()
        finally:
            browser.close()
    assert errors == []
    assert remote == []
    assert broken_images == 0
    assert image_count >= 5
    assert verdict.startswith("Verdict:")
    for heading in ("Mitigation trade-offs", "Explanations", "Known limitations"):
        assert heading in headings


def test_report_states_log_odds(report):
    html = report.read_text(encoding="utf-8")
    assert "contribution (log-odds)" in html
    assert "raw score" in html


def test_report_lists_absent_attribute(report):
    assert "The source has no data for: mother_tongue." in report.read_text()


def test_report_has_three_languages(report):
    html = report.read_text(encoding="utf-8")
    assert 'lang="fi"' in html
    assert 'lang="sv"' in html
