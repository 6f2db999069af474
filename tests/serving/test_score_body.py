"""ScoreBodyMiddleware: the /v1/score body kept for the handler, as BentoML parses it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serving.middleware import (
    SCORE_BODY_KEY,
    SCORE_PATH,
    ScoreBodyMiddleware,
    parse_score_body,
)
from serving.service import ScoringService, score_arguments

BODIES = [
    b'{"records": [{"a": 1, "b": "x"}], "as_of": "2024-01-31"}',
    b'{"records": [1], "records": [2]}',
    b'{"records": [{"a": 1, "a": 2.5}]}',
    b'{"records": [NaN, Infinity, -Infinity, 1e400, -0.0, 1E2]}',
    b'{"records": [123456789012345678901234567890, -9223372036854775809]}',
    b'{"records": ["\\u00e4", "\\ud83d\\ude00", ""], "include_reasons": false}',
    b'{"records": null, "as_of": 20240131, "include_reasons": null}',
    b'{"records": [[], {}, true, null], "other": 1}',
    b'  {"include_reasons": "no"}  ',
    b"{}",
]
PASSED_THROUGH = [
    b"not json",
    b"[1, 2]",
    b'"records"',
    b"1",
    b"null",
    b"\xef\xbb\xbf{}",
]
NOT_JSON_OBJECTS = [b"{", b' \r\n\t{"records": [', b"{} x", b'{"a": 1,}', b"{\xff}"]
"""Bodies that start as a JSON object but are not valid JSON."""


def _run(
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "POST",
    path: str = SCORE_PATH,
    chunk: int | None = None,
) -> tuple[dict[str, Any], bytes] | None:
    """Send ``body`` through the middleware; return the scope and body it passed on."""
    if headers is None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    size = chunk or max(len(body), 1)
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    seen: list[tuple[dict[str, Any], bytes]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def app(scope: dict[str, Any], receive, send) -> None:
        received = []
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        seen.append((scope, b"".join(received)))

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("the middleware sends nothing itself")

    asyncio.run(ScoreBodyMiddleware(app)(scope, receive, send))
    return seen[0] if seen else None


def _bentoml_fields(body: bytes) -> dict[str, Any]:
    """Return the handler's arguments as BentoML's own input model parses ``body``."""
    input_model = ScoringService.apis["score"].input_spec
    parsed = input_model.model_validate_json(body or b"{}")
    return {name: getattr(parsed, name) for name in type(parsed).model_fields}


def _handler_fields(kept: bytes) -> dict[str, Any]:
    parsed = parse_score_body(kept)
    assert parsed is not None
    names = ("records", "as_of", "include_reasons")
    return dict(zip(names, score_arguments(parsed), strict=True))


def _same(left: Any, right: Any) -> bool:
    """Equal values of equal types, with NaN equal to NaN."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return left == right or (left != left and right != right)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict):
        return list(left) == list(right) and all(
            _same(left[key], right[key]) for key in left
        )
    return left == right


@pytest.mark.parametrize("body", BODIES)
def test_parsed_as_bentoml_parses(body):
    scope, passed = _run(body)
    assert passed == b"{}"
    assert (b"content-length", b"2") in scope["headers"]
    assert _same(_handler_fields(scope[SCORE_BODY_KEY]), _bentoml_fields(body))


@pytest.mark.parametrize("body", BODIES[:3])
def test_chunked_body_parsed(body):
    scope, passed = _run(
        body, headers=[(b"content-type", b"application/json")], chunk=7
    )
    assert passed == b"{}"
    assert _same(_handler_fields(scope[SCORE_BODY_KEY]), _bentoml_fields(body))


def test_json_object_kept_as_bytes():
    for body in (BODIES[0], BODIES[3]):
        scope, _ = _run(body)
        assert scope[SCORE_BODY_KEY] == body


@pytest.mark.parametrize("body", NOT_JSON_OBJECTS)
def test_invalid_json_object_stored(body):
    # The handler reports these; BentoML does not see them.
    scope, passed = _run(body)
    assert passed == b"{}"
    assert scope[SCORE_BODY_KEY] == body
    assert parse_score_body(body) is None


@pytest.mark.parametrize("body", [b"", b" \r\n\t"])
def test_empty_body_stored(body):
    # The handler reports an empty body as empty, which BentoML cannot.
    scope, passed = _run(body)
    assert passed == b"{}"
    assert scope[SCORE_BODY_KEY] == body


def test_unparseable_stored_body_gives_none():
    nested = b'{"records": ' + b"[" * 300 + b"]" * 300 + b"}"
    assert parse_score_body(nested) is None


def test_empty_object_keeps_defaults():
    scope, _ = _run(b"{}")
    assert _handler_fields(scope[SCORE_BODY_KEY]) == {
        "records": None,
        "as_of": None,
        "include_reasons": True,
    }


@pytest.mark.parametrize("body", PASSED_THROUGH)
def test_other_bodies_passed_through(body):
    scope, passed = _run(body)
    assert passed == body
    assert SCORE_BODY_KEY not in scope
    assert (b"content-length", str(len(body)).encode()) in scope["headers"]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"text/plain")],
        [(b"content-type", b"multipart/form-data; boundary=x")],
        [(b"content-type", b"application/x-www-form-urlencoded")],
    ],
)
def test_other_media_types_passed_through(headers):
    body = BODIES[0]
    scope, passed = _run(body, headers=headers)
    assert passed == body
    assert SCORE_BODY_KEY not in scope


def test_media_type_parameters_and_missing_type_parsed():
    charset = [(b"content-type", b"application/json; charset=utf-8")]
    assert SCORE_BODY_KEY in _run(BODIES[0], headers=charset)[0]
    assert SCORE_BODY_KEY in _run(BODIES[0], headers=[])[0]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", SCORE_PATH), ("POST", "/v1/other")]
)
def test_other_requests_untouched(method, path):
    scope, passed = _run(BODIES[0], method=method, path=path)
    assert passed == BODIES[0]
    assert SCORE_BODY_KEY not in scope


def test_disconnect_before_body_end_stops():
    headers = [(b"content-type", b"application/json")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def app(scope, receive, send) -> None:
        raise AssertionError("the application must not run")

    scope = {"type": "http", "method": "POST", "path": SCORE_PATH, "headers": headers}
    asyncio.run(ScoreBodyMiddleware(app)(scope, receive, None))
