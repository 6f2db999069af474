"""The review screens in process: sessions, CSRF, scoping, reviews and paging."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from serving.accesslog import AccessLog
from serving.scorestore import RunKey, ScoreStore, StoredScore
from serving.ui import app as ui_module
from serving.ui.i18n import Translator
from serving.ui.store import UiStore

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def env(score_store, tmp_path, monkeypatch):
    """Point the pages at the shared score store and a fresh UI database and log."""
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", score_store.url)
    monkeypatch.setenv("AJOISSA_UI_DB", str(tmp_path / "ui.db"))
    monkeypatch.setenv("AJOISSA_ACCESS_LOG", str(tmp_path / "access-log.db"))
    monkeypatch.setattr(ui_module, "_context", None)
    return tmp_path


@pytest.fixture
def client(env) -> TestClient:
    app = Starlette(routes=[Mount("/ui", app=ui_module.ui_app)])
    return TestClient(app, headers={"Accept-Language": "en"})


def _csrf(html: str) -> str:
    return CSRF.search(html).group(1)


def _sign_in(client: TestClient, token: str):
    form = client.get("/ui/signin")
    return client.post(
        "/ui/signin",
        data={"token": token, "csrf": _csrf(form.text)},
        follow_redirects=False,
    )


def _access_rows(env) -> list[dict]:
    return AccessLog(env / "access-log.db").rows()


def test_signin_sets_strict_cookie(client, tokens):
    response = _sign_in(client, tokens.by_role["staff"])
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303
    assert "ajoissa_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age=28800" in cookie


def test_signin_rejects_bad_token(client):
    response = _sign_in(client, "ajoissa_0000000000000000.notatoken")
    assert response.status_code == 401
    assert "not valid or has been revoked" in response.text


def test_signin_rejects_platform_token(client, tokens):
    response = _sign_in(client, tokens.by_role["platform"])
    assert response.status_code == 403
    assert "platform token cannot sign in" in response.text


def test_signin_needs_csrf(client, tokens):
    client.get("/ui/signin")
    response = client.post(
        "/ui/signin", data={"token": tokens.by_role["staff"], "csrf": "forged"}
    )
    assert response.status_code == 403
    assert "did not come from this site" in response.text


def test_pages_need_session(client, tokens):
    response = client.get(f"/ui/schools/{tokens.school}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/signin"


def test_school_list_capacity(client, tokens, env):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get(f"/ui/schools/{tokens.school}")
    rows = re.findall(r'<tr data-pupil="([^"]+)"', response.text)
    assert response.status_code == 200
    assert len(rows) == 15
    assert response.text.count(">For review<") == 15
    assert "pupils with a similar record withdrew" in response.text
    assert "Page 1 of" in response.text
    assert '<svg class="chart"' in response.text
    # The chart names its trend, so the visible name is hidden from screen readers.
    # OULAD has assessment scores from 0 to 100, not grades.
    assert '<span aria-hidden="true">Assessment scores:</span>' in response.text
    assert "Grades" not in response.text
    listed = [row for row in _access_rows(env) if row["outcome"] == "200 listed"]
    assert len(listed) == 15


def test_school_list_has_no_tiers(client, tokens):
    _sign_in(client, tokens.by_role["staff"])
    text = client.get(f"/ui/schools/{tokens.school}").text.lower()
    for word in ("red", "yellow", "green", "high risk", "low risk"):
        assert f">{word}<" not in text


def test_capacity_sets_page_size(client, tokens, env):
    UiStore(env / "ui.db").set_capacity(tokens.school, 7)
    _sign_in(client, tokens.by_role["staff"])
    text = client.get(f"/ui/schools/{tokens.school}?page=2").text
    ranks = re.findall(r'<td class="num">(\d+)</td>', text)
    assert len(ranks) == 7
    assert "Page 2 of" in text


def test_other_school_forbidden(client, tokens, score_store, env):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get(f"/ui/schools/{score_store.other_school}/pupils/p1")
    denied = [row for row in _access_rows(env) if row["outcome"] == "403 denied"]
    assert response.status_code == 403
    assert "This attempt has been recorded" in response.text
    assert len(denied) == 1
    assert denied[0]["school_id"] == score_store.other_school
    assert denied[0]["pupil_id"] == "p1"


def test_pupil_without_score(client, tokens, env):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get(f"/ui/schools/{tokens.school}/pupils/no-such-pupil")
    assert response.status_code == 404
    assert "No score is stored for this pupil" in response.text
    assert _access_rows(env)[-1]["outcome"] == "404 no score"


def test_review_overrides_flag(client, tokens, scored, env):
    pupil = next(
        row.pupil_id
        for row in scored
        if row.school_id == tokens.school and row.school_rank == 1
    )
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}/pupils/{pupil}")
    response = client.post(
        f"/ui/schools/{tokens.school}/pupils/{pupil}/reviews",
        data={
            "csrf": _csrf(page.text),
            "decision": "not_a_concern",
            "note": "Known to the team.",
            "follow_up": "",
        },
    )
    listing = client.get(f"/ui/schools/{tokens.school}").text
    row = re.search(
        rf'<tr data-pupil="{re.escape(pupil)}">.*?</tr>', listing, re.DOTALL
    )
    assert response.status_code == 200
    assert "Review saved." in response.text
    # Review times are Finnish time, and the column header names it.
    assert "Recorded (Finnish time)" in response.text
    # The review names its token by label and id.
    assert re.search(r"<td>test staff \([0-9a-f]{16}\)</td>", response.text)
    assert "Not a concern" in row.group(0)
    assert "For review" not in row.group(0)
    assert listing.count(">For review<") == 14
    outcomes = [row["outcome"] for row in _access_rows(env)]
    assert "201 review not_a_concern" in outcomes


def test_review_rejects_past_follow_up(client, tokens, scored):
    pupil = next(row.pupil_id for row in scored if row.school_id == tokens.school)
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}/pupils/{pupil}")
    response = client.post(
        f"/ui/schools/{tokens.school}/pupils/{pupil}/reviews",
        data={
            "csrf": _csrf(page.text),
            "decision": "monitor",
            "follow_up": "2001-01-01",
        },
    )
    assert response.status_code == 400
    assert "today or later" in response.text


def _post_review(client, tokens, scored, **fields):
    pupil = next(row.pupil_id for row in scored if row.school_id == tokens.school)
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}/pupils/{pupil}")
    data = {"csrf": _csrf(page.text), "decision": "monitor"} | fields
    return client.post(
        f"/ui/schools/{tokens.school}/pupils/{pupil}/reviews",
        data=data,
        follow_redirects=False,
    )


def test_review_rejects_far_follow_up(client, tokens, scored):
    response = _post_review(client, tokens, scored, follow_up="9999-12-31")
    assert response.status_code == 400
    assert "or earlier" in response.text


def test_review_rejects_nul_note(client, tokens, scored):
    response = _post_review(client, tokens, scored, note="called\x00home")
    assert response.status_code == 400
    assert "control characters" in response.text


def test_review_keeps_line_breaks(client, tokens, scored, env):
    note = "called home\r\n\tno answer"
    response = _post_review(client, tokens, scored, note=note)
    assert response.status_code == 303


def test_signout_ends_session(client, tokens):
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}")
    client.post("/ui/signout", data={"csrf": _csrf(page.text)})
    response = client.get(f"/ui/schools/{tokens.school}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/signin")


def test_revoked_token_ends_session(client, tokens, trained):
    from serving.access import TokenStore

    store = TokenStore(trained.home / "access.db")
    token, info = store.create("staff", [tokens.school], "to revoke")
    _sign_in(client, token)
    store.revoke(info.token_id)
    response = client.get(f"/ui/schools/{tokens.school}", follow_redirects=False)
    assert response.status_code == 303


def test_revoked_session_logged(client, tokens, trained, env):
    from serving.access import TokenStore

    store = TokenStore(trained.home / "access.db")
    token, info = store.create("staff", [tokens.school], "to revoke")
    _sign_in(client, token)
    store.revoke(info.token_id)
    client.get(f"/ui/schools/{tokens.school}/pupils/p7", follow_redirects=False)
    row = _access_rows(env)[-1]
    assert row["outcome"] == "401 revoked"
    assert row["token_id"] == info.token_id
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}"
    assert row["school_id"] == tokens.school
    assert row["pupil_id"] == "p7"


@pytest.mark.parametrize("kind", ["revoked", "unknown"])
def test_rejected_signin_logged(client, tokens, env, kind):
    token = {
        "revoked": tokens.revoked,
        "unknown": "ajoissa_0123456789abcdef." + "x" * 43,
    }[kind]
    response = _sign_in(client, token)
    rows = _access_rows(env)
    assert response.status_code == 401
    assert rows[-1]["endpoint"] == "/ui/signin"
    if kind == "revoked":
        assert rows[-1]["outcome"] == "401 revoked"
        assert rows[-1]["token_id"] == tokens.revoked.split("_")[1].split(".")[0]
    else:
        assert rows[-1]["outcome"] == "401 denied"
        assert rows[-1]["token_id"] is None
    secret = token.split(".")[1]
    assert not any(secret in str(value) for row in rows for value in row.values())


def test_review_without_score_logged(client, tokens, env):
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}")
    response = client.post(
        f"/ui/schools/{tokens.school}/pupils/no-such-pupil/reviews",
        data={"csrf": _csrf(page.text), "decision": "not_a_concern", "note": ""},
    )
    row = _access_rows(env)[-1]
    assert response.status_code == 404
    assert row["outcome"] == "404 no score"
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["pupil_id"] == "no-such-pupil"


def test_pages_declare_empty_icon(client):
    # Without an icon link, browsers request /favicon.ico without a token.
    assert '<link rel="icon" href="data:,">' in client.get("/ui/signin").text


def test_staff_cannot_open_models(client, tokens):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get("/ui/models")
    assert response.status_code == 403


def test_thousand_pupils_paginate(client, tokens, trained, env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    store = ScoreStore(url)
    rows = [
        StoredScore(
            pupil_id=f"p{i:04d}",
            school_id=tokens.school,
            enrolment_id=f"e{i:04d}",
            probability=1 - i / 1000,
            school_rank=i + 1,
            school_size=1000,
            reasons=[],
            contributions={"base_value_log_odds": 0.0, "features": []},
            features={"weighted_mean_score": 50.0},
        )
        for i in range(1000)
    ]
    store.replace_run(RunKey("test", dt.date(2014, 3, 3), "m", "1"), rows)
    store.dispose()
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    _sign_in(client, tokens.by_role["staff"])
    last = client.get(f"/ui/schools/{tokens.school}?page=67").text
    beyond = client.get(f"/ui/schools/{tokens.school}?page=500", follow_redirects=False)
    assert "Page 67 of 67 (1000 pupils)" in last
    assert re.findall(r'<tr data-pupil="([^"]+)"', last) == [
        f"p{i:04d}" for i in range(990, 1000)
    ]
    assert beyond.headers["location"].endswith("?page=67")
    # Numbers past SQLite's 64-bit offsets, and digits outside ASCII.
    huge = client.get(
        f"/ui/schools/{tokens.school}?page=99999999999999999999", follow_redirects=False
    )
    assert huge.headers["location"].endswith("?page=67")
    assert client.get(f"/ui/schools/{tokens.school}?page=²").status_code == 200


def test_one_pupil_school_singular(client, tokens, env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = ScoreStore(url)
    row = StoredScore(
        pupil_id="p1",
        school_id=tokens.school,
        enrolment_id="e1",
        probability=0.4,
        school_rank=1,
        school_size=1,
        reasons=[],
        contributions={"base_value_log_odds": 0.0, "features": []},
        features={"weighted_mean_score": 50.0},
    )
    store.replace_run(RunKey("test", dt.date(2014, 3, 3), "m", "1"), [row])
    store.dispose()

    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setenv("AJOISSA_UI_SESSION_HOURS", "1")
    monkeypatch.setattr(ui_module, "_context", None)
    UiStore(env / "ui.db").set_capacity(tokens.school, 1)

    signin = client.get("/ui/signin").text
    _sign_in(client, tokens.by_role["staff"])
    english = client.get(f"/ui/schools/{tokens.school}").text
    finnish = client.get(
        f"/ui/schools/{tokens.school}", headers={"Accept-Language": "fi"}
    ).text

    assert "The session ends after 1 hour or when you sign out." in signin
    assert "Your team can review 1 pupil per scoring." in english
    assert "The pupil with the highest estimate is marked for review" in english
    assert "Page 1 of 1 (1 pupil)" in english
    assert "1 pupil is waiting for a review." in english
    assert "Tiiminne ehtii käydä läpi 1 oppilaan arviointikertaa kohden." in finnish
    assert "Sivu 1/1 (1 oppilas)" in finnish


def test_model_card_links_fairness_report(client, tokens, tmp_path):
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow()
    report = tmp_path / "fairness_report.html"
    report.write_text("<h1>Group metrics</h1>", encoding="utf-8")
    mlflow_client = mlflow.MlflowClient()
    experiment = mlflow_client.create_experiment(f"ui-card-{tmp_path.name}")
    run = mlflow_client.create_run(experiment)
    mlflow_client.log_artifact(run.info.run_id, str(report))
    mlflow_client.create_registered_model("ui-card-test")
    version = mlflow_client.create_model_version(
        "ui-card-test", run.info.artifact_uri, run_id=run.info.run_id
    )
    _sign_in(client, tokens.by_role["reviewer"])
    card = client.get(f"/ui/models/ui-card-test/{version.version}")
    link = f"/ui/models/ui-card-test/{version.version}/artifacts/fairness_report.html"
    served = client.get(link)
    missing = client.get(
        f"/ui/models/ui-card-test/{version.version}/artifacts/summary.json"
    )
    assert card.status_code == 200
    assert f'href="{link}"' in card.text
    assert served.text == "<h1>Group metrics</h1>"
    assert served.headers["content-security-policy"].startswith("sandbox")
    assert missing.status_code == 404


def test_model_card_shows_stored_audit_report(client, tokens, tmp_path):
    from fairness.registry import store_audit

    version = _version_with_artifacts(
        "ui-audit-test",
        tmp_path,
        {(None, "fairness_report.html"): "<h1>The run's own report</h1>"},
    )
    replaced = tmp_path / "report.html"
    replaced.write_text("<h1>Not the model's evaluation data</h1>", encoding="utf-8")
    store_audit("ui-audit-test", version, {"policy_version": "1"}, replaced)
    _sign_in(client, tokens.by_role["reviewer"])
    link = f"/ui/models/ui-audit-test/{version}/artifacts/fairness_report.html"

    card = client.get(f"/ui/models/ui-audit-test/{version}")
    served = client.get(link)
    store_audit("ui-audit-test", version, {"policy_version": "1"})
    without_report = client.get(link)

    assert f'href="{link}"' in card.text
    assert served.text == "<h1>Not the model's evaluation data</h1>"
    assert without_report.text == "<h1>The run's own report</h1>"


def test_model_page_asof_by_date(client, tokens, tmp_path):
    import mlflow

    from models.store import ASOF_ORDER_PARAM, configure_mlflow

    configure_mlflow()
    mlflow_client = mlflow.MlflowClient()
    experiment = mlflow_client.create_experiment(f"ui-asof-{tmp_path.name}")
    run = mlflow_client.create_run(experiment)
    for label in ("dec_1", "feb_1", "oct_1"):
        mlflow_client.log_metric(run.info.run_id, f"{label}.model.roc_auc", 0.7)
    mlflow_client.log_param(run.info.run_id, ASOF_ORDER_PARAM, "oct_1,dec_1,feb_1")
    mlflow_client.create_registered_model("ui-asof-test")
    version = mlflow_client.create_model_version(
        "ui-asof-test", run.info.artifact_uri, run_id=run.info.run_id
    )
    _sign_in(client, tokens.by_role["reviewer"])

    page = client.get(f"/ui/models/ui-asof-test/{version.version}").text

    positions = [page.index(label) for label in ("oct_1", "dec_1", "feb_1")]
    assert positions == sorted(positions)


def _version_with_artifacts(name, tmp_path, files):
    """Register a model version whose run has ``files``: {(folder, name): text}."""
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow()
    mlflow_client = mlflow.MlflowClient()
    experiment = mlflow_client.create_experiment(f"{name}-{tmp_path.name}")
    run = mlflow_client.create_run(experiment)
    for (folder, file_name), text in files.items():
        local = tmp_path / (folder or "top") / file_name
        local.parent.mkdir(exist_ok=True)
        local.write_text(text, encoding="utf-8")
        mlflow_client.log_artifact(run.info.run_id, str(local), folder)
    mlflow_client.create_registered_model(name)
    version = mlflow_client.create_model_version(
        name, run.info.artifact_uri, run_id=run.info.run_id
    )
    return version.version


@pytest.mark.parametrize(
    ("folder", "document"),
    [
        ("model_card", "model_card.html"),
        ("model_card", "model_card.md"),
        (None, "model_card.html"),
    ],
)
def test_model_card_document_found(client, tokens, tmp_path, folder, document):
    name = f"ui-card-{folder or 'top'}-{document.replace('.', '-')}"
    files = {(folder, document): "# Model card"}
    version = _version_with_artifacts(name, tmp_path, files)
    _sign_in(client, tokens.by_role["reviewer"])
    card = client.get(f"/ui/models/{name}/{version}")
    link = f"/ui/models/{name}/{version}/artifacts/{document}"
    served = client.get(link)
    assert f'href="{link}"' in card.text
    assert served.status_code == 200
    assert served.text == "# Model card"


def test_school_id_with_slash(client, trained, tmp_path, monkeypatch):
    """School-records units are named "school/year", and their pages open."""
    from serving.access import TokenStore

    school = "VOC00001/2024"
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = ScoreStore(url)
    rows = [
        StoredScore(
            pupil_id=f"p{i}",
            school_id=school,
            enrolment_id=f"e{i}",
            probability=0.5 - i / 10,
            school_rank=i + 1,
            school_size=3,
            reasons=[],
            contributions={"base_value_log_odds": 0.0, "features": []},
            features={"weighted_mean_score": 50.0},
        )
        for i in range(3)
    ]
    store.replace_run(RunKey("records", dt.date(2025, 2, 1), "m", "1"), rows)
    store.dispose()
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "slash")
    signed_in = _sign_in(client, token)
    assert signed_in.status_code == 303
    start = client.get("/ui/", follow_redirects=False)
    assert start.headers["location"] == f"/ui/schools/{school}"
    listing = client.get(f"/ui/schools/{school}")
    assert listing.status_code == 200
    assert re.findall(r'<tr data-pupil="([^"]+)"', listing.text) == ["p0", "p1", "p2"]
    for path in (
        f"/ui/schools/{school}/pupils/p1",
        "/ui/schools/VOC00001%2F2024/pupils/p1",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "p1" in page.text


def test_school_reasons_on_pupil_page(client, trained, tmp_path, monkeypatch):
    """Reasons from school-records features read as sentences, never column names."""
    from serving.access import TokenStore

    school = "BAS00001/2024"
    reasons = [
        {"feature": "age_years", "value": 14.2, "direction": "raises"},
        {"feature": "unexcused_share_4w", "value": 0.12, "direction": "raises"},
        {"feature": "attr_support_level", "value": 1.0, "direction": "raises"},
        {"feature": "grade_mean_term", "value": None, "direction": "lowers"},
    ]
    url = f"sqlite:///{tmp_path / 'records.db'}"
    _store_pupil_score(url, school, {"unexcused_share_4w": 0.12}, reasons)
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "fi")
    _sign_in(client, token)
    page = client.get(
        f"/ui/schools/{school}/pupils/p1", headers={"Accept-Language": "fi"}
    ).text
    assert (
        "Nostaa riskiä: selvittämättömiä poissaoloja 12 % oppitunneista "
        "viimeisten 4 viikon aikana" in page
    )
    assert "Nostaa riskiä: tehostettu tuki voimassa" in page
    assert (
        "Laskee riskiä: arvosanojen keskiarvo tämän lukukauden alusta: "
        "ei vielä merkintää" in page
    )
    assert "support_level" not in page
    assert "age_years" not in page
    # A low estimate may show only reasons that raise it, and the page explains why.
    assert "Osaa arvioon vaikuttavista tiedoista ei koskaan näytetä syinä" in page
    # Finnish readers get dates as day.month.year.
    assert "1.2.2025" in page
    assert "2025-02-01" not in page


def test_stored_reasons_one_per_group(client, trained, tmp_path, monkeypatch):
    """Reasons stored before the same_reason groups existed show one per group."""
    from serving.access import TokenStore

    school = "BAS00004"
    reasons = [
        {"feature": "unexcused_share_4w", "value": 0.12, "direction": "raises"},
        {"feature": "unexcused_share_recent", "value": 0.12, "direction": "raises"},
        {"feature": "days_enrolled", "value": 30.0, "direction": "lowers"},
    ]
    url = f"sqlite:///{tmp_path / 'grouped.db'}"
    _store_pupil_score(url, school, {"unexcused_share_4w": 0.12}, reasons)
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "g")
    _sign_in(client, token)
    kept = "unexcused absence from 12 % of lessons over the last 4 weeks"
    dropped = "unexcused absences 12 % over the last 4 weeks"
    for path in (f"/ui/schools/{school}", f"/ui/schools/{school}/pupils/p1"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert kept in page.text, path
        assert dropped not in page.text, path
        assert "enrolled for 30 days" in page.text, path


def test_estimate_names_label_window(client, trained, tmp_path, monkeypatch):
    """A model trained on a 6-month label window reads as a dropout within 6 months."""
    import mlflow

    from models.store import configure_mlflow
    from serving.access import TokenStore

    configure_mlflow()
    registry = mlflow.MlflowClient()
    name = f"ui-window-{tmp_path.name}"
    run = registry.create_run(registry.create_experiment(name))
    registry.log_param(run.info.run_id, "label_rule_window_days", "183")
    registry.create_registered_model(name)
    version = registry.create_model_version(
        name, run.info.artifact_uri, run_id=run.info.run_id
    ).version

    school = "BAS00002"
    url = f"sqlite:///{tmp_path / 'window.db'}"
    store = ScoreStore(url)
    # Sources accept pupil ids with Finnish letters, so the page must open.
    pupil_id = "Äärelä-7"
    row = StoredScore(
        pupil_id=pupil_id,
        school_id=school,
        enrolment_id="e1",
        probability=0.3,
        school_rank=1,
        school_size=1,
        reasons=[],
        contributions={"base_value_log_odds": 0.0, "features": []},
        features={},
    )
    store.replace_run(RunKey("records", dt.date(2025, 2, 1), name, version), [row])
    store.dispose()
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "w")
    _sign_in(client, token)
    expected = "About 3 in 10 pupils with a similar record dropped out within 6 months."
    listing = client.get(f"/ui/schools/{school}").text
    pupil = client.get(f"/ui/schools/{school}/pupils/{quote(pupil_id)}").text
    assert expected in listing
    assert expected in pupil
    assert "before the end of their course" not in pupil


def test_model_metrics_as_tables(client, tokens, tmp_path):
    """Run metrics read as one table per fold and as-of date, not dotted names."""
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow()
    registry = mlflow.MlflowClient()
    run = registry.create_run(registry.create_experiment(f"ui-metrics-{tmp_path.name}"))
    metrics = {
        "fold.cutoff_2014-01-01.model.roc_auc": 0.71,
        "fold.cutoff_2014-01-01.logistic.roc_auc": 0.69,
        "fold.cutoff_2014-01-01.model.ece": 0.021,
        "day_30.model.roc_auc": 0.68,
    }
    for key, value in metrics.items():
        registry.log_metric(run.info.run_id, key, value)
    name = f"ui-metrics-{tmp_path.name}"
    registry.create_registered_model(name)
    version = registry.create_model_version(
        name, run.info.artifact_uri, run_id=run.info.run_id
    ).version
    _sign_in(client, tokens.by_role["reviewer"])
    page = client.get(f"/ui/models/{name}/{version}", headers={"Accept-Language": "en"})
    captions = re.findall(r"<caption>([^<]+)</caption>", page.text)
    assert captions == ["Fold cutoff_2014-01-01", "Latest fold, as-of date day_30"]
    assert '<th scope="col">ROC-AUC</th>' in page.text
    assert '<th scope="col">Calibration error (ECE)</th>' in page.text
    assert re.search(
        r'<th scope="row">logistic</th><td class="num">0.690</td>', page.text
    )
    # The logistic regression has no ECE logged, which shows as a dash.
    assert '<td class="num">–</td>' in page.text
    assert "fold.cutoff_2014-01-01" not in page.text
    # Without a champion row there is nothing to caution about.
    assert 'id="champion-caveat"' not in page.text
    registry.log_metric(
        run.info.run_id, "fold.cutoff_2014-01-01.champion.roc_auc", 0.72
    )
    page = client.get(f"/ui/models/{name}/{version}", headers={"Accept-Language": "fi"})
    assert 'id="champion-caveat"' in page.text
    assert "vain viimeisimmällä jaksolla" in page.text


def _register_run_version(name: str, metrics: dict, params: dict) -> str:
    """Register a version of model ``name`` whose run logged ``metrics`` and
    ``params``, and return the version."""
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow()
    registry = mlflow.MlflowClient()
    run = registry.create_run(registry.create_experiment(name))
    for key, value in metrics.items():
        registry.log_metric(run.info.run_id, key, value)
    for key, value in params.items():
        registry.log_param(run.info.run_id, key, value)
    registry.create_registered_model(name)
    return registry.create_model_version(
        name, run.info.artifact_uri, run_id=run.info.run_id
    ).version


TOP_K_METRICS = {
    "day_30.model.precision_at_k_share": 0.4,
    "day_30.model.recall_at_k_per_unit": 0.3,
}


@pytest.mark.parametrize(
    ("language", "share_header", "k_header"),
    [
        ("en", "Precision in the top 10%", "Recall in the top 5 per school"),
        ("fi", "Tarkkuus kärkiosuudessa 10 %", "Saanti koulun 5 kärjessä"),
        ("sv", "Precision i toppandelen 10 %", "Täckning bland skolans 5 första"),
    ],
)
def test_top_k_headers_name_values(
    client, tokens, tmp_path, language, share_header, k_header
):
    name = f"ui-top-k-{language}-{tmp_path.name}"
    params = {"top_share": "0.1", "k_per_unit": "5"}
    version = _register_run_version(name, TOP_K_METRICS, params)
    _sign_in(client, tokens.by_role["reviewer"])

    page = client.get(
        f"/ui/models/{name}/{version}", headers={"Accept-Language": language}
    ).text

    assert f'<th scope="col">{share_header}</th>' in page
    assert f'<th scope="col">{k_header}</th>' in page


def test_top_k_headers_unrecorded(client, tokens, tmp_path):
    name = f"ui-top-k-unrecorded-{tmp_path.name}"
    version = _register_run_version(name, TOP_K_METRICS, {"k_per_unit": "None"})
    _sign_in(client, tokens.by_role["reviewer"])

    page = client.get(f"/ui/models/{name}/{version}").text

    assert "Precision in the top share (share not recorded)" in page
    assert "Recall in the top k per school (k not recorded)" in page


@pytest.mark.parametrize(
    ("language", "listed", "on_version"),
    [
        ("en", "No sign-off recorded", "No sign-off has been recorded"),
        ("fi", "Hyväksyntää ei ole kirjattu", "ei ole kirjattu hyväksyntää"),
        (
            "sv",
            "Inget godkännande har registrerats",
            "Inget godkännande har registrerats",
        ),
    ],
)
def test_missing_signoff_same_words(
    client, tokens, tmp_path, language, listed, on_version
):
    name = f"ui-no-signoff-{language}-{tmp_path.name}"
    version = _register_run_version(name, {}, {})
    _sign_in(client, tokens.by_role["reviewer"])
    headers = {"Accept-Language": language}

    models = client.get("/ui/models", headers=headers).text
    row = models[models.index(f"/models/{name}/") :].split("</tr>", 1)[0]
    page = client.get(f"/ui/models/{name}/{version}", headers=headers).text

    assert listed in row
    assert on_version in page
    assert Translator(language)("model.not_available") not in row


def _tied_store(url: str, school: str) -> None:
    """Store 30 pupils: ranks 11-20 all show 17%, the others differ."""
    probabilities = [0.5 - 0.02 * i for i in range(10)]
    probabilities += [0.1704 - 0.0001 * i for i in range(10)]
    probabilities += [0.1 - 0.002 * i for i in range(10)]
    rows = [
        StoredScore(
            pupil_id=f"t{rank:02d}",
            school_id=school,
            enrolment_id=f"te{rank:02d}",
            probability=probability,
            school_rank=rank,
            school_size=30,
            reasons=[],
            contributions={"base_value_log_odds": 0.0, "features": []},
            features={"weighted_mean_score": 50.0},
        )
        for rank, probability in enumerate(probabilities, start=1)
    ]
    store = ScoreStore(url)
    store.replace_run(RunKey("test", dt.date(2014, 3, 3), "m", "1"), rows)
    store.dispose()


def test_cutoff_inside_tie_explained(client, tokens, env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'tied.db'}"
    _tied_store(url, tokens.school)
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    UiStore(env / "ui.db").set_capacity(tokens.school, 15)
    _sign_in(client, tokens.by_role["staff"])
    note = (
        "Pupils ranked 11–20 all show an estimate of 17%, and the review cut-off "
        "after rank 15 falls among them."
    )
    first = client.get(f"/ui/schools/{tokens.school}").text
    second = client.get(f"/ui/schools/{tokens.school}?page=2").text
    assert first.count(note) == 1
    assert first.index('data-pupil="t15"') < first.index(note)
    assert second.count(note) == 1
    assert second.index(note) < second.index('data-pupil="t16"')
    assert "model&#39;s score before calibration" in first


def test_cutoff_between_estimates_no_note(client, tokens, env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'tied.db'}"
    _tied_store(url, tokens.school)
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    UiStore(env / "ui.db").set_capacity(tokens.school, 10)
    _sign_in(client, tokens.by_role["staff"])
    text = client.get(f"/ui/schools/{tokens.school}").text
    assert "cutoff-tie" not in text


def _own_pupil(scored, tokens) -> str:
    return next(row.pupil_id for row in scored if row.school_id == tokens.school)


@pytest.mark.parametrize(
    ("path_id", "stored_id"),
    [
        ("%3Cscript%3E", "<script>"),
        ("a%00b", "a\\x00b"),
        ("x" * 101, "x" * 100 + "…(101 characters)"),
    ],
)
def test_invalid_pupil_id_logged(client, tokens, env, path_id, stored_id):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get(f"/ui/schools/{tokens.school}/pupils/{path_id}")
    row = _access_rows(env)[-1]
    assert response.status_code == 404
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}"
    assert row["outcome"] == "404 invalid id"
    assert row["pupil_id"] == stored_id
    assert row["school_id"] == tokens.school
    assert row["role"] == "staff"


def test_review_invalid_id_logged(client, tokens, env):
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(f"/ui/schools/{tokens.school}")
    response = client.post(
        f"/ui/schools/{tokens.school}/pupils/a;b/reviews",
        data={"csrf": _csrf(page.text), "decision": "bogus"},
    )
    row = _access_rows(env)[-1]
    assert response.status_code == 404
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["outcome"] == "404 invalid id"
    assert row["pupil_id"] == "a;b"


def test_rejected_review_logged_as_post(client, tokens, scored, env):
    response = _post_review(client, tokens, scored, decision="bogus")
    row = _access_rows(env)[-1]
    assert response.status_code == 400
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["outcome"] == "400 invalid review"
    assert row["pupil_id"] == _own_pupil(scored, tokens)


def test_review_bad_csrf_logged(client, tokens, scored, env):
    response = _post_review(client, tokens, scored, csrf="forged")
    row = _access_rows(env)[-1]
    assert response.status_code == 403
    assert "did not come from this site" in response.text
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["outcome"] == "403 denied"
    assert row["pupil_id"] == _own_pupil(scored, tokens)
    assert row["school_id"] == tokens.school
    assert row["role"] == "staff"
    assert UiStore(env / "ui.db").reviews_of(tokens.school, [row["pupil_id"]]) == {
        row["pupil_id"]: []
    }


@pytest.fixture
def limited_client(env, monkeypatch) -> TestClient:
    """The pages behind the server's body limit, set to 1,000 bytes."""
    from serving.middleware import MAX_BODY_BYTES_ENV, BodyLimitMiddleware

    monkeypatch.setenv(MAX_BODY_BYTES_ENV, "1000")
    app = Starlette(routes=[Mount("/ui", app=ui_module.ui_app)])
    return TestClient(BodyLimitMiddleware(app), headers={"Accept-Language": "en"})


def test_large_review_form_logged(limited_client, tokens, scored, env):
    pupil = _own_pupil(scored, tokens)
    _sign_in(limited_client, tokens.by_role["staff"])
    page = limited_client.get(f"/ui/schools/{tokens.school}/pupils/{pupil}")
    data = {"csrf": _csrf(page.text), "decision": "monitor", "note": "x" * 2000}
    response = limited_client.post(
        f"/ui/schools/{tokens.school}/pupils/{pupil}/reviews", data=data
    )
    row = _access_rows(env)[-1]
    assert response.status_code == 413
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["outcome"] == "413 body too large"
    assert row["pupil_id"] == pupil
    assert row["school_id"] == tokens.school
    assert row["role"] == "staff"
    assert row["token_id"] == tokens.by_role["staff"].split("_")[1].split(".")[0]


def test_large_signin_form_logged(limited_client, env):
    form = limited_client.get("/ui/signin")
    data = {"token": "x" * 2000, "csrf": _csrf(form.text)}
    response = limited_client.post("/ui/signin", data=data)
    row = _access_rows(env)[-1]
    assert response.status_code == 413
    assert row["endpoint"] == "/ui/signin"
    assert row["outcome"] == "413 body too large"
    assert row["token_id"] is None
    assert row["pupil_id"] is None


def test_signoff_bad_csrf_logged(client, tokens, env):
    _sign_in(client, tokens.by_role["reviewer"])
    response = client.post(
        "/ui/models/some-model/3/signoff",
        data={"csrf": "forged", "decision": "approve"},
    )
    row = _access_rows(env)[-1]
    assert response.status_code == 403
    assert row["endpoint"] == "/ui/models/{name}/{version}/signoff"
    assert row["outcome"] == "403 denied"
    assert row["model_version"] == "some-model/3"
    assert row["role"] == "reviewer"


def test_other_school_id_shortened(client, tokens, env):
    _sign_in(client, tokens.by_role["staff"])
    response = client.get("/ui/schools/" + "S" * 8000)
    row = _access_rows(env)[-1]
    assert response.status_code == 403
    assert row["outcome"] == "403 denied"
    assert row["school_id"] == "S" * 100 + "…(8000 characters)"


@pytest.mark.parametrize("role", ["platform", "admin"])
def test_wrong_role_signin_logged(client, tokens, env, role):
    response = _sign_in(client, tokens.by_role[role])
    row = _access_rows(env)[-1]
    assert response.status_code == 403
    assert row["endpoint"] == "/ui/signin"
    assert row["outcome"] == "403 denied"
    assert row["role"] == role
    assert row["token_id"] == tokens.by_role[role].split("_")[1].split(".")[0]


def _assert_error_page(response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_form_field_over_limit_error_page(client, tokens):
    client.get("/ui/signin")
    response = client.post("/ui/signin", data={"token": "x" * (1024 * 1024 + 1)})
    _assert_error_page(response, 400)
    assert "longer than 1 MiB" in response.text
    assert "detail" not in response.text


def test_broken_multipart_error_page(client):
    client.get("/ui/signin")
    response = client.post(
        "/ui/signin",
        content=b"--b\r\nContent-Disposition: form-data\r\n\r\nx",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    _assert_error_page(response, 400)
    assert "The form could not be read" in response.text


def _store_pupil_score(
    url: str, school: str, features: dict, reasons: list | None = None
) -> None:
    """Store one score of pupil p1 at ``school`` in the store at ``url``."""
    row = StoredScore(
        pupil_id="p1",
        school_id=school,
        enrolment_id="e1",
        probability=0.4,
        school_rank=1,
        school_size=1,
        reasons=reasons or [],
        contributions={"base_value_log_odds": 0.0, "features": []},
        features=features,
    )
    store = ScoreStore(url)
    store.replace_run(RunKey("records", dt.date(2025, 2, 1), "m", "1"), [row])
    store.dispose()


UNAVAILABLE = "does not include support levels"


def test_support_level_shown_for_records(client, trained, tmp_path, monkeypatch):
    from serving.access import TokenStore

    school = "BAS00003"
    url = f"sqlite:///{tmp_path / 'support.db'}"
    features = {"support_level_max_365d": 1.0, "support_level_changes_365d": 1.0}
    _store_pupil_score(url, school, features)
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "s")
    _sign_in(client, token)
    page = client.get(f"/ui/schools/{school}/pupils/p1").text
    assert UNAVAILABLE not in page
    assert "highest support level over the last 365 days: intensified support" in page
    assert "support level changed 1 time over the last 365 days" in page


def test_support_unavailable_without_feature(client, tokens, scored):
    _sign_in(client, tokens.by_role["staff"])
    page = client.get(
        f"/ui/schools/{tokens.school}/pupils/{_own_pupil(scored, tokens)}"
    )
    assert page.status_code == 200
    assert UNAVAILABLE in page.text
    assert 'id="support"' not in page.text


NO_GRADES = "No graded work is recorded for this pupil yet"


@pytest.mark.parametrize(
    ("features", "has_chart"),
    [
        ({"grade_mean_term": None, "grade_mean_year": 6.75}, True),
        ({"grade_mean_term": None, "grade_mean_year": None}, False),
    ],
)
def test_records_grade_chart(
    client, trained, tmp_path, monkeypatch, features, has_chart
):
    from serving.access import TokenStore

    school = "BAS00004"
    url = f"sqlite:///{tmp_path / 'grades.db'}"
    _store_pupil_score(url, school, {"absence_share": 0.1, **features})
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(ui_module, "_context", None)
    token, _ = TokenStore(trained.home / "access.db").create("staff", [school], "s")
    _sign_in(client, token)

    pupil = client.get(f"/ui/schools/{school}/pupils/p1").text
    listed = client.get(f"/ui/schools/{school}").text

    assert (NO_GRADES in pupil) is not has_chart
    assert ("school-year average 6.8" in pupil) is has_chart
    assert ("school-year average 6.8" in listed) is has_chart


def test_store_unavailable_pages_503(client, tokens, env, monkeypatch):
    # A file where the SQLite store's folder belongs keeps the store from opening.
    blocker = env / "blocked"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", f"sqlite:///{blocker / 'scores.db'}")
    monkeypatch.setattr(ui_module, "_context", None)
    _sign_in(client, tokens.by_role["staff"])
    school = client.get(f"/ui/schools/{tokens.school}")
    pupil = client.get(f"/ui/schools/{tokens.school}/pupils/p1")
    review = client.post(
        f"/ui/schools/{tokens.school}/pupils/p1/reviews",
        data={"csrf": _csrf(school.text), "decision": "monitor", "note": ""},
    )
    for response in (school, pupil, review):
        _assert_error_page(response, 503)
        assert "Scores unavailable" in response.text
        assert "Try again in a few minutes" in response.text
    rows = _access_rows(env)[-3:]
    assert [row["outcome"] for row in rows] == ["503 store unavailable"] * 3
    assert [row["endpoint"] for row in rows] == [
        "/ui/schools/{school}",
        "/ui/schools/{school}/pupils/{id}",
        "/ui/schools/{school}/pupils/{id}/reviews",
    ]
    assert [row["pupil_id"] for row in rows] == [None, "p1", "p1"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/ui/schools/S1/pupils/p1", "GET, HEAD"),
        ("DELETE", "/ui/schools/S1", "GET, HEAD"),
        ("PUT", "/ui/signin", "GET, HEAD, POST"),
        ("GET", "/ui/signout", "POST"),
    ],
)
def test_wrong_method_405(client, method, path, allow):
    response = client.request(method, path, follow_redirects=False)
    _assert_error_page(response, 405)
    assert response.headers["allow"] == allow
    assert "HTTP 405" in response.text


def test_unknown_page_still_404(client):
    response = client.post("/ui/no-such-page")
    _assert_error_page(response, 404)
    assert "allow" not in response.headers
