"""ASGI middleware that checks the bearer token and role of every request.

The middleware sits in front of every route of the service, the mounted
read API included. A route is either public (probes, metrics, the OpenAPI
document) or needs a valid token:

- no token, or an invalid or revoked one: 401 with ``WWW-Authenticate: Bearer``;
- a valid token whose role has no right to the route: 403;
- otherwise the request goes on, with the :class:`~serving.access.Principal`
  in the ASGI scope under ``PRINCIPAL_KEY``.

Routes that are neither public nor in ``RULES`` need a valid token and then
reach the application, which returns 404 or 405. ``/favicon.ico`` gets 404
without a token, because browsers request it without one. Rejected requests
to scoring or pupil routes are written to the access log, with the token id
of a revoked token or a wrong secret when the id is stored.

School scoping is not checked here, because it depends on the stored rows: the
pupil endpoints pass the token's schools to the score store.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from serving.access import Principal, TokenCheck, TokenStore
from serving.accesslog import AccessEvent, AccessLog
from serving.api_models import error_body

logger = logging.getLogger(__name__)

PRINCIPAL_KEY = "ajoissa.principal"
"""ASGI scope key of the authenticated :class:`~serving.access.Principal`."""

PUBLIC_PATHS = frozenset(
    {
        "/",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/docs.json",
        "/schema.json",
        "/ui",
    }
)
"""Paths open without a token: probes, Prometheus metrics and the API description.
None of them returns pupil data."""
PUBLIC_PREFIXES = ("/static_content/", "/assets/", "/ui/")
"""Path prefixes the middleware lets through. The review screens under ``/ui``
check their own session cookie (see :mod:`serving.ui.app`)."""

ALL_ROLES = frozenset({"platform", "staff", "reviewer", "admin"})


@dataclass(frozen=True)
class Rule:
    """The roles that may call ``method`` on paths matching ``pattern``."""

    method: str
    pattern: re.Pattern[str]
    roles: frozenset[str]
    endpoint: str
    """Route template written to the access log, or empty when not logged."""


RULES = (
    Rule("POST", re.compile(r"/v1/score"), frozenset({"platform"}), "/v1/score"),
    Rule(
        "GET",
        re.compile(r"/v1/pupils/(?P<pupil>[^/]+)/explanation"),
        frozenset({"staff"}),
        "/v1/pupils/{id}/explanation",
    ),
    Rule(
        "GET",
        re.compile(r"/v1/pupils/(?P<pupil>[^/]+)/history"),
        frozenset({"staff"}),
        "/v1/pupils/{id}/history",
    ),
    Rule("GET", re.compile(r"/v1/model"), ALL_ROLES, ""),
    Rule("GET", re.compile(r"/v1/tokens"), frozenset({"admin"}), ""),
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 307,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def principal_of(scope: Scope) -> Principal | None:
    """Return the principal the middleware put in ``scope``, if any."""
    return scope.get(PRINCIPAL_KEY)


class AccessControlMiddleware:
    """Authenticate and authorise every HTTP request before the application runs."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.tokens = TokenStore()
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        if path == "/":
            # BentoML 1.4.40's own index page loads Google Tag Manager, which
            # would tell a third party that someone opened a pupil-data service.
            await _redirect(send, "/ui/")
            return
        if path == "/favicon.ico":
            # Browsers request it on their own, without the token. The pages
            # declare an empty icon, so only other clients get here.
            await _not_found(send)
            return
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        rule, match = _match(scope["method"], path)
        token = _bearer_token(scope)
        check = None
        if token:
            # One indexed read on an open connection (about 0.01 ms), so it
            # runs here: handing it to a thread took 0.35 ms of a request.
            check = self.tokens.check(token)
        principal = check.principal if check else None
        if principal is None:
            if token is None:
                message = "missing bearer token: send 'Authorization: Bearer <token>'"
            elif not token:
                message = (
                    "the Authorization header has no bearer token: send "
                    "'Authorization: Bearer <token>'"
                )
            else:
                message = "invalid or revoked bearer token"
            await self._reject(send, 401, message, rule, match, check)
            return
        if rule is not None and principal.role not in rule.roles:
            allowed = ", ".join(sorted(rule.roles))
            message = (
                f"{_with_article(principal.role)} token has no right to "
                f"{scope['method']} "
                f"{rule.endpoint or path}; it needs the role {allowed}"
            )
            await self._reject(send, 403, message, rule, match, principal)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)

    async def _reject(
        self,
        send: Send,
        status: int,
        message: str,
        rule: Rule | None,
        match: re.Match[str] | None,
        caller: Principal | TokenCheck | None,
    ) -> None:
        """Send an error response, and log it when ``rule`` is logged.

        ``caller`` is the principal of a 403, or for a 401 the check of a
        token whose id may be stored, as a revoked token's is.
        """
        if rule is not None and rule.endpoint:
            pupil = match.groupdict().get("pupil") if match else None
            revoked = isinstance(caller, TokenCheck) and caller.status == "revoked"
            event = AccessEvent(
                endpoint=rule.endpoint,
                outcome=f"{status} {'revoked' if revoked else 'denied'}",
                token_id=caller.token_id if caller else None,
                role=caller.role if caller else None,
                pupil_id=pupil,
            )
            await anyio.to_thread.run_sync(self.access_log.append, event)
        logger.info("rejected request with %d: %s", status, message)
        body = json.dumps(error_body(message)).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="ajoissa"'))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


def _match(method: str, path: str) -> tuple[Rule | None, re.Match[str] | None]:
    for rule in RULES:
        match = rule.pattern.fullmatch(path)
        if match and rule.method == method:
            return rule, match
    return None, None


def _with_article(word: str) -> str:
    """Return ``word`` after "a" or "an", as its first letter needs."""
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None
