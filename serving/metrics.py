"""Route templates as the ``endpoint`` label of BentoML's request metrics.

BentoML 1.4.40 labels every request metric on ``/metrics`` with the raw
request path (``scope["path"]`` in ``RunnerTrafficMetricsMiddleware`` of
``bentoml._internal.server.http.instruments``). Paths of the read API and the
review screens contain pupil and school ids, so the open ``/metrics`` page
would show which pupils were read at which school. :func:`install` replaces
that middleware with a subclass that labels each request with its route
template (``/v1/pupils/{pupil_id}/explanation``) and passes the real path on to
the application. A path that matches no known route is labelled
:data:`UNMATCHED_LABEL`, so a client cannot put arbitrary text into a label.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.applications import Starlette

logger = logging.getLogger(__name__)

UNMATCHED_LABEL = "{unmatched}"
"""The ``endpoint`` label of a request whose path matches no route."""

_REAL_PATH_KEY = "ajoissa.real_path"
"""ASGI scope key that carries the request path past the metrics middleware."""

_installed: RouteTemplates | None = None
"""The templates that :func:`install` put in place, for :func:`route_template`."""


class RouteTemplates:
    """Map request paths to the templates of the routes that serve them.

    Parameters
    ----------
    mounts
        ``(prefix, app)`` pairs of the applications mounted under a prefix,
        such as ``("/v1", read_api)``. Their routes' templates are used.
    fixed_paths
        Paths without parameters that are their own label (probes, ``/metrics``,
        ``/v1/score``).
    fixed_prefixes
        Prefixes of static files: a path under one is labelled
        ``<prefix>{file}``.
    """

    def __init__(
        self,
        mounts: Sequence[tuple[str, Starlette]],
        fixed_paths: Iterable[str],
        fixed_prefixes: Iterable[str] = (),
    ) -> None:
        self.mounts = list(mounts)
        self.fixed_paths = frozenset(fixed_paths)
        self.fixed_prefixes = tuple(fixed_prefixes)
        self._routes: list[tuple[str, re.Pattern[str], str]] | None = None

    def template(self, path: str) -> str:
        """Return the route template of ``path``, or :data:`UNMATCHED_LABEL`."""
        if path in self.fixed_paths:
            return path
        for prefix in self.fixed_prefixes:
            if path.startswith(prefix):
                return prefix + "{file}"
        for prefix, regex, template in self.routes():
            if path != prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) :] or "/"
            if regex.match(rest):
                return prefix + template
        return UNMATCHED_LABEL

    def routes(self) -> list[tuple[str, re.Pattern[str], str]]:
        """Return ``(mount prefix, path regex, template)`` of every mounted route.

        Collected on the first call, when the service has added its routes.
        """
        if self._routes is None:
            self._routes = [
                # "{school_id:path}" is labelled "{school_id}": the converter
                # is how the route matches, not part of its name.
                (prefix.rstrip("/"), regex, _CONVERTER.sub(r"{\1}", template))
                for prefix, app in self.mounts
                for regex, template in _leaf_routes(app.routes, "")
            ]
        return self._routes


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def _leaf_routes(routes: Iterable[Any], prefix: str) -> Iterable[tuple[Any, str]]:
    """Yield ``(path regex, template)`` of ``routes`` and of the routers they include.

    FastAPI 0.165 keeps the routes of an included router (BentoML 1.4.40 puts
    the service's read endpoints in one) behind a private ``_IncludedRouter``
    entry with ``original_router`` and ``include_context.prefix``.
    """
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            inner = prefix + (getattr(context, "prefix", "") or "")
            yield from _leaf_routes(included.routes, inner)
            continue
        regex = getattr(route, "path_regex", None)
        path = getattr(route, "path", None)
        if regex is None or path is None:
            continue
        if prefix:
            # The regex matches the path below the include prefix.
            yield (
                re.compile(re.escape(prefix) + regex.pattern.lstrip("^")),
                prefix + path,
            )
        else:
            yield regex, path


class _RestorePath:
    """Put the real request path back into the scope before the application runs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _REAL_PATH_KEY in scope:
            scope = dict(scope)
            scope["path"] = scope.pop(_REAL_PATH_KEY)
        await self.app(scope, receive, send)


def route_template(path: str) -> str:
    """Return the route template of ``path`` for a log line, never the path itself.

    Returns :data:`UNMATCHED_LABEL` for a path that matches no route, and for
    every path before :func:`install` has run.
    """
    if _installed is None:
        return UNMATCHED_LABEL
    return _installed.template(path)


def install(templates: RouteTemplates) -> None:
    """Make BentoML's request metrics label requests with route templates.

    Replaces ``RunnerTrafficMetricsMiddleware`` in BentoML's ``instruments``
    module, which BentoML 1.4.40 imports from there each time it builds a
    worker's ASGI application. Call it when the service module is imported,
    before BentoML builds the application. Calling it twice changes nothing.
    """
    from bentoml._internal.server.http import instruments

    global _installed
    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "route_templates", None) is not None:
        return
    _installed = templates

    class TemplatedTrafficMetricsMiddleware(base):  # type: ignore[misc, valid-type]
        route_templates = templates

        def __init__(self, app: Any, **options: Any) -> None:
            super().__init__(_RestorePath(app), **options)

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                real_path = scope["path"]
                scope = dict(scope)
                scope["path"] = templates.template(real_path)
                scope[_REAL_PATH_KEY] = real_path
            await super().__call__(scope, receive, send)

    # NOTE: relies on a private BentoML 1.4.40 module. The metrics test in
    # tests/serving/test_api_e2e.py fails if an upgrade stops using it.
    instruments.RunnerTrafficMetricsMiddleware = TemplatedTrafficMetricsMiddleware
    logger.debug("request metrics labelled with route templates")
