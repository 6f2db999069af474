"""The review screens in Debian's Chromium, against a real server on 127.0.0.1.

The server serves the registered test model, reads three real scoring runs and
checks real tokens. A failing test saves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from serving.accesslog import AccessLog

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server(trained, score_store, launch, tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("ui-server")
    env = {
        "AJOISSA_SCORE_STORE_URL": score_store.url,
        "AJOISSA_UI_DB": str(workdir / "ui.db"),
        "AJOISSA_ACCESS_LOG": str(workdir / "access-log.db"),
    }
    with launch(trained.loaded.name, workdir, env=env) as running:
        yield {"url": running.url, "log": AccessLog(workdir / "access-log.db")}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB", extra_http_headers={})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def _sign_in(page: Page, server: dict, token: str) -> None:
    page.goto(f"{server['url']}/ui/signin")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_signin_shows_own_school(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    expect(page.get_by_role("heading", level=1)).to_have_text(f"School {tokens.school}")
    expect(page.locator("#pupils tbody tr")).to_have_count(15)
    expect(page.locator("#pupils tbody tr").first).to_contain_text("For review")
    expect(page.locator("#pupils tbody tr").first).to_contain_text(
        "pupils with a similar record withdrew"
    )
    expect(page.locator("#pupils svg.chart").first).to_be_visible()


def test_signin_by_keyboard(page, server, tokens):
    page.goto(f"{server['url']}/ui")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Token").focus()
    page.keyboard.type(tokens.by_role["staff"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_pupil_page(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    page.locator("#pupils tbody th a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Pupil ")
    expect(page.locator("#estimate")).to_have_text(re.compile(r"\d+%"))
    expect(page.locator("#reasons li").first).to_contain_text("the risk")
    expect(page.locator("#history-h ~ table tbody tr")).to_have_count(3)
    expect(page.get_by_label("Decision")).to_be_visible()


def test_review_overrides_flag(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    first = page.locator("#pupils tbody tr").first
    pupil = first.get_attribute("data-pupil")
    first.locator("th a").click()
    page.get_by_label("Decision").select_option(label="Support planned")
    page.get_by_label("Note (optional").fill("Meeting with the family next week.")
    page.get_by_role("button", name="Save review").click()
    expect(page.get_by_role("status")).to_have_text("Review saved.")
    expect(page.locator("#reviews tbody tr")).to_have_count(1)
    page.get_by_role("link", name=f"Back to school {tokens.school}").click()
    row = page.locator(f'#pupils tbody tr[data-pupil="{pupil}"]')
    expect(row.locator("td.status")).to_contain_text("Support planned")
    expect(row.locator("td.status")).not_to_contain_text("For review")
    outcomes = [entry["outcome"] for entry in server["log"].rows()]
    assert "201 review support_planned" in outcomes


def test_other_school_denied(page, server, tokens, score_store):
    _sign_in(page, server, tokens.by_role["staff"])
    url = f"{server['url']}/ui/schools/{score_store.other_school}/pupils/x1"
    response = page.goto(url)
    assert response.status == 403
    expect(page.get_by_role("alert")).to_contain_text("recorded in the access log")
    denied = [e for e in server["log"].rows() if e["outcome"] == "403 denied"]
    assert denied[-1]["school_id"] == score_store.other_school


def test_pupil_without_score(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    response = page.goto(f"{server['url']}/ui/schools/{tokens.school}/pupils/nobody")
    assert response.status == 404
    expect(page.locator("#no-score")).to_contain_text("No score is stored")


def test_language_switch(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    page.get_by_role("button", name="Suomi").click()
    expect(page.locator("html")).to_have_attribute("lang", "fi")
    expect(page.get_by_role("button", name="Kirjaudu ulos")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Koulu {tokens.school}")
    page.get_by_role("button", name="Svenska").click()
    expect(page.locator("html")).to_have_attribute("lang", "sv")
    expect(page.get_by_role("button", name="Logga ut")).to_be_visible()


def test_sign_out(page, server, tokens):
    _sign_in(page, server, tokens.by_role["staff"])
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    page.goto(f"{server['url']}/ui/schools/{tokens.school}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_reviewer_signoff(page, server, tokens, trained):
    import mlflow

    _sign_in(page, server, tokens.by_role["reviewer"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Model versions")
    # Other tests register models in the same store, so the link is found by
    # its address, which names the model.
    name, version = trained.loaded.name, trained.loaded.version
    page.locator(f"a[href='/ui/models/{name}/{version}']").click()
    expect(page.locator("#fairness")).to_have_text("not available")
    page.get_by_label("Approve for promotion").check()
    page.get_by_label("Reason").fill("Fairness gaps within the agreed bounds.")
    page.get_by_role("button", name="Record sign-off").click()
    expect(page.get_by_role("status")).to_have_text("Sign-off recorded.")
    expect(page.locator("#signoff-current")).to_contain_text("Approve for promotion")
    version = mlflow.MlflowClient().get_model_version(
        trained.loaded.name, trained.loaded.version
    )
    assert version.tags["signoff_decision"] == "approve"
    assert version.tags["signoff_reason"] == "Fairness gaps within the agreed bounds."
