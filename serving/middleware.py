"""ASGI middleware that serves HEAD, caps request bodies and keeps one error format.

All but the first sit behind :class:`serving.auth.AccessControlMiddleware`,
so a request without a valid token is rejected before its body is read.

:class:`HeadAsGetMiddleware`
    Passes a HEAD request on as GET and drops the response body.
:class:`BodyLimitMiddleware`
    Rejects a request body larger than ``AJOISSA_MAX_BODY_BYTES`` (default
    ``DEFAULT_MAX_BODY_BYTES``) with 413: an ``ErrorBody``, or the review
    pages' HTML error page under ``/ui``. A ``Content-Length`` above the limit
    is rejected before any byte is read. A body without ``Content-Length``
    (chunked) is read up to the limit and then passed on from memory.
:class:`ErrorFormatMiddleware`
    BentoML 1.4 rejects a ``/v1/score`` body that is not a JSON object with
    its own 400 body (``error`` and ``detail``). This middleware rewrites that body
    to :class:`~serving.api_models.ErrorBody` and writes the request to the
    access log, because the scoring handler never runs for it. It also adds
    the error responses of ``/v1/score`` to the OpenAPI document at
    ``/docs.json``, which BentoML generates with its own error schemas.
:class:`ScoreBodyMiddleware`
    Hands a ``/v1/score`` body that starts as a JSON object to the handler,
    which decodes it in less than a third of the time that BentoML's input
    model takes.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import anyio.to_thread
from pydantic_core import from_json

from serving.accesslog import AccessEvent, AccessLog
from serving.api_models import ErrorBody, error_body
from serving.auth import PRINCIPAL_KEY
from serving.metrics import route_template
from serving.storeconnection import worker_connection
from serving.ui.app import MOUNT_PATH as UI_PATH
from serving.ui.app import send_form_too_large

logger = logging.getLogger(__name__)

MAX_BODY_BYTES_ENV = "AJOISSA_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""32 MiB. A record of the 19-feature OULAD model takes 531 bytes as compact
JSON (about 28 bytes per feature), so 10,000 records of up to about 100
features fit."""

SCORE_PATH = "/v1/score"
SCORE_BODY_KEY = "ajoissa.score_body"
"""Scope key of a ``/v1/score`` body that starts as a JSON object or is empty,
as bytes; see :class:`ScoreBodyMiddleware`."""
_OBJECT_START = re.compile(rb"[ \t\n\r]*\{")
"""Matches the start of a JSON object, after JSON's whitespace characters."""
_EMPTY = re.compile(rb"[ \t\n\r]*")
"""Matches a body that is empty or contains only JSON's whitespace characters."""
OPENAPI_PATH = "/docs.json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def max_body_bytes() -> int:
    """Return ``AJOISSA_MAX_BODY_BYTES`` or ``DEFAULT_MAX_BODY_BYTES``.

    Raises
    ------
    ValueError
        If the setting is not a positive whole number of bytes.
    """
    raw = os.environ.get(MAX_BODY_BYTES_ENV)
    if raw is None:
        return DEFAULT_MAX_BODY_BYTES
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(
            f"invalid {MAX_BODY_BYTES_ENV}={raw!r}: expected a whole number of "
            "bytes, 1 or more"
        )
    return int(raw)


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list | None = None
) -> None:
    """Send ``body`` as a complete JSON response with ``status``."""
    content = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode("ascii")),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _log_score_request(log: AccessLog, scope: Scope, outcome: str) -> None:
    principal = scope.get(PRINCIPAL_KEY)
    event = AccessEvent(
        endpoint=SCORE_PATH,
        outcome=outcome,
        token_id=principal.token_id if principal else None,
        role=principal.role if principal else None,
    )
    await anyio.to_thread.run_sync(log.append, event)


def _path(scope: Scope) -> str:
    return scope["path"].rstrip("/") or "/"


class HeadAsGetMiddleware:
    """Handle HEAD as GET, sending the GET's status and headers and no body.

    FastAPI 0.165 does not add HEAD to a route declared with GET, so without
    this middleware HEAD gets 405 there. This middleware runs before access
    control and passes HEAD on as GET. So a HEAD needs the same token or
    session as the GET and writes the same access-log row, because its status
    shows whether the page exists. The
    server still sees HEAD in its own scope, so it sends no body either.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)


class BodyLimitMiddleware:
    """Reject request bodies above ``AJOISSA_MAX_BODY_BYTES`` with 413."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.limit = max_body_bytes()
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.limit:
                await self._reject(scope, receive, send, declared)
                return
            # Within the limit: the server stops the body at Content-Length.
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client disconnected before the body was complete.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(scope, receive, send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, size: int
    ) -> None:
        path = _path(scope)
        # Paths of the read API and the review pages contain pupil and school
        # ids, so the log names the route template instead.
        template = route_template(path)
        logger.info(
            "rejected request to %s: body of %d bytes exceeds %d",
            template,
            size,
            self.limit,
        )
        if path == SCORE_PATH:
            await _log_score_request(self.access_log, scope, "413 body too large")
        if path == UI_PATH or path.startswith(f"{UI_PATH}/"):
            # The review pages send their own error page, in the
            # reader's language.
            await send_form_too_large(scope, receive, send, self.limit)
            return
        message = (
            f"request body of {size} bytes or more is too large: the limit is "
            f"{self.limit} bytes ({MAX_BODY_BYTES_ENV}). Send fewer records per "
            "request, leave out spaces and indentation in the JSON, or ask the "
            "operator to raise the limit."
        )
        body = error_body(message) | {"max_body_bytes": self.limit}
        await send_json(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, body)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ErrorFormatMiddleware:
    """Rewrite BentoML's request-parsing 400 and document the error format."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _path(scope)
        if path == SCORE_PATH and scope["method"] == "POST":
            await self.app(scope, receive, _Buffered(send, self._rewrite_400, scope))
        elif path == OPENAPI_PATH and scope["method"] == "GET":
            await self.app(scope, receive, _Buffered(send, _patch_openapi, scope))
        elif path.startswith(API_PREFIX):
            await self.app(scope, receive, _Buffered(send, _routing_error, scope))
        elif path == READY_PATH and scope["method"] == "GET":
            await self.app(scope, receive, _Buffered(send, _readiness, scope))
        else:
            await self.app(scope, receive, send)

    async def _rewrite_400(
        self, scope: Scope, status: int, content: bytes
    ) -> bytes | None:
        if status != HTTPStatus.BAD_REQUEST:
            return None
        try:
            body = json.loads(content)
        except ValueError:
            return None
        # NOTE: BentoML 1.4.40's 400 body has "error" and "detail". If an
        # upgrade changes it, that body passes through unchanged and no
        # access-log row is written for the request.
        if not isinstance(body, dict) or "detail" not in body or "problems" in body:
            return None
        await _log_score_request(self.access_log, scope, "400 0 record(s)")
        return json.dumps(_from_bentoml(body["detail"])).encode("utf-8")


API_PREFIX = "/v1/"
READY_PATH = "/readyz"
NOT_READY_MESSAGE = (
    "not ready: no verified champion model is loaded, so scoring requests get "
    "503. The server log, and GET /v1/model with any token, give the reason "
    "(for example no model version with the champion alias, or a failed "
    "integrity check). Register or promote a model; the server loads it "
    "within its reload interval (AJOISSA_RELOAD_SECONDS, 30 s by default)."
)
"""``GET /readyz`` is public, so its 503 body names no model, path or error."""


async def _readiness(scope: Scope, status: int, content: bytes) -> bytes | None:
    """Replace BentoML's plain-text body of ``/readyz`` with JSON.

    A 503 gets an ErrorBody. Both bodies name the score store's state
    (``connecting``, ``available`` or ``unavailable``), which does not change
    the status, because scoring works without the store.
    """
    connection = worker_connection()
    store_state = {"score_store": connection.state} if connection else {}
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        body = error_body(NOT_READY_MESSAGE) | store_state
    elif status == HTTPStatus.OK:
        body = {"ready": True} | store_state
    else:
        return None
    return json.dumps(body).encode("utf-8")


async def _routing_error(scope: Scope, status: int, content: bytes) -> bytes | None:
    """Return the error format for a 404 or 405 that came from the router.

    Starlette returns plain text for an unknown path or method, and FastAPI
    returns ``{"detail": ...}``. The API's own errors already have ``error``.
    """
    if status not in (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED):
        return None
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return None
    method, path = scope["method"], _path(scope)
    if status == HTTPStatus.NOT_FOUND:
        message = f"no endpoint serves {method} {path}"
    else:
        message = f"{path} does not accept {method}"
    return json.dumps(
        error_body(f"{message}; /docs.json lists the endpoints and their methods")
    ).encode("utf-8")


def _from_bentoml(detail: Any) -> dict[str, Any]:
    """Return an ErrorBody for BentoML's list of pydantic errors."""
    errors = (
        [e for e in detail if isinstance(e, dict)] if isinstance(detail, list) else []
    )
    problems = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        field_name = ".".join(location) or "body"
        expected = (
            'a JSON object such as {"records": [...]}'
            if field_name == "body"
            else "a valid value"
        )
        reason = str(error.get("msg", "invalid"))
        problems.append(
            {
                "record": None,
                "field": field_name,
                "kind": "invalid",
                "value": None,
                "expected": expected,
                "message": f"request, field {field_name!r}: {reason}; expected "
                f"{expected}",
            }
        )
    reasons = "; ".join(str(error.get("msg", "invalid")) for error in errors)
    return error_body(
        f"invalid request body: {reasons or 'not a JSON object'}. Send a JSON "
        'object such as {"records": [...]} with Content-Type: application/json.',
        problems,
    )


@functools.cache
def product_version() -> str:
    """Return the installed version of the ``ajoissa`` distribution.

    A source tree that was never installed has no version, and gets ``unknown``.
    """
    try:
        return importlib.metadata.version("ajoissa")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _patch_openapi(scope: Scope, status: int, content: bytes) -> bytes | None:
    if status != HTTPStatus.OK:
        return None
    document = json.loads(content)
    info = document.setdefault("info", {})
    # BentoML 1.4 writes the bento's version, which is "None" outside a bento,
    # and names its own team as the contact.
    info["version"] = product_version()
    info.pop("contact", None)
    # OpenAPI 3.0, which BentoML 1.4 writes, names a licence by name and URL.
    info["license"] = {
        "name": "EUPL-1.2",
        "url": "https://joinup.ec.europa.eu/software/page/eupl",
    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    definitions = ErrorBody.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas.update(definitions.pop("$defs", {}))
    schemas["ErrorBody"] = definitions
    error = {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        }
    }
    descriptions = {
        "400": "Invalid body, records or options; every problem is listed.",
        "401": "Missing, invalid or revoked token.",
        "403": "The token's role has no right.",
        "413": "More records than the limit (max_records) or a body larger "
        "than the limit (max_body_bytes).",
        "503": "No verified model is loaded.",
    }
    responses = document["paths"][SCORE_PATH]["post"]["responses"]
    for code in ("404", "500"):
        responses.pop(code, None)
    for code, description in descriptions.items():
        responses[code] = {"description": description} | error
    return json.dumps(document).encode("utf-8")


class _Buffered:
    """An ASGI ``send`` that keeps a response back so ``transform`` may replace its body.

    ``transform(scope, status, body)`` returns the new body, or None to keep it.
    """

    def __init__(
        self,
        send: Send,
        transform: Callable[[Scope, int, bytes], Awaitable[bytes | None]],
        scope: Scope,
    ) -> None:
        self.send = send
        self.transform = transform
        self.scope = scope
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        content = b"".join(self.chunks)
        replaced = await self.transform(self.scope, self.start["status"], content)
        start = self.start
        if replaced is not None:
            content = replaced
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode("ascii")),
            ]
            start = {**start, "headers": headers}
        await self.send(start)
        await self.send({"type": "http.response.body", "body": content})


class ScoreBodyMiddleware:
    """Keep a ``POST /v1/score`` JSON object body for the handler, away from BentoML.

    BentoML 1.4 validates the body against the handler's input model. For
    fields typed ``Any``, pydantic first builds its own tree of the whole
    document and then converts it to Python objects, which took 48 ms for a
    body of 10,000 records against 18 ms for :func:`pydantic_core.from_json`
    (docs/benchmarks.md). This middleware takes a body sent as
    ``application/json`` (or without a content type). When the body's first
    character other than JSON whitespace is ``{``, it stores the body's bytes
    in the scope under ``SCORE_BODY_KEY`` and passes BentoML ``{}`` instead,
    so BentoML skips the records. It does the same with an empty body (or
    one of JSON whitespace only), which BentoML would read as an object
    without ``records``, so that the handler can report the body as empty.
    Every other body, such as an array or text, passes through unchanged,
    and BentoML rejects it as before.

    The handler decodes the stored bytes with the model's feature names
    (:mod:`serving.request_body`), and reports a stored body that is not
    valid JSON itself. Checking the JSON here as well took 0.26 ms of a
    1,000-record request (docs/benchmarks.md). :func:`parse_score_body`
    gives the values of BentoML's parser, including for ``NaN``, ``1e400``,
    integers beyond 64 bits and duplicate keys, where the last one wins. A
    test compares them.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _path(scope) != SCORE_PATH
            or _media_type(scope) not in ("", "application/json")
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client disconnected before the body was complete.
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _OBJECT_START.match(body) or _EMPTY.fullmatch(body):
            scope[SCORE_BODY_KEY] = body
            body = b"{}"
            scope["headers"] = [
                (name, value)
                for name, value in scope.get("headers", [])
                if name != b"content-length"
            ] + [(b"content-length", b"2")]
        await self.app(scope, _replay(body, receive), send)


def parse_score_body(body: bytes) -> dict[str, Any] | None:
    """Return the JSON object of a ``/v1/score`` body, or None if it is not one."""
    try:
        parsed = from_json(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _media_type(scope: Scope) -> str:
    """Return the request's media type as BentoML reads it, or '' without one."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip()
    return ""
