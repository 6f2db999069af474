"""The review screens: a server-rendered FastAPI app mounted under ``/ui``.

Pages
-----
``/ui/`` and ``/ui/signin``
    Sign-in with a staff or reviewer token. A successful sign-in starts a
    server-side session (see :mod:`serving.ui.store`) held in an HttpOnly,
    SameSite=Strict cookie that expires with the session.
``/ui/schools/{school}``
    The school's pupils from its latest scoring run, highest estimate first,
    one page per team capacity. Only schools on the person's token are shown;
    any other school returns 403 and is written to the access log.
``/ui/schools/{school}/pupils/{pupil}``
    The pupil's estimates over past as-of dates, reasons, trends and reviews,
    and the form that records a review.
``/ui/models`` and ``/ui/models/{name}/{version}``
    Reviewer pages: model cards, fairness reports and the promotion sign-off.

Every form carries a CSRF token: the session's token after sign-in, and a
double-submit cookie before it. Every page that shows pupil data writes one
access-log row per pupil shown; recording a review writes one too. So do
denied requests: a rejected sign-in, a page opened with the session of a
revoked token, another school's page, a pupil without a score, a review
or sign-off form whose CSRF token does not match the session's, and a form
over the server's body size limit.

The service's bearer-token middleware lets ``/ui`` through, because these pages
check their own session cookie.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import math
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from models.reason_text import feature_text
from serving.access import Principal, TokenStore
from serving.accesslog import AccessEvent, AccessLog
from serving.api_models import PUPIL_ID_PATTERN
from serving.storeconnection import (
    ScoreStoreConnection,
    ScoreStoreUnavailableError,
    worker_connection,
)
from serving.ui import modelcards, queries
from serving.ui.i18n import LANGUAGES, Translator, pick_language
from serving.ui.present import (
    Status,
    axis_max,
    change_words,
    cutoff_tie,
    line_chart,
    probability_words,
    row_status,
)
from serving.ui.reasontext import reason_sentences
from serving.ui.store import (
    DECISIONS,
    MAX_NOTE_CHARS,
    ScoreContext,
    Session,
    UiStore,
    latest_follow_up,
    note_has_control,
)
from serving.ui.store import session_hours as configured_session_hours

logger = logging.getLogger(__name__)

MOUNT_PATH = "/ui"
"""Path under which the service mounts these pages."""
SESSION_COOKIE = "ajoissa_session"
PRE_CSRF_COOKIE = "ajoissa_csrf"
LANGUAGE_COOKIE = "ajoissa_lang"
UI_ROLES = ("staff", "reviewer")
"""Roles that may sign in. Platform and admin tokens are for the API only."""
FLASH_MESSAGES = frozenset(
    {"signin.signed_out", "signin.expired", "review.saved", "signoff.saved"}
)
"""Message keys that a redirect may show through the ``msg`` query parameter."""

_PUPIL_ID = re.compile(PUPIL_ID_PATTERN)
_TEMPLATES = Path(__file__).parent / "templates"
_STYLE = (Path(__file__).parent / "ui.css").read_text(encoding="utf-8")
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

ui_app = FastAPI(
    title="Ajoissa review screens", docs_url=None, redoc_url=None, openapi_url=None
)


class _Context:
    """The stores the pages read, opened at the first request of a worker."""

    def __init__(self) -> None:
        self.scores = worker_connection() or ScoreStoreConnection()
        self.ui = UiStore()
        self.tokens = TokenStore()
        self.access_log = AccessLog()
        self.session_hours = configured_session_hours()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )


_context: _Context | None = None
_context_lock = threading.Lock()


def context() -> _Context:
    """Return the worker's stores, opening them on first use."""
    global _context
    with _context_lock:
        if _context is None:
            _context = _Context()
            logger.info("review screens ready")
        return _context


class PageError(Exception):
    """Raised by a page to return an error page instead."""

    def __init__(self, status: int, title_key: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title_key = title_key
        self.message = message


class Redirect(Exception):
    """Raised by a page to redirect with 303 See Other."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass
class Page:
    """The request, language, session and CSRF token of one page view."""

    request: Request
    t: Translator
    session: Session | None
    csrf: str
    base: str
    new_pre_csrf: bool = False

    @property
    def principal(self) -> Principal | None:
        return self.session.principal if self.session else None


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _page(request: Request) -> Page:
    ctx = context()
    language = pick_language(
        request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language")
    )
    session = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = ctx.ui.session(cookie)
        if session is not None and not _token_active(ctx, session.principal.token_id):
            ctx.ui.end_session(cookie)
            _log_revoked_session(request, session.principal)
            session = None
    new_pre_csrf = False
    if session is not None:
        csrf = session.csrf
    else:
        csrf = request.cookies.get(PRE_CSRF_COOKIE) or ""
        if len(csrf) < 32:
            csrf = secrets.token_urlsafe(32)
            new_pre_csrf = True
    return Page(
        request, Translator(language), session, csrf, _base(request), new_pre_csrf
    )


def _token_active(ctx: _Context, token_id: str) -> bool:
    # A revoked token ends its sessions at their next request.
    return any(
        info.token_id == token_id and info.revoked_at is None
        for info in ctx.tokens.list()
    )


def _log_revoked_session(request: Request, principal: Principal) -> None:
    """Log a page request whose session belongs to a revoked token."""
    params = request.path_params
    _log(
        principal,
        _endpoint(request),
        "401 revoked",
        params.get("pupil_id"),
        params.get("school_id"),
    )
    logger.info("ended a session of revoked token %s", principal.token_id)


def _endpoint(request: Request) -> str:
    """Return the route template of ``request`` as the access log writes it."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    template = template.replace("{school_id:path}", "{school}")
    template = template.replace("{school_id}", "{school}")
    return "/ui" + template.replace("{pupil_id}", "{id}")


def _require_session(page: Page) -> Session:
    if page.session is None:
        expired = SESSION_COOKIE in page.request.cookies
        suffix = "?msg=signin.expired" if expired else ""
        raise Redirect(f"{page.base}/signin{suffix}")
    return page.session


def _require_role(page: Page, role: str) -> Principal:
    principal = _require_session(page).principal
    if principal.role != role:
        raise PageError(
            HTTPStatus.FORBIDDEN,
            "error.forbidden.title",
            page.t("error.forbidden.role", role=principal.role),
        )
    return principal


def _require_school(
    page: Page, school_id: str, endpoint: str, pupil_id: str | None = None
) -> Principal:
    """Return the staff principal if ``school_id`` is one of theirs, else 403.

    The check uses only the token's school list, before any pupil data is read,
    so a 403 reveals nothing about where a pupil is enrolled.
    """
    principal = _require_session(page).principal
    if principal.role != "staff":
        _log(principal, endpoint, "403 denied", pupil_id, school_id)
        logger.info(
            "denied %s to %s token %s", endpoint, principal.role, principal.token_id
        )
        raise PageError(
            HTTPStatus.FORBIDDEN,
            "error.forbidden.title",
            page.t("error.forbidden.role", role=principal.role),
        )
    if school_id not in principal.schools:
        _log(principal, endpoint, "403 denied", pupil_id, school_id)
        logger.info(
            "denied %s to a school outside token %s", endpoint, principal.token_id
        )
        raise PageError(
            HTTPStatus.FORBIDDEN,
            "error.forbidden.title",
            page.t("error.forbidden.school", school=school_id),
        )
    return principal


def _log(
    principal: Principal,
    endpoint: str,
    outcome: str,
    pupil_id: str | None = None,
    school_id: str | None = None,
    model_version: str | None = None,
) -> None:
    context().access_log.append(
        AccessEvent(
            endpoint=endpoint,
            outcome=outcome,
            token_id=principal.token_id,
            role=principal.role,
            pupil_id=pupil_id,
            school_id=school_id,
            model_version=model_version,
        )
    )


@contextmanager
def _reading_scores(
    page: Page,
    principal: Principal,
    endpoint: str,
    school_id: str,
    pupil_id: str | None = None,
) -> Iterator[sa.Engine]:
    """Yield the score store's engine, or log the rejected request and raise a 503 page.

    The access-log row names the pupil or school of the page, as a denied
    request's row does.
    """
    try:
        with context().scores.reading() as store:
            yield store.engine
    except ScoreStoreUnavailableError:
        _log(principal, endpoint, "503 store unavailable", pupil_id, school_id)
        logger.info(
            "rejected %s: the score store is unavailable, token %s",
            endpoint,
            principal.token_id,
        )
        raise PageError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "error.unavailable.title",
            page.t("error.store_unavailable"),
        ) from None


def _check_csrf(page: Page, form: FormData) -> None:
    sent = str(form.get("csrf", ""))
    if page.new_pre_csrf or not sent or not hmac.compare_digest(sent, page.csrf):
        raise PageError(
            HTTPStatus.FORBIDDEN, "error.forbidden.title", page.t("error.csrf")
        )


def _check_csrf_logged(
    page: Page,
    form: FormData,
    principal: Principal,
    endpoint: str,
    pupil_id: str | None = None,
    school_id: str | None = None,
    model_version: str | None = None,
) -> None:
    """Check the form's CSRF token, logging a failure as ``403 denied``."""
    try:
        _check_csrf(page, form)
    except PageError:
        _log(principal, endpoint, "403 denied", pupil_id, school_id, model_version)
        logger.info(
            "rejected %s with an invalid CSRF token, token %s",
            endpoint,
            principal.token_id,
        )
        raise


def _render(
    page: Page, template: str, status: int = HTTPStatus.OK, **values: Any
) -> HTMLResponse:
    message = page.request.query_params.get("msg")
    html = (
        context()
        .templates.get_template(template)
        .render(
            t=page.t,
            lang=page.t.language,
            languages=[(code, Translator(code)("lang.name")) for code in LANGUAGES],
            csrf=page.csrf,
            principal=page.principal,
            base=page.base,
            here=page.request.url.path
            + (f"?{page.request.url.query}" if page.request.url.query else ""),
            flash=page.t(message) if message in FLASH_MESSAGES else None,
            **values,
        )
    )
    response = HTMLResponse(html, status_code=status)
    if page.new_pre_csrf:
        response.set_cookie(
            PRE_CSRF_COOKIE,
            page.csrf,
            path=page.base or "/",
            httponly=True,
            samesite="strict",
            secure=page.request.url.scheme == "https",
        )
    return response


def _handle(request: Request, view: Callable[[Page], Response]) -> Response:
    page = _page(request)
    try:
        return view(page)
    except Redirect as redirect:
        return RedirectResponse(redirect.location, status_code=HTTPStatus.SEE_OTHER)
    except PageError as error:
        return _render(
            page,
            "error.html",
            error.status,
            title=page.t(error.title_key),
            message=error.message,
        )


@ui_app.middleware("http")
async def _security_headers(request: Request, call_next: Callable) -> Response:
    response = await call_next(request)
    _add_security_headers(response)
    return response


def _add_security_headers(response: Response) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


async def send_form_too_large(
    scope: dict[str, Any], receive: Callable, send: Callable, limit: int
) -> None:
    """Send the 413 error page for a form of more than ``limit`` bytes.

    :class:`serving.middleware.BodyLimitMiddleware` calls this before the
    request reaches this app, so the scope gets the mount path ``/ui`` added to
    its root path here, as the mount would add it, and the matching page
    route, as the router would add it.
    """
    page_scope = {**scope, "root_path": scope.get("root_path", "") + MOUNT_PATH}
    page_scope.update(_matching_route(page_scope))
    request = Request(page_scope, receive)
    response = await run_in_threadpool(_form_too_large_page, request, limit)
    await response(page_scope, receive, send)


def _matching_route(scope: dict[str, Any]) -> dict[str, Any]:
    """Return the scope keys that the router sets for the page route of ``scope``.

    The last route matches every path, so every scope under ``/ui`` gets one.
    """
    for route in ui_app.routes:
        match, child_scope = route.matches(scope)
        if match == Match.FULL:
            return {**child_scope, "route": route}
    return {}


def _form_too_large_page(request: Request, limit: int) -> Response:
    page = _page(request)
    _log_form_too_large(request, page)
    response = _render(
        page,
        "error.html",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        title=page.t("error.form.title"),
        message=page.t("error.form.too_large", limit=page.t.number(limit)),
    )
    _add_security_headers(response)
    return response


def _log_form_too_large(request: Request, page: Page) -> None:
    """Log a form rejected for its size, with the ids of its path.

    The body is never read, so the row has no value from the form, and no
    token when the request has no valid session.
    """
    principal = page.session.principal if page.session is not None else None
    params = request.path_params
    model_version = None
    if "name" in params and "version" in params:
        model_version = f"{params['name']}/{params['version']}"
    context().access_log.append(
        AccessEvent(
            endpoint=_endpoint(request),
            outcome="413 body too large",
            token_id=principal.token_id if principal is not None else None,
            role=principal.role if principal is not None else None,
            pupil_id=params.get("pupil_id"),
            school_id=params.get("school_id"),
            model_version=model_version,
        )
    )


@ui_app.get("/ui.css", include_in_schema=False)
def style() -> Response:
    return Response(_STYLE, media_type="text/css")


# Sign-in, sign-out and language


@ui_app.get("/")
def home(request: Request) -> Response:
    def view(page: Page) -> Response:
        session = _require_session(page)
        principal = session.principal
        if principal.role == "reviewer":
            raise Redirect(f"{page.base}/models")
        if len(principal.schools) == 1:
            raise Redirect(f"{page.base}/schools/{quote(principal.schools[0])}")
        return _render(page, "schools.html", schools=principal.schools)

    return _handle(request, view)


@ui_app.get("/signin")
def signin_form(request: Request) -> Response:
    def view(page: Page) -> Response:
        if page.session is not None:
            raise Redirect(f"{page.base}/")
        return _render(page, "signin.html", hours=_hours_text(page), error=None)

    return _handle(request, view)


# The form handlers read the body on the event loop, then run the view in a
# worker thread because the stores make blocking SQLite and MLflow calls.


@ui_app.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()

    def view(page: Page) -> Response:
        _check_csrf(page, form)
        ctx = context()
        token = str(form.get("token", "")).strip()
        check = ctx.tokens.check(token)
        principal = check.principal
        if principal is None:
            outcome = "401 revoked" if check.status == "revoked" else "401 denied"
            ctx.access_log.append(
                AccessEvent(
                    endpoint="/ui/signin",
                    outcome=outcome,
                    token_id=check.token_id,
                    role=check.role,
                )
            )
            logger.info(
                "rejected sign-in: %s token %s", check.status, check.token_id or "-"
            )
            return _render(
                page,
                "signin.html",
                HTTPStatus.UNAUTHORIZED,
                hours=_hours_text(page),
                error=page.t("signin.invalid"),
            )
        if principal.role not in UI_ROLES:
            ctx.access_log.append(
                AccessEvent(
                    endpoint="/ui/signin",
                    outcome="403 denied",
                    token_id=principal.token_id,
                    role=principal.role,
                )
            )
            logger.info(
                "rejected sign-in of %s token %s", principal.role, principal.token_id
            )
            return _render(
                page,
                "signin.html",
                HTTPStatus.FORBIDDEN,
                hours=_hours_text(page),
                error=page.t("signin.wrong_role", role=principal.role),
            )
        session_id, _session = ctx.ui.create_session(principal, ctx.session_hours)
        response = RedirectResponse(f"{page.base}/", status_code=HTTPStatus.SEE_OTHER)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(ctx.session_hours * 3600),
            path=page.base or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(PRE_CSRF_COOKIE, path=page.base or "/")
        return response

    return await run_in_threadpool(_handle, request, view)


@ui_app.post("/signout")
async def signout(request: Request) -> Response:
    form = await request.form()

    def view(page: Page) -> Response:
        _check_csrf(page, form)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            context().ui.end_session(cookie)
        response = RedirectResponse(
            f"{page.base}/signin?msg=signin.signed_out",
            status_code=HTTPStatus.SEE_OTHER,
        )
        response.delete_cookie(SESSION_COOKIE, path=page.base or "/")
        return response

    return await run_in_threadpool(_handle, request, view)


@ui_app.post("/lang")
async def change_language(request: Request) -> Response:
    form = await request.form()

    def view(page: Page) -> Response:
        _check_csrf(page, form)
        language = str(form.get("lang", ""))
        if language not in LANGUAGES:
            raise PageError(
                HTTPStatus.BAD_REQUEST,
                "error.notfound.title",
                page.t("error.notfound.page"),
            )
        target = str(form.get("next", ""))
        # Only paths of these pages are followed, so the form cannot redirect away.
        if not target.startswith(f"{page.base}/") or target.startswith("//"):
            target = f"{page.base}/"
        response = RedirectResponse(target, status_code=HTTPStatus.SEE_OTHER)
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 24 * 3600,
            path=page.base or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    return await run_in_threadpool(_handle, request, view)


def _hours_text(page: Page) -> str:
    hours = context().session_hours
    return str(int(hours)) if float(hours).is_integer() else page.t.number(hours, 1)


# Staff pages


def school(request: Request, school_id: str) -> Response:
    def view(page: Page) -> Response:
        endpoint = "/ui/schools/{school}"
        principal = _require_school(page, school_id, endpoint)
        ctx = context()
        capacity = ctx.ui.capacity(school_id)
        number = _page_number(request.query_params.get("page"))
        with _reading_scores(page, principal, endpoint, school_id) as engine:
            listing = queries.school_page(
                engine, school_id, (number - 1) * capacity, capacity
            )
            if listing.latest is None:
                return _render(page, "school.html", school=school_id, listing=None)
            total_pages = max(1, math.ceil(listing.total / capacity))
            if number > total_pages:
                raise Redirect(
                    f"{page.base}/schools/{quote(school_id)}?page={total_pages}"
                )
            reviews = ctx.ui.latest_reviews(school_id)
            today = dt.date.today()
            waiting = _waiting_count(engine, listing, capacity, reviews, today)
            rank_probabilities = queries.rank_probabilities(
                engine, listing.latest, school_id
            )

        window = modelcards.label_window_days(
            listing.latest.model_name, listing.latest.model_version
        )
        rows = [
            _list_row(
                page,
                pupil,
                window,
                row_status(
                    page.t,
                    pupil.school_rank,
                    capacity,
                    reviews.get(pupil.pupil_id),
                    today,
                    listing.latest.as_of,
                ),
            )
            for pupil in listing.pupils
        ]
        tie = cutoff_tie(page.t, rank_probabilities, capacity)
        for pupil in listing.pupils:
            _log(
                principal,
                endpoint,
                "200 listed",
                pupil.pupil_id,
                school_id,
                listing.latest.model_version,
            )
        logger.info("listed %d pupils on page %d", len(rows), number)
        return _render(
            page,
            "school.html",
            school=school_id,
            listing=listing,
            rows=rows,
            capacity=capacity,
            waiting=waiting,
            number=number,
            total_pages=total_pages,
            tie=tie,
        )

    return _handle(request, view)


def _waiting_count(
    engine: sa.Engine,
    listing: queries.SchoolPage,
    capacity: int,
    reviews: dict[str, Any],
    today: dt.date,
) -> int:
    """Count the pupils of the latest run marked for review.

    They are the top ``capacity`` pupils without a review that still applies,
    and any other pupil in the run whose review's follow-up date has come.
    """
    top = set(queries.top_pupils(engine, listing.latest, listing.school_id, capacity))
    in_run = queries.run_pupils(engine, listing.latest, listing.school_id)
    unreviewed_top = sum(
        1
        for pupil in top
        if pupil not in reviews
        or not reviews[pupil].overrides_flag(today, listing.latest.as_of)
    )
    follow_ups_due = sum(
        1
        for pupil, review in reviews.items()
        if pupil in in_run
        and pupil not in top
        and review.follow_up is not None
        and review.follow_up <= today
    )
    return unreviewed_top + follow_ups_due


MAX_PAGE = 1_000_000
"""Page numbers above this are read as this one, which then redirects to the
last page. Larger numbers overflow SQLite's 64-bit offsets."""


def _page_number(raw: str | None) -> int:
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return 1
    if len(raw) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(MAX_PAGE, max(1, int(raw)))


def _list_row(
    page: Page,
    pupil: queries.ListedPupil,
    window_days: int | None,
    status: Status,
) -> dict[str, Any]:
    t = page.t
    charts = {}
    for name, trend in pupil.trends.items():
        charts[name] = _trend_chart(t, name, trend, small=True)
    return {
        "chart_titles": {
            name: trend_title(t, name, pupil.trends.get(name))
            for name in queries.TREND_FEATURES
        },
        "pupil_id": pupil.pupil_id,
        "rank": pupil.school_rank,
        "percent": t.percent(pupil.probability),
        "words": probability_words(t, pupil.probability, window_days),
        "change": change_words(t, pupil.probability, pupil.previous_probability),
        "reasons": reason_sentences(t, pupil.reasons)[:3],
        "status": status,
        "charts": charts,
    }


SUPPORT_FEATURES = (
    "attr_support_level",
    "support_level_max_365d",
    "support_level_changes_365d",
)
"""Stored features that describe a pupil's support level, in the order the
pupil page lists them. Only sources with support decisions, such as school
records, have them."""
GRADE_SCALE_FEATURES = frozenset({"grade_mean_term", "grade_mean_year"})
"""Trend features on the Finnish grade scale, drawn on an axis up to 10."""
MEASURE_KEYS = {
    "grade_mean_term": "trend.measure.grade_mean_term",
    "grade_mean_year": "trend.measure.grade_mean_year",
}
"""Message keys that name the measure of a trend point, for charts whose points
can show different features (the term's or the school year's grade average)."""
TITLE_BY_FEATURE = {"weighted_mean_score": "trend.scores"}
"""Message keys of trend charts whose feature differs from the chart's name.
OULAD has assessment scores from 0 to 100, not grades."""


def trend_title(t: Translator, name: str, trend: queries.Trend | None) -> str:
    """Return the title of trend chart ``name`` that draws ``trend``."""
    feature = trend.feature if trend is not None else None
    return t(TITLE_BY_FEATURE.get(feature, f"trend.{name}"))


def _trend_chart(t: Translator, name: str, trend: queries.Trend, small: bool) -> Any:
    as_percent = name == "attendance"
    on_grade_scale = trend.feature in GRADE_SCALE_FEATURES
    values = [
        (day, value * 100 if as_percent else value) for day, value in trend.points
    ]
    measures = trend.measures or (trend.feature,) * len(values)

    def show(index: int) -> str:
        value = values[index][1]
        if as_percent:
            return t.percent(value / 100)
        text = t.number(value, 1) if on_grade_scale else t.number(value)
        measure = MEASURE_KEYS.get(measures[index])
        if measure is None:
            return text
        return t("trend.value_measure", value=text, measure=t(measure))

    label = t.plural(
        "trend.summary",
        len(values),
        name=trend_title(t, name, trend),
        first=show(0),
        first_date=t.date(values[0][0]),
        last=show(len(values) - 1),
        last_date=t.date(values[-1][0]),
        count=len(values),
    )
    point_labels = [
        t("trend.point", date=t.date(day), value=show(index))
        for index, (day, _) in enumerate(values)
    ]
    unit = "%" if as_percent else ""
    scale_top = 10.0 if on_grade_scale else 100.0
    if small:
        return line_chart(values, label, scale_top, point_labels=point_labels)
    # Absence shares are usually small, so their axis stops above the largest one.
    top = axis_max([value for _, value in values]) if as_percent else scale_top
    chart = line_chart(
        values,
        label,
        top,
        width=360,
        height=140,
        show_axis=True,
        unit=unit,
        date_text=t.date,
        point_labels=point_labels,
    )
    if not any(measure in MEASURE_KEYS for measure in measures):
        return chart
    # The page names each point's measure in text as well, because a chart's
    # tooltips are out of reach on a touch screen.
    return chart + Markup('<p class="chart-points">{}</p>').format(
        "; ".join(point_labels)
    )


PUPIL_ENDPOINT = "/ui/schools/{school}/pupils/{id}"
REVIEW_ENDPOINT = "/ui/schools/{school}/pupils/{id}/reviews"
SIGNOFF_ENDPOINT = "/ui/models/{name}/{version}/signoff"


@ui_app.get("/schools/{school_id:path}/pupils/{pupil_id}")
def pupil(request: Request, school_id: str, pupil_id: str) -> Response:
    def view(page: Page) -> Response:
        principal = _require_school(page, school_id, PUPIL_ENDPOINT, pupil_id)
        _require_valid_pupil_id(page, principal, PUPIL_ENDPOINT, school_id, pupil_id)
        return _pupil_page(page, principal, school_id, pupil_id)

    return _handle(request, view)


def _require_valid_pupil_id(
    page: Page, principal: Principal, endpoint: str, school_id: str, pupil_id: str
) -> None:
    """Log and raise a 404 page when ``pupil_id`` cannot be a stored pupil id."""
    if _PUPIL_ID.fullmatch(pupil_id):
        return
    _log(principal, endpoint, "404 invalid id", pupil_id, school_id)
    logger.info(
        "rejected %s with an invalid pupil id, token %s", endpoint, principal.token_id
    )
    raise PageError(
        HTTPStatus.NOT_FOUND, "error.notfound.title", page.t("error.notfound.page")
    )


def _pupil_page(
    page: Page,
    principal: Principal,
    school_id: str,
    pupil_id: str,
    endpoint: str = PUPIL_ENDPOINT,
    form_error: str | None = None,
    form_values: dict[str, str] | None = None,
) -> Response:
    """Render the pupil page and write its read to the access log.

    A review form with ``form_error`` is shown again with 400, and its row
    names ``endpoint`` with the outcome ``400 invalid review``.
    """
    ctx = context()
    with _reading_scores(page, principal, endpoint, school_id, pupil_id) as engine:
        points = queries.pupil_points(engine, school_id, pupil_id)
    reviews = ctx.ui.reviews_of(school_id, [pupil_id])[pupil_id]
    # Reviews store their token's id, and the label names who holds the token.
    token_labels = (
        {info.token_id: info.label for info in ctx.tokens.list()} if reviews else {}
    )
    if not points:
        _log(principal, endpoint, "404 no score", pupil_id, school_id)
        return _render(
            page,
            "pupil.html",
            HTTPStatus.NOT_FOUND,
            school=school_id,
            pupil=pupil_id,
            latest=None,
            reviews=reviews,
            token_labels=token_labels,
        )
    latest = points[-1]
    status = HTTPStatus.BAD_REQUEST if form_error else HTTPStatus.OK
    outcome = "400 invalid review" if form_error else "200 ok"
    _log(principal, endpoint, outcome, pupil_id, school_id, latest.run.model_version)
    return _render(
        page,
        "pupil.html",
        status,
        school=school_id,
        pupil=pupil_id,
        latest=latest,
        reviews=reviews,
        token_labels=token_labels,
        decisions=DECISIONS,
        max_note=MAX_NOTE_CHARS,
        form_error=form_error,
        form_values=form_values or {},
        today=dt.date.today().isoformat(),
        **_pupil_values(page.t, points),
    )


def _pupil_values(t: Translator, points: list[queries.PupilPoint]) -> dict[str, Any]:
    """Return the estimate, its history, reasons and trend charts for the page."""
    latest = points[-1]
    risk = [(point.run.as_of, point.probability * 100) for point in points]
    risk_label = (
        t("trend.risk")
        + ": "
        + ", ".join(f"{t.date(day)} {t.percent(value / 100)}" for day, value in risk)
    )
    trends = queries.trend_series(points)
    previous = points[-2].probability if len(points) > 1 else None
    return {
        "percent": t.percent(latest.probability),
        "words": probability_words(
            t,
            latest.probability,
            modelcards.label_window_days(
                latest.run.model_name, latest.run.model_version
            ),
        ),
        "change": change_words(t, latest.probability, previous),
        "risk_chart": line_chart(
            risk,
            risk_label,
            axis_max([value for _, value in risk]),
            width=360,
            height=140,
            show_axis=True,
            unit="%",
            date_text=t.date,
        ),
        "history": [
            {
                "as_of": t.date(point.run.as_of),
                "percent": t.percent(point.probability),
                "rank": point.school_rank,
                "size": point.school_size,
                "model": f"{point.run.model_name} {point.run.model_version}",
            }
            for point in reversed(points)
        ],
        "reasons": reason_sentences(t, latest.reasons),
        "attendance": _trend_chart(t, "attendance", trends["attendance"], small=False)
        if "attendance" in trends
        else None,
        "grades": _trend_chart(t, "grades", trends["grades"], small=False)
        if "grades" in trends
        else None,
        "grades_title": trend_title(t, "grades", trends.get("grades")),
        # The page states that the source has no support levels only when the
        # stored features contain none.
        "support": [
            feature_text(name, latest.features[name], t.language)
            for name in SUPPORT_FEATURES
            if name in latest.features
        ],
    }


@ui_app.post("/schools/{school_id:path}/pupils/{pupil_id}/reviews")
async def record_review(request: Request, school_id: str, pupil_id: str) -> Response:
    form = await request.form()

    def view(page: Page) -> Response:
        endpoint = REVIEW_ENDPOINT
        principal = _require_school(page, school_id, endpoint, pupil_id)
        _check_csrf_logged(page, form, principal, endpoint, pupil_id, school_id)
        _require_valid_pupil_id(page, principal, endpoint, school_id, pupil_id)

        values = {
            "decision": str(form.get("decision", "")),
            # Browsers send a textarea's line breaks as CRLF.
            "note": str(form.get("note", "")).replace("\r\n", "\n").strip(),
            "follow_up": str(form.get("follow_up", "")).strip(),
        }
        error, follow_up = _review_problem(page.t, values)
        if error:
            logger.info("rejected a review form of token %s", principal.token_id)
            return _pupil_page(
                page, principal, school_id, pupil_id, endpoint, error, values
            )

        ctx = context()
        with _reading_scores(page, principal, endpoint, school_id, pupil_id) as engine:
            points = queries.pupil_points(engine, school_id, pupil_id)
        if not points:
            _log(principal, endpoint, "404 no score", pupil_id, school_id)
            raise PageError(
                HTTPStatus.NOT_FOUND,
                "error.notfound.title",
                page.t("pupil.no_score", school=school_id),
            )

        latest = points[-1]
        capacity = ctx.ui.capacity(school_id)
        review = ctx.ui.add_review(
            principal,
            pupil_id,
            school_id,
            values["decision"],
            values["note"],
            follow_up,
            ScoreContext(
                as_of=latest.run.as_of.isoformat(),
                model_name=latest.run.model_name,
                model_version=latest.run.model_version,
                probability=latest.probability,
                school_rank=latest.school_rank,
                flagged=latest.school_rank <= capacity,
            ),
        )
        _log(
            principal,
            endpoint,
            f"201 review {review.decision}",
            pupil_id,
            school_id,
            latest.run.model_version,
        )
        target = (
            f"{page.base}/schools/{quote(school_id)}/pupils/{quote(pupil_id)}"
            "?msg=review.saved"
        )
        raise Redirect(target)

    return await run_in_threadpool(_handle, request, view)


def _review_problem(
    t: Translator, values: dict[str, str]
) -> tuple[str | None, dt.date | None]:
    if values["decision"] not in DECISIONS:
        return t("review.invalid_decision"), None
    if len(values["note"]) > MAX_NOTE_CHARS:
        return t("review.note_too_long", max=MAX_NOTE_CHARS), None
    if note_has_control(values["note"]):
        return t("review.note_control"), None
    if not values["follow_up"]:
        return None, None
    try:
        follow_up = dt.date.fromisoformat(values["follow_up"])
    except ValueError:
        return t("review.invalid_date"), None
    today = dt.date.today()
    if follow_up < today:
        return t("review.invalid_date"), None
    latest = latest_follow_up(today)
    if follow_up > latest:
        return t("review.date_too_far", max_date=t.date(latest)), None
    return None, follow_up


# Reviewer pages


@ui_app.get("/models")
def models(request: Request) -> Response:
    def view(page: Page) -> Response:
        _require_role(page, "reviewer")
        error = None
        versions: list[modelcards.VersionSummary] = []
        try:
            versions = modelcards.list_versions()
        except Exception as exc:  # noqa: BLE001 - any registry failure is shown
            logger.error("failed to list model versions: %s", exc)
            error = page.t("models.unavailable", error=type(exc).__name__)
        return _render(page, "models.html", versions=versions, error=error)

    return _handle(request, view)


def _card_or_404(page: Page, name: str, version: str) -> modelcards.VersionCard:
    try:
        return modelcards.version_card(name, version)
    except LookupError:
        raise PageError(
            HTTPStatus.NOT_FOUND, "error.notfound.title", page.t("error.notfound.page")
        ) from None


@ui_app.get("/models/{name}/{version}")
def model(request: Request, name: str, version: str) -> Response:
    def view(page: Page) -> Response:
        _require_role(page, "reviewer")
        card = _card_or_404(page, name, version)
        return _render(
            page,
            "model.html",
            card=card,
            metric_headers=metric_headers(page.t, card),
            error=None,
            max_reason=modelcards.MAX_REASON_CHARS,
        )

    return _handle(request, view)


def metric_headers(t: Translator, card: modelcards.VersionCard) -> dict[str, str]:
    """Return the column header of each metric in the card's tables.

    The headers of the top-k metrics contain the share or the k that the run
    selected, or state that the run did not record it.
    """
    share = card.top_share
    k = card.k_per_unit
    headers = {}
    for table in card.metric_tables:
        for column in table.columns:
            key = f"metric.{column}"
            if column.endswith("_at_k_share"):
                if share is None:
                    headers[column] = t(f"{key}_unrecorded")
                else:
                    headers[column] = t(key, share=t.percent(share))
            elif column.endswith("_at_k_per_unit"):
                if k is None:
                    headers[column] = t(f"{key}_unrecorded")
                else:
                    headers[column] = t(key, k=k)
            else:
                headers[column] = t(key) if t.has(key) else column
    return headers


_ARTIFACT_TYPES = {
    modelcards.FAIRNESS_ARTIFACT: "text/html; charset=utf-8",
    modelcards.SUMMARY_ARTIFACT: "application/json",
    "model_card.html": "text/html; charset=utf-8",
    "model_card.md": "text/plain; charset=utf-8",
}


@ui_app.get("/models/{name}/{version}/artifacts/{artifact}")
def model_artifact(
    request: Request, name: str, version: str, artifact: str
) -> Response:
    def view(page: Page) -> Response:
        _require_role(page, "reviewer")
        if artifact not in _ARTIFACT_TYPES:
            raise PageError(
                HTTPStatus.NOT_FOUND,
                "error.notfound.title",
                page.t("error.notfound.page"),
            )
        card = _card_or_404(page, name, version)
        content = modelcards.read_artifact(card, artifact)
        if content is None:
            raise PageError(
                HTTPStatus.NOT_FOUND,
                "error.notfound.title",
                page.t("model.not_available"),
            )
        # The report is shown as a document of its own: no scripts, no forms.
        return Response(
            content,
            media_type=_ARTIFACT_TYPES[artifact],
            headers={
                "Content-Security-Policy": "sandbox; default-src 'none'; "
                "style-src 'unsafe-inline'; img-src data:"
            },
        )

    return _handle(request, view)


@ui_app.post("/models/{name}/{version}/signoff")
async def signoff(request: Request, name: str, version: str) -> Response:
    form = await request.form()

    def view(page: Page) -> Response:
        principal = _require_role(page, "reviewer")
        _check_csrf_logged(
            page,
            form,
            principal,
            SIGNOFF_ENDPOINT,
            model_version=f"{name}/{version}",
        )
        card = _card_or_404(page, name, version)
        decision = str(form.get("decision", ""))
        reason = str(form.get("reason", ""))
        label = next(
            (
                info.label
                for info in context().tokens.list()
                if info.token_id == principal.token_id
            ),
            "",
        )
        reviewer = f"{label} ({principal.token_id})" if label else principal.token_id
        try:
            modelcards.record_signoff(name, version, reviewer, decision, reason)
        except ValueError:
            return _render(
                page,
                "model.html",
                HTTPStatus.BAD_REQUEST,
                card=card,
                error=page.t("signoff.invalid", max=modelcards.MAX_REASON_CHARS),
                max_reason=modelcards.MAX_REASON_CHARS,
            )
        _log(
            principal,
            SIGNOFF_ENDPOINT,
            f"201 signoff {decision}",
            model_version=f"{name}/{version}",
        )
        raise Redirect(
            f"{page.base}/models/{quote(name)}/{quote(version)}?msg=signoff.saved"
        )

    return await run_in_threadpool(_handle, request, view)


@ui_app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Render the error page for an error that Starlette raised itself.

    These are a 404 of the router and a 400 of ``Request.form()`` for a
    broken multipart body or a form field over 1 MiB (Starlette 1.10's
    default limit). Without this handler FastAPI returns JSON.
    """
    return await run_in_threadpool(_error_page, request, error.status_code)


def _error_page(
    request: Request, status: int, headers: dict[str, str] | None = None
) -> Response:
    page = _page(request)
    if status == HTTPStatus.NOT_FOUND:
        title, message = page.t("error.notfound.title"), page.t("error.notfound.page")
    elif status == HTTPStatus.BAD_REQUEST:
        title, message = page.t("error.form.title"), page.t("error.form.invalid")
    else:
        title = page.t("error.request.title")
        message = page.t("error.request.failed", status=status)
    response = _render(page, "error.html", status, title=title, message=message)
    response.headers.update(headers or {})
    return response


def _unknown_page(request: Request) -> Response:
    """Return 405 for a page that takes other methods, else 404.

    This route matches every path and method, so the router never finds a
    page with another method by itself.
    """
    allowed = ", ".join(_allowed_methods(request.scope))
    if not allowed:
        return _error_page(request, HTTPStatus.NOT_FOUND)
    logger.info("rejected %s to a page that takes only %s", request.method, allowed)
    return _error_page(request, HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": allowed})


def _allowed_methods(scope: dict[str, Any]) -> list[str]:
    """Return the sorted methods of the page routes whose path matches ``scope``,
    with HEAD wherever GET is allowed."""
    allowed: set[str] = set()
    for route in ui_app.routes:
        if getattr(route, "endpoint", None) is _unknown_page:
            continue
        match, _ = route.matches(scope)
        if match == Match.PARTIAL:
            allowed |= getattr(route, "methods", None) or set()
    if "GET" in allowed:
        # HeadAsGetMiddleware serves HEAD wherever GET is served.
        allowed.add("HEAD")
    return sorted(allowed)


# A school id may contain '/', because a school-records unit is "school/year".
# The school page's route matches any such id, so it is added after the pupil
# routes, or it would match their paths too.
ui_app.add_api_route("/schools/{school_id:path}", school, methods=["GET"])

# BentoML 1.4.40 passes a request under /ui to this app only when one of its
# routes matches the path (PassiveMount in _bentoml_impl.server.mount), and
# returns its own plain-text 404 for every other path. This last route
# matches every path, so an unknown page gets the error page and its headers.
ui_app.add_api_route(
    "/{unknown_path:path}",
    _unknown_page,
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
)

# BentoML 1.4 merges every mounted FastAPI app's routes into the service's
# OpenAPI document; these HTML pages are not part of the API.
for _route in ui_app.routes:
    _route.include_in_schema = False
