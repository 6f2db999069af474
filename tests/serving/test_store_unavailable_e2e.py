"""A real server whose score store cannot be reached: it starts, scores and recovers."""

from __future__ import annotations

import datetime as dt
import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from serving.accesslog import AccessLog
from serving.scorestore import RunKey, ScoreStore

pytestmark = pytest.mark.e2e

ERROR_KEYS = {"error", "problem_count", "problems"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
RECOVERY_TIMEOUT_SECONDS = 30
AS_OF = dt.date(2014, 3, 3)
"""The as-of date of the conftest's scheduled scores."""


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sign_in(client: httpx.Client, token: str) -> None:
    """Start a session of the review pages in ``client``."""
    form = client.get("/ui/signin")
    signed_in = client.post(
        "/ui/signin",
        data={"token": token, "csrf": CSRF.search(form.text).group(1)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text


def _env(workdir: Path, store_url: str) -> dict[str, str]:
    return {
        "AJOISSA_SCORE_STORE_URL": store_url,
        "AJOISSA_ACCESS_LOG": str(workdir / "access-log.db"),
        "AJOISSA_UI_DB": str(workdir / "ui.db"),
        "AJOISSA_WORKERS": "1",
    }


def test_unreachable_store_server_scores(trained, tokens, launch, tmp_path):
    pytest.importorskip("psycopg")
    # Nothing listens on the port, so every connection is refused.
    port = _unused_port()
    store_url = f"postgresql+psycopg://ajoissa:s3cret-word@127.0.0.1:{port}/x"
    with launch(trained.loaded.name, tmp_path, env=_env(tmp_path, store_url)) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        health = httpx.get(f"{server.url}/healthz", timeout=10)
        scored = httpx.post(
            f"{server.url}/v1/score",
            headers=tokens.header("platform"),
            json={"records": trained.holdout_records[:2]},
            timeout=30,
        )
        history = httpx.get(
            f"{server.url}/v1/pupils/P1/history",
            headers=tokens.header("staff"),
            timeout=10,
        )
        explanation = httpx.get(
            f"{server.url}/v1/pupils/P1/explanation",
            headers=tokens.header("staff"),
            timeout=10,
        )
        with httpx.Client(
            base_url=server.url, headers={"Accept-Language": "en"}, timeout=30
        ) as client:
            _sign_in(client, tokens.by_role["staff"])
            school_page = client.get(f"/ui/schools/{tokens.school}")
            pupil_page = client.get(f"/ui/schools/{tokens.school}/pupils/P1")
        log = server.log()

    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "score_store": "unavailable"}
    assert health.status_code == 200
    assert scored.status_code == 200, scored.text
    assert len(scored.json()["scores"]) == 2
    for response in (history, explanation):
        assert response.status_code == 503
        assert set(response.json()) == ERROR_KEYS
        assert "cannot reach its score store" in response.json()["error"]
        assert "POST /v1/score" in response.json()["error"]
    for page in (school_page, pupil_page):
        assert page.status_code == 503
        assert "Scores unavailable" in page.text
        assert "cannot reach its score database" in page.text

    failures = [line for line in log.splitlines() if "failed to open the score" in line]
    assert len(failures) == 1, log
    assert f"postgresql+psycopg://ajoissa:***@127.0.0.1:{port}/x" in failures[0]
    assert "AJOISSA_SCORE_STORE_URL" in failures[0]
    assert "s3cret-word" not in log
    assert "Traceback" not in log
    assert "Application startup failed" not in log

    rows = AccessLog(tmp_path / "access-log.db").rows()
    rejected = [row for row in rows if row["outcome"] == "503 store unavailable"]
    assert [row["endpoint"] for row in rejected] == [
        "/v1/pupils/{id}/history",
        "/v1/pupils/{id}/explanation",
        "/ui/schools/{school}",
        "/ui/schools/{school}/pupils/{id}",
    ]
    assert [row["pupil_id"] for row in rejected] == ["P1", "P1", None, "P1"]
    assert rejected[2]["school_id"] == tokens.school


def test_store_recovers_without_restart(trained, scored, tokens, launch, tmp_path):
    # A file where the SQLite store's folder belongs keeps the store from opening.
    blocker = tmp_path / "store"
    blocker.write_text("not a folder", encoding="utf-8")
    store_url = f"sqlite:///{blocker / 'scores.db'}"
    env = _env(tmp_path, store_url) | {"AJOISSA_SCORE_STORE_RETRY_SECONDS": "1"}
    pupil = next(row for row in scored if row.school_id == tokens.school)
    path = f"/v1/pupils/{pupil.pupil_id}/history"
    with launch(trained.loaded.name, tmp_path, env=env) as server:
        before = httpx.get(
            f"{server.url}{path}", headers=tokens.header("staff"), timeout=10
        )
        blocker.unlink()
        store = ScoreStore(store_url)
        key = RunKey("oulad", AS_OF, trained.loaded.name, "1")
        store.replace_run(key, scored)
        store.dispose()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        after = before
        while after.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            after = httpx.get(
                f"{server.url}{path}", headers=tokens.header("staff"), timeout=10
            )
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        log = server.log()

    assert before.status_code == 503
    assert after.status_code == 200, after.text
    assert after.json()["pupil_id"] == pupil.pupil_id
    assert ready.json()["score_store"] == "available"
    assert "failed to open the score store" in log
    assert "opened after" in log
