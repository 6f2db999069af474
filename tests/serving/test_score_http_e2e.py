"""/v1/score over HTTP: include_reasons, the body cap and the error format."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator

import httpx
import pytest

from serving.accesslog import AccessLog

pytestmark = pytest.mark.e2e

BODY_LIMIT = 50_000
"""A small AJOISSA_MAX_BODY_BYTES, so that a few hundred records exceed it."""
ERROR_KEYS = {"error", "problem_count", "problems"}


@pytest.fixture(scope="module")
def server(trained, tokens, launch, tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("score-http")
    env = {
        "AJOISSA_MAX_BODY_BYTES": str(BODY_LIMIT),
        "AJOISSA_ACCESS_LOG": str(workdir / "access-log.db"),
    }
    with launch(trained.loaded.name, workdir, env=env) as running:
        yield {"url": running.url, "log": AccessLog(workdir / "access-log.db")}


def _post(server, tokens, **kwargs) -> httpx.Response:
    headers = tokens.header("platform") | kwargs.pop("headers", {})
    return httpx.post(
        f"{server['url']}/v1/score", headers=headers, timeout=60, **kwargs
    )


def test_reasons_skipped_on_request(server, tokens, trained):
    body = {"records": trained.holdout_records[:3], "include_reasons": False}
    response = _post(server, tokens, json=body)
    assert response.status_code == 200
    assert [s["reasons"] for s in response.json()["scores"]] == [None] * 3


def test_reasons_by_default(server, tokens, trained):
    response = _post(server, tokens, json={"records": trained.holdout_records[:3]})
    assert all(isinstance(s["reasons"], list) for s in response.json()["scores"])


def test_reasons_option_must_be_boolean(server, tokens, trained):
    body = {"records": trained.holdout_records[:1], "include_reasons": "no"}
    response = _post(server, tokens, json=body)
    assert response.status_code == 400
    assert response.json()["problems"][0]["field"] == "include_reasons"


def test_misspelled_option_400(server, tokens, trained):
    body = {"records": trained.holdout_records[:1], "include_reason": False}
    response = _post(server, tokens, json=body)
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert [p["field"] for p in problems] == ["include_reason"]
    assert problems[0]["kind"] == "unknown"
    assert "records, as_of, include_reasons" in problems[0]["expected"]
    assert "Expected fields:" not in response.json()["error"]


def test_negative_count_400(server, tokens, trained):
    record = dict(trained.holdout_records[0], assessments_due=-2)
    response = _post(server, tokens, json={"records": [record]})
    problem = response.json()["problems"][0]
    assert response.status_code == 400
    assert problem["field"] == "assessments_due"
    assert problem["value"] == -2
    assert problem["expected"] == "a whole number of at least 0, or null"


def test_large_body_413(server, tokens, trained):
    records = trained.holdout_records * 2
    assert len(json.dumps({"records": records})) > BODY_LIMIT
    response = _post(server, tokens, json={"records": records})
    body = response.json()
    assert response.status_code == 413
    assert body["max_body_bytes"] == BODY_LIMIT
    assert "Send fewer records per request" in body["error"]


def test_chunked_large_body_413(server, tokens, trained):
    content = json.dumps({"records": trained.holdout_records * 2}).encode()
    response = _post(
        server,
        tokens,
        content=iter([content[:1000], content[1000:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_chunked_small_body_scored(server, tokens, trained):
    content = json.dumps({"records": trained.holdout_records[:2]}).encode()
    response = _post(
        server,
        tokens,
        content=iter([content[:10], content[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert len(response.json()["scores"]) == 2


def test_body_parsed_by_bentoml_scores_same(server, tokens, trained):
    # A text/plain body skips ScoreBodyMiddleware and BentoML parses it.
    content = json.dumps(
        {"records": trained.holdout_records[:5], "as_of": "2024-01-31"}
    )
    by_middleware = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    by_bentoml = _post(
        server, tokens, content=content, headers={"Content-Type": "text/plain"}
    )
    assert by_middleware.status_code == by_bentoml.status_code == 200
    assert by_middleware.json() == by_bentoml.json()
    assert by_middleware.json()["scores"][0]["as_of"] == "2024-01-31"


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'"records"'])
def test_unparseable_body_error_format(server, tokens, content):
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert set(body) == ERROR_KEYS
    assert body["problems"][0]["field"] == "body"
    assert "Send a JSON object" in body["error"]


@pytest.mark.parametrize("content", [b"{", b'{"records": [{}]', b"{} x"])
def test_invalid_json_object_error_format(server, tokens, content):
    # The middleware keeps a body that starts with "{" for the handler, which
    # finds that it is not valid JSON.
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert set(body) == ERROR_KEYS
    assert [p["field"] for p in body["problems"]] == ["body"]
    assert body["problems"][0]["expected"].startswith("valid JSON")
    assert "request body is invalid; expected valid JSON" in body["error"]


@pytest.mark.parametrize("content", [b"", b"  \n"])
def test_empty_body_named(server, tokens, content):
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert set(body) == ERROR_KEYS
    assert [p["field"] for p in body["problems"]] == ["body"]
    assert "request body is empty; expected a JSON object" in body["error"]
    assert '"records" is a non-empty array of records' in body["error"]
    assert "null" not in body["error"]


@pytest.mark.parametrize(
    "content", [b"{}", b'{"as_of": "2024-01-31"}', b'{"include_reason": false}']
)
def test_missing_records_named(server, tokens, content):
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    records = [p for p in body["problems"] if p["field"] == "records"]
    assert response.status_code == 400
    assert len(records) == 1
    assert records[0]["kind"] == "missing"
    assert records[0]["record"] is None
    assert "field 'records': missing; expected a non-empty array" in body["error"]
    assert "keyed by the model's feature names" in body["error"]
    assert "value null is invalid" not in body["error"]


def test_blank_category_no_warning(server, tokens, trained):
    record = dict(trained.holdout_records[0])
    categorical = next(k for k, v in record.items() if isinstance(v, str))
    blank = _post(server, tokens, json={"records": [dict(record, **{categorical: ""})]})
    missing = _post(
        server, tokens, json={"records": [dict(record, **{categorical: None})]}
    )
    assert blank.status_code == 200
    assert blank.json()["warnings"] == []
    assert (
        blank.json()["scores"][0]["probability"]
        == missing.json()["scores"][0]["probability"]
    )


def _reject_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_infinite_value_400_is_strict_json(server, tokens, trained):
    # from_json reads the Infinity token, the validation rejects it, and the
    # error body must still be JSON that any client parses.
    record = dict(trained.holdout_records[0])
    numeric = next(k for k, v in record.items() if isinstance(v, float))
    record[numeric] = float("inf")
    content = json.dumps({"records": [record]})
    assert "Infinity" in content
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    body = json.loads(response.text, parse_constant=_reject_constant)
    assert body["problems"][0]["field"] == numeric


def test_deeply_nested_body_400(server, tokens):
    # The body starts as a JSON object, and from_json stops at its nesting limit.
    content = b'{"records": ' + b"[" * 300 + b"]" * 300 + b"}"
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert set(body) == ERROR_KEYS
    assert [problem["field"] for problem in body["problems"]] == ["body"]


def test_error_formats_match(server, tokens, trained):
    unparseable = _post(
        server, tokens, content=b"{", headers={"Content-Type": "application/json"}
    )
    invalid = _post(server, tokens, json={"records": [{"x": 1}]})
    unauthenticated = httpx.post(f"{server['url']}/v1/score", json={}, timeout=30)
    assert set(unparseable.json()) == ERROR_KEYS
    assert set(invalid.json()) == ERROR_KEYS
    assert set(unauthenticated.json()) == ERROR_KEYS
    assert set(unparseable.json()["problems"][0]) == set(invalid.json()["problems"][0])


def test_rejected_bodies_logged(server, tokens, trained):
    before = len(server["log"].rows())
    _post(server, tokens, content=b"{", headers={"Content-Type": "application/json"})
    _post(server, tokens, json={"records": trained.holdout_records * 2})
    outcomes = [row["outcome"] for row in server["log"].rows()[before:]]
    assert outcomes == ["400 0 record(s)", "413 body too large"]
    assert server["log"].verify().ok


def test_openapi_documents_errors(server):
    document = httpx.get(f"{server['url']}/docs.json", timeout=30).json()
    responses = document["paths"]["/v1/score"]["post"]["responses"]
    reference = {"$ref": "#/components/schemas/ErrorBody"}
    for code in ("400", "401", "403", "413", "503"):
        assert responses[code]["content"]["application/json"]["schema"] == reference
    assert "Problem" in document["components"]["schemas"]
    request = json.dumps(document["paths"]["/v1/score"]["post"]["requestBody"])
    assert "include_reasons" in request


def test_timeout_setting_applied(trained, tokens, launch, tmp_path):
    # 9,000 records take far longer than 0.05 s to parse and score, so the
    # request times out only if BentoML received the setting.
    env = {"AJOISSA_REQUEST_TIMEOUT_SECONDS": "0.05", "AJOISSA_WORKERS": "1"}
    body = {"records": trained.holdout_records * 3}
    with launch(trained.loaded.name, tmp_path, env=env) as running:
        response = httpx.post(
            f"{running.url}/v1/score",
            headers=tokens.header("platform"),
            json=body,
            timeout=120,
        )
    assert response.status_code == 504
    assert "0.05 seconds" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/score", 405), ("GET", "/v1/nothing", 404)],
)
def test_routing_errors_in_error_format(server, tokens, method, path, status):
    response = httpx.request(
        method, f"{server['url']}{path}", headers=tokens.header("platform"), timeout=30
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == ERROR_KEYS
    assert path in response.json()["error"]
    if status == 405:
        assert "POST" in response.headers["allow"]


def test_openapi_names_product_version(server):
    document = httpx.get(f"{server['url']}/docs.json", timeout=30).json()
    assert document["info"]["version"] == importlib.metadata.version("ajoissa")
    assert document["info"]["license"]["name"] == "EUPL-1.2"
    assert "contact" not in document["info"]


def test_bare_infinity_named_alike(server, tokens, trained):
    record = dict(trained.holdout_records[0])
    numeric = next(k for k, v in record.items() if isinstance(v, float))
    record[numeric] = float("inf")
    # json.dumps writes the bare token Infinity, which the body parser reads.
    content = json.dumps({"records": [record]})
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    problem = response.json()["problems"][0]
    assert response.status_code == 400
    assert problem["value"] == "Infinity"
    assert "value Infinity is invalid" in problem["message"]


def test_latin1_body_named(server, tokens, trained):
    record = dict(trained.holdout_records[0])
    categorical = next(k for k, v in record.items() if isinstance(v, str))
    record[categorical] = "Jyväskylä"
    content = json.dumps({"records": [record]}, ensure_ascii=False).encode("latin-1")
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert "request body is not UTF-8 text" in body["error"]
    assert "valid JSON" not in body["error"]
    assert body["problems"][0]["field"] == "body"


def test_huge_integer_named(server, tokens, trained):
    record = dict(trained.holdout_records[0])
    numeric = next(k for k, v in record.items() if isinstance(v, float))
    record[numeric] = 0.123456789
    # Python's str() of an int stops at 4300 digits, so the text is built.
    huge = "1" + "0" * 5000
    content = json.dumps({"records": [record]}).replace("0.123456789", huge)
    response = _post(
        server, tokens, content=content, headers={"Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert "5001 digits" in body["error"]
    assert "valid JSON" not in body["error"]
    assert body["problems"][0]["field"] == "body"
