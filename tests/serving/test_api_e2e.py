"""The HTTP API on a real server: access matrix, pupil reads, access log, metrics."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import socket
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serving.accesslog import AccessLog
from serving.scorestore import RunKey, ScoreStore

pytestmark = pytest.mark.e2e

ROLES = ("platform", "staff", "reviewer", "admin")
PUBLIC = ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json")
FINNISH_PUPIL = "Äärelä-7"
SAME_REASON_PUPIL = "P-same-reason"
SAME_GROUP_REASONS = [
    {
        "feature": "unexcused_share_4w",
        "value": 0.12,
        "contribution_log_odds": 0.5,
        "direction": "raises",
    },
    {
        "feature": "unexcused_share_recent",
        "value": 0.12,
        "contribution_log_odds": 0.4,
        "direction": "raises",
    },
    # A feature marked as never named after these reasons were stored.
    {
        "feature": "attr_support_status",
        "value": 1.0,
        "contribution_log_odds": 0.3,
        "direction": "raises",
    },
    {
        "feature": "days_enrolled",
        "value": 30.0,
        "contribution_log_odds": -0.2,
        "direction": "lowers",
    },
]
"""Stored reasons whose first two features share a same_reason group."""


@pytest.fixture(scope="module")
def api(trained, scored, tokens, launch, tmp_path_factory) -> Iterator[dict]:
    """A server whose score store contains the scheduled run as of 2014-03-03."""
    workdir = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{workdir / 'scores.db'}"
    store = ScoreStore(url)
    key = RunKey("oulad", dt.date(2014, 3, 3), trained.loaded.name, "1")
    store.replace_run(key, scored)
    store.replace_run(
        RunKey("oulad", dt.date(2014, 2, 3), trained.loaded.name, "1"), scored[:50]
    )
    # A pupil id with Finnish letters, which sources accept.
    finnish = dataclasses.replace(
        own := next(r for r in scored if r.school_id == tokens.school),
        pupil_id=FINNISH_PUPIL,
        enrolment_id=f"{own.enrolment_id}-fi",
    )
    # Reasons stored before the same_reason groups existed, naming two
    # features of one group and a feature that is now never named.
    grouped = dataclasses.replace(
        own,
        pupil_id=SAME_REASON_PUPIL,
        enrolment_id=f"{own.enrolment_id}-sr",
        reasons=SAME_GROUP_REASONS,
    )
    store.replace_run(
        RunKey("oulad", dt.date(2014, 1, 6), trained.loaded.name, "1"),
        [finnish, grouped],
    )
    store.dispose()
    env = {
        "AJOISSA_SCORE_STORE_URL": url,
        "AJOISSA_ACCESS_LOG": str(workdir / "access-log.db"),
    }
    with launch(trained.loaded.name, workdir, env=env) as running:
        yield {
            "server": running,
            "log": AccessLog(workdir / "access-log.db"),
        }


@pytest.fixture(scope="module")
def own_pupil(scored, tokens):
    """A pupil of the staff token's school who is in both stored runs."""
    return next(row for row in scored[:50] if row.school_id == tokens.school)


@pytest.fixture(scope="module")
def other_pupil(scored, tokens):
    """A pupil enrolled only at schools outside the staff token's."""
    schools: dict[str, set[str]] = {}
    for row in scored:
        schools.setdefault(row.pupil_id, set()).add(row.school_id)
    return next(row for row in scored if tokens.school not in schools[row.pupil_id])


def _request(api, method, path, headers=None, **kwargs) -> httpx.Response:
    url = f"{api['server'].url}{path}"
    return httpx.request(method, url, headers=headers, timeout=30, **kwargs)


def _routes(trained, own_pupil):
    body = {"records": trained.holdout_records[:3]}
    return {
        "score": ("POST", "/v1/score", {"json": body}),
        "explanation": ("GET", f"/v1/pupils/{own_pupil.pupil_id}/explanation", {}),
        "history": ("GET", f"/v1/pupils/{own_pupil.pupil_id}/history", {}),
        "model": ("GET", "/v1/model", {}),
        "tokens": ("GET", "/v1/tokens", {}),
    }


ALLOWED = {
    "score": {"platform"},
    "explanation": {"staff"},
    "history": {"staff"},
    "model": set(ROLES),
    "tokens": {"admin"},
}


@pytest.mark.parametrize("route", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(api, trained, tokens, own_pupil, route, role):
    method, path, kwargs = _routes(trained, own_pupil)[route]
    response = _request(api, method, path, tokens.header(role), **kwargs)
    expected = 200 if role in ALLOWED[route] else 403
    assert response.status_code == expected, response.text
    if expected == 403:
        named = {
            "admin": "an admin",
            "platform": "a platform",
            "reviewer": "a reviewer",
            "staff": "a staff",
        }[role]
        assert response.json()["error"].startswith(f"{named} token has no right")


@pytest.mark.parametrize("route", sorted(ALLOWED))
@pytest.mark.parametrize("kind", ["missing", "malformed", "unknown", "revoked"])
def test_no_valid_token_401(api, trained, tokens, own_pupil, route, kind):
    method, path, kwargs = _routes(trained, own_pupil)[route]
    headers = {
        "missing": {},
        "malformed": {"Authorization": "Basic dXNlcjpwYXNz"},
        "unknown": {"Authorization": "Bearer ajoissa_0123456789abcdef." + "x" * 43},
        "revoked": {"Authorization": f"Bearer {tokens.revoked}"},
    }[kind]
    response = _request(api, method, path, headers, **kwargs)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    expected = {
        "missing": "missing bearer token",
        "malformed": "the Authorization header has no bearer token",
        "unknown": "invalid or revoked bearer token",
        "revoked": "invalid or revoked bearer token",
    }[kind]
    assert error.startswith(expected)


def test_revoked_token_id_logged(api, trained, tokens):
    body = {"records": trained.holdout_records[:1]}
    headers = {"Authorization": f"Bearer {tokens.revoked}"}
    _request(api, "POST", "/v1/score", headers, json=body)
    row = api["log"].rows()[-1]
    token_id, secret = tokens.revoked.removeprefix("ajoissa_").split(".")
    assert row["outcome"] == "401 revoked"
    assert row["token_id"] == token_id
    assert row["role"] == "platform"
    assert secret not in str(row)


def test_favicon_without_token_404(api):
    before = api["server"].log().count("missing bearer token")
    response = _request(api, "GET", "/favicon.ico")
    assert response.status_code == 404
    assert api["server"].log().count("missing bearer token") == before


@pytest.mark.parametrize("path", PUBLIC)
def test_public_without_token(api, path):
    assert _request(api, "GET", path).status_code == 200


def test_unknown_route_needs_token(api):
    assert _request(api, "GET", "/v1/nothing-here").status_code == 401


def test_other_school_404(api, tokens, other_pupil):
    path = f"/v1/pupils/{other_pupil.pupil_id}/explanation"
    response = _request(api, "GET", path, tokens.header("staff"))
    assert response.status_code == 404
    assert "at your schools" in response.json()["error"]
    history = f"/v1/pupils/{other_pupil.pupil_id}/history"
    assert _request(api, "GET", history, tokens.header("staff")).status_code == 404


def test_invalid_pupil_id_422(api, tokens):
    path = "/v1/pupils/" + "x" * 101 + "/history"
    response = _request(api, "GET", path, tokens.header("staff"))
    assert response.status_code == 422
    assert (
        "pupil_id: expected a pupil id of 1 to 100 letters" in response.json()["error"]
    )
    problem = response.json()["problems"][0]
    assert problem["expected"].startswith("a pupil id of 1 to 100 letters")
    assert problem["message"].count("expected") == 1
    assert "^[" not in response.text


def test_finnish_pupil_id_read(api, tokens):
    path = f"/v1/pupils/{quote(FINNISH_PUPIL)}/history"
    response = _request(api, "GET", path, tokens.header("staff"))
    assert response.status_code == 200, response.text
    assert response.json()["pupil_id"] == FINNISH_PUPIL


def test_explanation_matches_store(api, tokens, own_pupil):
    path = f"/v1/pupils/{own_pupil.pupil_id}/explanation"
    body = _request(api, "GET", path, tokens.header("staff")).json()
    assert body["as_of"] == "2014-03-03"
    mine = [s for s in body["scores"] if s["school_id"] == tokens.school]
    assert mine[0]["probability"] == own_pupil.probability
    assert mine[0]["school_rank"] == own_pupil.school_rank
    assert len(mine[0]["contributions"]) == len(own_pupil.features)
    assert {s["school_id"] for s in body["scores"]} == {tokens.school}


@pytest.mark.parametrize("route", ["explanation", "history"])
def test_stored_reasons_as_shown_now(api, tokens, route):
    path = f"/v1/pupils/{SAME_REASON_PUPIL}/{route}"
    response = _request(api, "GET", path, tokens.header("staff"))
    body = response.json()
    entry = body["scores"][0] if route == "explanation" else body["entries"][0]
    features = [reason["feature"] for reason in entry["reasons"]]
    assert response.status_code == 200, response.text
    assert features == ["unexcused_share_4w", "days_enrolled"]


def test_history_newest_first(api, tokens, own_pupil):
    path = f"/v1/pupils/{own_pupil.pupil_id}/history"
    entries = _request(api, "GET", path, tokens.header("staff")).json()["entries"]
    dates = [entry["as_of"] for entry in entries]
    assert dates[0] == "2014-03-03"
    assert "2014-02-03" in dates


def test_api_equals_offline(api, tokens, scored, trained):
    # The feature values stored by the scheduled run, sent back through the API.
    rows = scored[:300]
    records = [row.features for row in rows]
    response = _request(
        api, "POST", "/v1/score", tokens.header("platform"), json={"records": records}
    )
    assert response.status_code == 200
    served = np.array([s["probability"] for s in response.json()["scores"]])
    offline = np.array([row.probability for row in rows])
    np.testing.assert_allclose(served, offline, rtol=0, atol=1e-12)


def test_score_rank_and_as_of(api, tokens, trained):
    body = {"records": trained.holdout_records[:20], "as_of": "2014-03-03"}
    response = _request(api, "POST", "/v1/score", tokens.header("platform"), json=body)
    scores = response.json()["scores"]
    top = max(scores, key=lambda s: s["probability"])
    assert top["rank"] == 1
    assert max(s["rank"] for s in scores) <= 20
    assert {s["as_of"] for s in scores} == {"2014-03-03"}


def test_bad_as_of_400(api, tokens, trained):
    record = dict(trained.holdout_records[0], mean_score="high")
    body = {"records": [record], "as_of": "3.3.2014"}
    response = _request(api, "POST", "/v1/score", tokens.header("platform"), json=body)
    assert response.status_code == 400
    fields = [problem["field"] for problem in response.json()["problems"]]
    assert fields == ["as_of", "mean_score"]


def test_model_description(api, tokens, trained):
    body = _request(api, "GET", "/v1/model", tokens.header("reviewer")).json()
    assert body["name"] == trained.loaded.name
    assert body["version"] == "1"
    assert body["alias"] == "champion"
    assert body["features"] == trained.spec.features
    assert len(body["artifact_sha256"]) == 64
    assert body["last_load_error"] is None
    assert body["registry_champion_version"] == "1"
    assert body["registry_champion_rejected"] is False
    # The test model is registered without a model card.
    assert body["model_card_url"] is None


def test_tokens_listed_without_secrets(api, tokens):
    response = _request(api, "GET", "/v1/tokens", tokens.header("admin"))
    listed = response.json()
    assert {entry["role"] for entry in listed} >= set(ROLES)
    for token in tokens.by_role.values():
        assert token.split(".", 1)[1] not in response.text


def test_metrics_count_requests(api, tokens):
    _request(api, "GET", "/v1/model", tokens.header("reviewer"))
    text = _request(api, "GET", "/metrics").text
    assert "bentoml_service_request_total" in text
    assert 'endpoint="/v1/score"' in text


def test_metrics_have_no_ids(api, tokens, own_pupil, other_pupil):
    own, other = own_pupil.pupil_id, other_pupil.pupil_id
    staff = tokens.header("staff")
    _request(api, "GET", f"/v1/pupils/{own}/explanation", staff)
    _request(api, "GET", f"/v1/pupils/{other}/history", staff)
    _request(api, "GET", f"/v1/pupils/{own}/history", tokens.header("admin"))
    _request(api, "GET", f"/ui/schools/{tokens.school}/pupils/{own}")
    _request(api, "GET", f"/ui/schools/{other_pupil.school_id}")
    _request(api, "GET", f"/no/such/{own}")
    text = _request(api, "GET", "/metrics").text
    for value in (own, other, tokens.school, other_pupil.school_id):
        assert value not in text
    assert 'endpoint="/v1/pupils/{pupil_id}/explanation"' in text
    assert 'endpoint="/ui/schools/{school_id}/pupils/{pupil_id}"' in text
    assert 'endpoint="{unmatched}"' in text


def test_access_log_records_reads(api, tokens, trained, own_pupil, other_pupil):
    body = {"records": trained.holdout_records[:2]}
    _request(api, "POST", "/v1/score", tokens.header("platform"), json=body)
    _request(
        api,
        "GET",
        f"/v1/pupils/{own_pupil.pupil_id}/explanation",
        tokens.header("staff"),
    )
    _request(
        api, "GET", f"/v1/pupils/{other_pupil.pupil_id}/history", tokens.header("admin")
    )
    rows = api["log"].rows()
    read = [r for r in rows if r["pupil_id"] == own_pupil.pupil_id]
    assert read[-1]["endpoint"] == "/v1/pupils/{id}/explanation"
    assert read[-1]["outcome"] == "200 ok"
    assert read[-1]["school_id"] == tokens.school
    assert read[-1]["role"] == "staff"
    assert read[-1]["model_version"] == "1"
    denied = [r for r in rows if r["pupil_id"] == other_pupil.pupil_id]
    assert denied[-1]["outcome"] == "403 denied"
    assert denied[-1]["role"] == "admin"
    scores = [r for r in rows if r["endpoint"] == "/v1/score"]
    assert scores[-1]["token_id"] is not None
    assert scores[-1]["outcome"] == "200 2 record(s)"
    assert api["log"].verify().ok


def test_no_pupil_ids_in_app_log(api, tokens, own_pupil):
    _request(
        api, "GET", f"/v1/pupils/{own_pupil.pupil_id}/history", tokens.header("staff")
    )
    assert f"/pupils/{own_pupil.pupil_id}/" not in api["server"].log()
    assert tokens.by_role["staff"] not in api["server"].log()


@pytest.fixture(scope="module")
def api_schema(api):
    """The server's own OpenAPI document, as schemathesis reads it."""
    url = api["server"].url
    schema = schemathesis.openapi.from_url(f"{url}/docs.json")
    schema.config.update(base_url=url)
    return schema


ROLE_BY_PREFIX = (
    ("/v1/score", "platform"),
    ("/v1/pupils/", "staff"),
    ("/v1/tokens", "admin"),
    ("/v1/model", "reviewer"),
)
FUZZ_EXAMPLES = 40
"""Generated requests per operation."""


def test_schema_no_5xx(api_schema, tokens):
    # NOTE: schemathesis 4.32.5's pytest loader (schemathesis.pytest.from_fixture)
    # fails under pytest 9.2 with "'Function' object has no attribute '_nodeid'",
    # so each operation's hypothesis strategy is driven directly.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {operation.path for operation in operations}
    assert {"/v1/score", "/v1/pupils/{pupil_id}/explanation"} <= paths
    for operation in operations:
        role = next(
            (r for prefix, r in ROLE_BY_PREFIX if operation.path.startswith(prefix)),
            "reviewer",
        )
        _fuzz(operation, tokens.header(role))()


def _fuzz(operation, headers):
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, (
            case.method,
            case.formatted_path,
            response.text[:300],
        )

    return check


def _post_declared_size(
    api, path: str, size: int, language: str = "en"
) -> tuple[int, str, str]:
    """Send only the headers of a form POST whose Content-Length is ``size``.

    Returns the status, the response headers and the body.
    """
    address = urlsplit(api["server"].url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Accept-Language: {language}\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(request.encode("ascii"))
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"</html>"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.decode("utf-8").partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), head.lower(), body


def test_large_form_log_has_no_ids(api, tokens, own_pupil):
    school, pupil = tokens.school, own_pupil.pupil_id
    path = f"/ui/schools/{school}/pupils/{pupil}/reviews"
    status, _, _ = _post_declared_size(api, path, 40_000_000)
    log = api["server"].log()
    assert status == 413
    assert (
        "rejected request to /ui/schools/{school_id}/pupils/{pupil_id}/reviews" in log
    )
    assert f"/pupils/{pupil}" not in log
    assert f"/schools/{school}" not in log


def test_large_form_access_logged(api, tokens, own_pupil):
    school, pupil = tokens.school, own_pupil.pupil_id
    path = f"/ui/schools/{school}/pupils/{pupil}/reviews"
    status, _, _ = _post_declared_size(api, path, 40_000_000)
    row = api["log"].rows()[-1]
    assert status == 413
    assert row["endpoint"] == "/ui/schools/{school}/pupils/{id}/reviews"
    assert row["outcome"] == "413 body too large"
    assert row["pupil_id"] == pupil
    assert row["school_id"] == school


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "The form was too large: the server accepts at most 33554432 bytes"),
        ("fi", "Lomake oli liian suuri: palvelin hyväksyy enintään 33554432 tavua"),
        ("sv", "Formuläret var för stort: servern tar emot högst 33554432 byte"),
    ],
)
def test_large_form_error_page(api, tokens, own_pupil, language, message):
    path = f"/ui/schools/{tokens.school}/pupils/{own_pupil.pupil_id}/reviews"
    status, head, body = _post_declared_size(api, path, 40_000_000, language)
    assert status == 413
    assert "content-type: text/html" in head
    assert "content-security-policy: default-src 'none'" in head
    assert "x-content-type-options: nosniff" in head
    assert f'<html lang="{language}">' in body
    assert message in body
    # Links of the page point under /ui, as on the pages themselves.
    assert 'href="/ui/ui.css"' in body
    assert "max_body_bytes" not in body


@pytest.mark.parametrize(
    ("path_id", "stored_id"),
    [
        ("P0000000%00", "P0000000\\x00"),
        ("x" * 101, "x" * 100 + "…(101 characters)"),
        (";", ";"),
    ],
)
def test_invalid_pupil_id_logged(api, tokens, path_id, stored_id):
    path = f"/v1/pupils/{path_id}/explanation"
    response = _request(api, "GET", path, tokens.header("staff"))
    row = api["log"].rows()[-1]
    assert response.status_code == 422
    assert row["endpoint"] == "/v1/pupils/{id}/explanation"
    assert row["outcome"] == "422 invalid id"
    assert row["pupil_id"] == stored_id
    assert row["role"] == "staff"
    assert row["token_id"] == tokens.by_role["staff"].split("_")[1].split(".")[0]


def test_unknown_page_gets_error_page(api):
    response = _request(api, "GET", "/ui/search")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_docs_page_not_served(api, tokens):
    response = _request(api, "GET", "/docs", tokens.header("reviewer"))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/v1/model", "reviewer"),
        ("/v1/tokens", "admin"),
        ("/healthz", None),
        ("/ui/signin", None),
    ],
)
def test_head_like_get(api, tokens, path, role):
    headers = tokens.header(role) if role else None
    get = _request(api, "GET", path, headers)
    head = _request(api, "HEAD", path, headers)
    assert head.status_code == 200
    assert get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_needs_token(api, own_pupil):
    response = _request(api, "HEAD", f"/v1/pupils/{own_pupil.pupil_id}/history")
    assert response.status_code == 401
    assert response.content == b""


def test_head_pupil_read_logged_as_get(api, tokens, own_pupil):
    path = f"/v1/pupils/{own_pupil.pupil_id}/explanation"
    response = _request(api, "HEAD", path, tokens.header("staff"))
    row = api["log"].rows()[-1]
    assert response.status_code == 200
    assert response.content == b""
    assert row["endpoint"] == "/v1/pupils/{id}/explanation"
    assert row["outcome"] == "200 ok"
    assert row["pupil_id"] == own_pupil.pupil_id
    assert row["role"] == "staff"


def test_head_pupil_page_logged_as_get(api, tokens, own_pupil):
    with httpx.Client(base_url=api["server"].url, timeout=30) as client:
        form = client.get("/ui/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/signin", data={"token": tokens.by_role["staff"], "csrf": csrf})
        path = f"/ui/schools/{tokens.school}/pupils/{own_pupil.pupil_id}"
        response = client.head(path)
        missing = client.head(f"/ui/schools/{tokens.school}/pupils/no-such-pupil")
    rows = api["log"].rows()[-2:]
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("text/html")
    assert missing.status_code == 404
    assert rows[0]["endpoint"] == "/ui/schools/{school}/pupils/{id}"
    assert rows[0]["outcome"] == "200 ok"
    assert rows[0]["pupil_id"] == own_pupil.pupil_id
    assert rows[1]["outcome"] == "404 no score"
    assert rows[1]["pupil_id"] == "no-such-pupil"
