"""Fixtures for the review screens: a score store with three real scoring runs,
and a screenshot of the browser page when a browser test fails."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.scheduled import score_asof
from serving.scorestore import RunKey, ScoreStore

REPO_ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO_ROOT / "test-artifacts"
EARLIER_AS_OF = (dt.date(2014, 1, 6), dt.date(2014, 2, 3))
"""Earlier scoring dates, four and eight weeks before the conftest's AS_OF."""


@dataclass(frozen=True)
class ScoredStore:
    """A score store holding real scoring runs of the test model."""

    url: str
    latest_as_of: dt.date
    other_school: str
    """A school that the staff token does not cover."""


@pytest.fixture(scope="package")
def score_store(tables, trained, scored, tokens, tmp_path_factory) -> ScoredStore:
    """Store the scheduled runs at the two earlier dates and at 2014-03-03."""
    folder = tmp_path_factory.mktemp("ui-scores")
    url = f"sqlite:///{folder / 'scores.db'}"
    store = ScoreStore(url)
    loaded = trained.loaded
    for day in EARLIER_AS_OF:
        rows = score_asof(tables, loaded, day)
        store.replace_run(RunKey("oulad", day, loaded.name, loaded.version), rows)
    latest = dt.date(2014, 3, 3)
    store.replace_run(RunKey("oulad", latest, loaded.name, loaded.version), scored)
    store.dispose()
    other = next(row.school_id for row in scored if row.school_id != tokens.school)
    return ScoredStore(url=url, latest_as_of=latest, other_school=other)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Save a screenshot of the test's browser page when the test fails."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    page = item.funcargs.get("page")
    if page is None:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / f"{item.name}.png"
    try:
        page.screenshot(path=str(target), full_page=True)
    except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the failure
        report.sections.append(("screenshot", f"failed to save {target}: {exc}"))
    else:
        report.sections.append(("screenshot", f"saved {target}"))
