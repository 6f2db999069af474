"""The BentoML service: scoring, pupil reads and model description over HTTP.

Start it with :func:`serving.server.run_server` (``ajoissa serve``) or with
``bentoml serve serving.service:ScoringService --host 127.0.0.1 --port 3000``.
Always pass ``--host``, because BentoML 1.4 binds to 0.0.0.0 otherwise.

Configuration comes from the environment of the server process:

``AJOISSA_MODEL_NAME``
    Registered model to serve (default ``models.store.DEFAULT_MODEL_NAME``). The
    version that carries the ``champion`` alias is loaded after its integrity
    check (see :func:`models.store.load_registered`).
``AJOISSA_RELOAD_SECONDS``
    How often the registry is asked whether the champion moved (see
    :mod:`serving.champion`). Each worker process asks on its own, so during a
    switch two workers can serve different versions for up to this long.
``AJOISSA_WORKERS``
    Number of worker processes (default: one per CPU core). Each loads the
    model and appends to the same access log.
``AJOISSA_MAX_BODY_BYTES``
    Maximum request body size (see :mod:`serving.middleware`).
``AJOISSA_REQUEST_TIMEOUT_SECONDS``
    Seconds a request may run before BentoML returns 504 (default
    ``DEFAULT_REQUEST_TIMEOUT_SECONDS``, sized for a full batch with reasons).
``AJOISSA_HOME`` / ``MLFLOW_TRACKING_URI``
    Where the registry is, as described in :mod:`models.store`.
``AJOISSA_SCORE_STORE_URL``, ``AJOISSA_ACCESS_DB``, ``AJOISSA_ACCESS_LOG``
    The score store, the tokens and the access log (see :mod:`serving.scorestore`,
    :mod:`serving.access` and :mod:`serving.accesslog`).
``AJOISSA_SCORE_STORE_RETRY_SECONDS``
    How often a worker tries again to open a score store that failed to open
    (see :mod:`serving.storeconnection`).

Endpoints
---------
Every endpoint except the probes, ``/metrics`` and the OpenAPI document
(``/docs.json``) needs ``Authorization: Bearer <token>``: 401 without a valid
token, 403 when the token's role has no right (see :mod:`serving.auth`).

``POST /v1/score`` (platform)
    Body ``{"records": [...], "as_of": "YYYY-MM-DD", "include_reasons": true}``
    (``as_of`` and ``include_reasons`` optional). Returns 200 with
    ``{"scores": [...], "warnings": [...], "model": {"name", "version"}}`` (see
    :mod:`serving.scoring`). Invalid records or options return 400, and a batch
    above ``MAX_BATCH_RECORDS`` or a body above the size limit (see
    :mod:`serving.middleware`) returns 413. Returns 503 while no model is
    loaded, with the last load error in the message.

Every error response has the body :class:`~serving.api_models.ErrorBody`:
``error``, ``problem_count`` and ``problems``.
``GET /v1/pupils/{id}/explanation`` and ``GET /v1/pupils/{id}/history`` (staff)
    The pupil's latest stored scores with every feature's contribution, and all
    stored scores, from the score store. Only rows of the token's schools are
    read. A pupil with no row there gets 404, whether or not other schools have
    rows, so the response does not reveal where else a pupil is enrolled.
    While the score store cannot be opened or read, both return 503 (see
    :mod:`serving.storeconnection`).
``GET /v1/model`` (every role)
    The served model: name, version, alias, digests, training metrics and the
    path of its model card, with the registry's champion version and whether
    that version failed to load.
``GET /v1/tokens`` (admin)
    The API tokens, without secrets.
``GET /healthz`` and ``GET /livez``
    Liveness, provided by BentoML: 200 while the worker is running.
``GET /readyz``
    Readiness, provided by BentoML. It calls ``__is_ready__`` below, so it
    returns 200 once a verified model is loaded and 503 before. A newer
    champion that fails to load leaves it at 200, because the loaded version
    keeps serving. The score store does not change the status, because
    scoring does not read it, but the body names its state (see
    :mod:`serving.middleware`).
``GET /metrics``
    Prometheus metrics, provided by BentoML (request counts and latencies per
    route template, such as ``/v1/pupils/{pupil_id}/explanation``; see
    :mod:`serving.metrics`).

``/ui``
    The review screens for staff and reviewers (see :mod:`serving.ui.app`),
    signed in with a token and then a session cookie.

Every scoring request and every pupil read is written to the access log. The
application log gets counts and durations only, never pupil ids or values.
BentoML's own line per request (``bentoml.access``) is switched off, and its
OpenTelemetry middleware skips ``/v1/score``.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

import anyio
import anyio.to_thread
import bentoml
import msgspec
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError
from starlette.responses import Response

from models.reason_text import stored_reasons_to_show
from models.store import (
    ARTIFACT_DIGEST_TAG,
    DEFAULT_MODEL_NAME,
    TRAINING_DATA_TAG,
    LoadedModel,
    tracking_uri,
)
from serving.access import TokenStore
from serving.accesslog import AccessEvent, AccessLog
from serving.api_models import (
    MAX_PROBLEMS_IN_RESPONSE,
    MAX_PUPIL_ID_CHARS,
    PUPIL_ID_PATTERN,
    ErrorBody,
    ExplainedScore,
    Explanation,
    History,
    HistoryEntry,
    ModelInfo,
    ScoreResponse,
    TokenEntry,
    error_body,
)
from serving.auth import PUBLIC_PATHS, AccessControlMiddleware, principal_of
from serving.champion import ChampionHolder, redact_credentials, reload_seconds
from serving.metrics import RouteTemplates
from serving.metrics import install as install_metric_templates
from serving.middleware import (
    SCORE_BODY_KEY,
    SCORE_PATH,
    BodyLimitMiddleware,
    ErrorFormatMiddleware,
    HeadAsGetMiddleware,
    ScoreBodyMiddleware,
    parse_score_body,
)
from serving.ratelimitedlog import RateLimitedWarning
from serving.request_body import decode_plain_request
from serving.scoring import (
    MAX_BATCH_RECORDS,
    BatchTooLargeError,
    RecordProblem,
    RecordValidationError,
    ValidatedBatch,
    score_batch,
    score_records,
    validate_records,
)
from serving.storeconnection import (
    ScoreStoreConnection,
    ScoreStoreUnavailableError,
    retry_seconds,
    set_worker_connection,
)
from serving.ui.app import MOUNT_PATH as UI_MOUNT_PATH
from serving.ui.app import ui_app
from serving.ui.modelcards import (
    MODEL_CARD_URL_TAG,
    model_card_document,
    model_card_path,
)

logger = logging.getLogger(__name__)

MODEL_NAME_ENV = "AJOISSA_MODEL_NAME"
WORKERS_ENV = "AJOISSA_WORKERS"
REQUEST_TIMEOUT_ENV = "AJOISSA_REQUEST_TIMEOUT_SECONDS"
DEFAULT_REQUEST_TIMEOUT_SECONDS = 300.0
"""Seconds a request may run before BentoML returns 504 (BentoML's own default is
60). A full batch of ``MAX_BATCH_RECORDS`` with reasons took 8.6 to 10.2 s in
``benchmarks/serving.py`` on 2 shared cores at load average 6.5 to 10.6. Before
the scoring speed-ups it took 26 s at load average 13 (docs/benchmarks.md). The
default leaves room for a machine about ten times slower than that."""

INLINE_MAX_RECORDS = 4
"""Largest scoring request, in records, scored on the worker's event loop.

Passing a request to a thread and back costs about 0.05 ms of CPU time, and
then the thread and the loop take turns holding the GIL. While the loop
scores, other requests to the same worker wait. With reasons, one record took
1.0 ms of CPU time and eight took 5.5 ms (load average 14), so four take
about 3 ms by estimate."""

INLINE_MAX_BODY_BYTES = 16 * 1024
"""Largest body, in bytes, decoded on the worker's event loop.

A larger body is decoded in the scoring thread, so that decoding does not
hold up the loop: 10,000 records took 28 ms of CPU time. Four records of the
19-feature OULAD model take about 2.1 KB, so the limit leaves room for
records of about 150 features."""

_JSON_ENCODER = msgspec.json.Encoder()
"""Encoder of the scoring responses.

It took 0.18 ms for the scores of 1,000 records without reasons, against
0.40 ms for :func:`pydantic_core.to_json`. A NaN becomes null, where
``to_json`` writes ``NaN``, which is not JSON."""

_APP_LOGGERS = ("serving", "models")

# NOTE: a private BentoML 1.4 logger name. If an upgrade renames it, the filter
# below stops applying and request bodies reach the ERROR log again.
_BENTOML_REQUEST_ERROR_LOGGER = "bentoml._internal.server.http_app"
"""Logger of BentoML's ``log_exception``, which logs failed request parsing."""
_BENTOML_ACCESS_LOGGER = "bentoml.access"
"""Logger of BentoML's per-request access lines (method, path, status, latency)."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid or revoked token."},
    403: {"model": ErrorBody, "description": "The token's role has no right."},
}

_PUPIL_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No stored score at the token's schools."},
    503: {"model": ErrorBody, "description": "The score store is unavailable."},
}

read_api = FastAPI(
    title="Ajoissa read API",
    description="Stored scores of pupils, the served model and the API tokens.",
)


@read_api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code)


_ID_ERRORS = frozenset(
    {"string_pattern_mismatch", "string_too_long", "string_too_short"}
)
_PUPIL_ID_EXPECTED = (
    f"a pupil id of 1 to {MAX_PUPIL_ID_CHARS} letters, digits and the characters "
    "'_', '.', ':' and '-', the form of ids in the score store"
)
"""The rule of ``PUPIL_ID_PATTERN`` in words, for the 422 in place of the pattern."""


@read_api.exception_handler(RequestValidationError)
async def _invalid_request(
    request: Request, exc: RequestValidationError
) -> JSONResponse:
    # Values are left out, because the path contains a pupil id.
    await anyio.to_thread.run_sync(_log_invalid_pupil_read, request)
    problems = []
    for error in exc.errors():
        field_name = ".".join(str(part) for part in error["loc"])
        expected = error["msg"]
        message = f"{field_name}: {expected}"
        if error["loc"][-1:] == ("pupil_id",) and error["type"] in _ID_ERRORS:
            expected = _PUPIL_ID_EXPECTED
            message = f"{field_name}: expected {expected}"
        problems.append(
            {
                "record": None,
                "field": field_name,
                "kind": "invalid",
                "value": None,
                "expected": expected,
                "message": message,
            }
        )
    message = "; ".join(problem["message"] for problem in problems)
    return JSONResponse(
        error_body(f"invalid request: {message}", problems),
        status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
    )


def _log_invalid_pupil_read(request: Request) -> None:
    """Write a rejected pupil read with an invalid id to the access log.

    FastAPI rejects the id before the endpoint runs, so :meth:`_read_pupil`
    never receives it. The row stores the id shortened by
    :func:`serving.accesslog.loggable_id`.
    """
    pupil_id = request.path_params.get("pupil_id")
    kind = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if pupil_id is None or kind not in ("explanation", "history"):
        return
    principal = principal_of(request.scope)
    token_id = principal.token_id if principal else None
    endpoint = f"/v1/pupils/{{id}}/{kind}"
    _worker_access_log().append(
        AccessEvent(
            endpoint=endpoint,
            outcome="422 invalid id",
            token_id=token_id,
            role=principal.role if principal else None,
            pupil_id=pupil_id,
        )
    )
    logger.info("rejected %s with an invalid pupil id, token %s", endpoint, token_id)


@functools.cache
def _worker_access_log() -> AccessLog:
    """Return the worker's access log, shared by the service and its error handler."""
    return AccessLog()


def _enable_app_logging() -> None:
    # BentoML's worker logging config sets the root logger to WARNING and
    # disables loggers created before it runs, which would hide the INFO lines
    # that this service promises (start, model loaded, request counts, stop).
    for name in _APP_LOGGERS:
        app_logger = logging.getLogger(name)
        app_logger.setLevel(logging.INFO)
        app_logger.disabled = False
    for name, candidate in logging.Logger.manager.loggerDict.items():
        if isinstance(candidate, logging.Logger) and name.startswith(
            tuple(f"{prefix}." for prefix in _APP_LOGGERS)
        ):
            candidate.disabled = False


class _DropRequestBodyFilter(logging.Filter):
    """Remove the traceback from BentoML's log of an unparseable request body.

    BentoML 1.4 logs request parsing failures at ERROR with the pydantic
    ValidationError, whose text quotes the start of the request body. A body
    contains pupil-level data, so the traceback is dropped and only the
    error count remains. The record is lowered to INFO, because the client
    gets a 400 for its own mistake and the server has no error to act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            record.msg = (
                f"{record.getMessage()} (request body rejected: "
                f"{error.error_count()} validation error(s))"
            )
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


class _RedactPupilPathFilter(logging.Filter):
    """Replace pupil ids in request paths of BentoML's access log with ``{id}``.

    BentoML 1.4 logs every request's path at INFO on ``bentoml.access``, and
    the pupil endpoints carry the pupil id in the path. The service switches
    that log off, but a BentoML configuration file can switch it back on
    (``services.ajoissa.logging.access.enabled``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/pupils/" in message:
            record.msg = _PUPIL_PATH.sub(r"\1{id}", message)
            record.args = None
        return True


_PUPIL_PATH = re.compile(r"(/pupils/)[^/\s,)]+")


def _install_log_filters() -> None:
    bentoml_logger = logging.getLogger(_BENTOML_REQUEST_ERROR_LOGGER)
    if not any(isinstance(f, _DropRequestBodyFilter) for f in bentoml_logger.filters):
        bentoml_logger.addFilter(_DropRequestBodyFilter())
    access_logger = logging.getLogger(_BENTOML_ACCESS_LOGGER)
    if not any(isinstance(f, _RedactPupilPathFilter) for f in access_logger.filters):
        access_logger.addFilter(_RedactPupilPathFilter())


def _worker_count() -> int:
    """Return ``AJOISSA_WORKERS``, or one worker process per CPU core.

    One process runs Python code on one core at a time, so with a single
    worker, concurrent requests queue behind each other even when cores are
    idle.

    Raises
    ------
    ValueError
        If the setting is not a positive whole number.
    """
    raw = os.environ.get(WORKERS_ENV)
    if raw is None:
        return os.cpu_count() or 1
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(
            f"invalid {WORKERS_ENV}={raw!r}: expected a whole number of worker "
            "processes, 1 or more"
        )
    return int(raw)


def _request_timeout() -> float:
    """Return ``AJOISSA_REQUEST_TIMEOUT_SECONDS`` or the default, in seconds.

    Raises
    ------
    ValueError
        If the setting is not a positive number of seconds.
    """
    raw = os.environ.get(REQUEST_TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_REQUEST_TIMEOUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"invalid {REQUEST_TIMEOUT_ENV}={raw!r}: expected a number of seconds "
            "greater than 0, such as 300"
        )
    return seconds


_STORE_RETRY_SECONDS = retry_seconds()
"""Read when the module is imported, so that ``ajoissa serve`` stops with the
error of an invalid setting before it starts workers."""
_RELOAD_SECONDS = reload_seconds()
"""Read when the module is imported, for the same reason."""


def _describe_store() -> str:
    # The tracking URI of a remote MLflow server may contain credentials, so
    # only the embedded SQLite location is written to the log.
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return uri
    return "the MLflow server in MLFLOW_TRACKING_URI"


@bentoml.service(
    name="ajoissa",
    workers=_worker_count(),
    traffic={"timeout": _request_timeout()},
    # BentoML's own line per request adds little to the access log, /metrics
    # and the handler's log lines. Tracing exports nothing unless configured,
    # yet BentoML's OpenTelemetry middleware built an unsampled span for each
    # scoring request: 0.3 to 0.4 ms of the 2.5 ms of CPU time that one
    # single-record request took in process (load average 8).
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [SCORE_PATH]},
)
@bentoml.asgi_app(read_api, path="/v1")
@bentoml.asgi_app(ui_app, path=UI_MOUNT_PATH)
class ScoringService:
    """Dropout-risk scoring with the champion version of one registered model."""

    def __init__(self) -> None:
        _enable_app_logging()
        _install_log_filters()
        model_name = os.environ.get(MODEL_NAME_ENV) or DEFAULT_MODEL_NAME
        logger.info(
            "scoring service starting: model %s from %s", model_name, _describe_store()
        )
        # Scoring does not need the score store, so the worker starts whether
        # or not the store opens. A thread opens it, while the model loads,
        # and retries after failures.
        self.scores = ScoreStoreConnection(retry=_STORE_RETRY_SECONDS)
        self.scores.start()
        set_worker_connection(self.scores)
        self.champion = ChampionHolder(model_name, _RELOAD_SECONDS)
        self.champion.refresh()
        self.champion.start()
        self.access_log = _worker_access_log()
        self.tokens = TokenStore()
        self._not_ready_warning = RateLimitedWarning(logger)
        # Model card paths by model version, read from the registry once.
        self._model_card_urls: dict[str, str | None] = {}
        # Created on the first large request, in the worker's event loop.
        self._batch_limiter: anyio.CapacityLimiter | None = None
        # The imports and the model leave millions of long-lived objects. Moving
        # them out of the collector's generations keeps full collections,
        # which otherwise pause a request now and then, short.
        gc.collect()
        gc.freeze()

    @property
    def model_name(self) -> str:
        return self.champion.name

    def __is_ready__(self) -> bool:
        """Return whether a verified model is loaded.

        BentoML calls this for ``GET /readyz``, which returns 503 when it is false.
        """
        return self.champion.loaded is not None

    @bentoml.on_shutdown
    def log_stop(self) -> None:
        """Stop the model watcher and log that the worker is stopping."""
        self.champion.stop()
        self.scores.stop()
        logger.info("scoring service stopping")

    @bentoml.api(route="/v1/score")
    async def score(
        self,
        ctx: bentoml.Context,
        records: Annotated[
            Any,
            Field(
                description=(
                    "Array of records (JSON objects) keyed by the model's feature "
                    f"names; at most {MAX_BATCH_RECORDS} records per request."
                )
            ),
        ] = None,
        as_of: Annotated[
            Any,
            Field(
                description="Date (YYYY-MM-DD) that the records' features describe; "
                "echoed in every score. Optional."
            ),
        ] = None,
        include_reasons: Annotated[
            Any,
            Field(
                description="true (default) to return the top 3 reasons per record; "
                "false to skip them, which skips the SHAP computation that costs "
                "most of the scoring time. Each score's reasons is then null."
            ),
        ] = True,
    ) -> ScoreResponse:
        """Score records for dropout risk with the champion model.

        ``records``, ``as_of`` and ``include_reasons`` are typed ``Any`` so that
        :mod:`serving.scoring` checks them and reports every problem by record
        index and field name. Every response, error or not, is a JSON
        :class:`~starlette.responses.Response` built here, and error bodies are
        :class:`~serving.api_models.ErrorBody`.

        A JSON object body reaches the handler through the scope, kept by
        :class:`~serving.middleware.ScoreBodyMiddleware`, and the parameters
        then keep their defaults. BentoML fills them only for bodies that the
        middleware passes through. The handler decodes the body on the event
        loop, with the records' types checked as they are decoded when they
        are plain (see :mod:`serving.request_body`).

        A JSON object body with a top-level key other than the parameters above
        is rejected with a 400 that names the key.

        NOTE: BentoML's input model ignores such keys, so a body that the
        middleware passes through (not ``application/json``) does not get
        that check.

        A request of at most ``INLINE_MAX_RECORDS`` records is scored on the
        worker's event loop. A larger one is scored in a thread, one at a time
        per worker process, so that the loop keeps serving other requests. A
        body above ``INLINE_MAX_BODY_BYTES`` is also decoded in that thread.
        """
        started = time.perf_counter()
        if self._batch_limiter is None:
            self._batch_limiter = anyio.CapacityLimiter(1)
        body = ctx.request.scope.get(SCORE_BODY_KEY)
        if isinstance(body, bytes) and len(body) > INLINE_MAX_BODY_BYTES:
            respond = functools.partial(
                self._read_and_respond, ctx, records, as_of, include_reasons, started
            )
            return await anyio.to_thread.run_sync(respond, limiter=self._batch_limiter)
        request = self._read_request(ctx, records, as_of, include_reasons)
        if request.count <= INLINE_MAX_RECORDS:
            return self._respond(ctx, request, started)
        respond = functools.partial(self._respond, ctx, request, started)
        return await anyio.to_thread.run_sync(respond, limiter=self._batch_limiter)

    def _read_and_respond(
        self,
        ctx: bentoml.Context,
        records: Any,
        as_of: Any,
        include_reasons: Any,
        started: float,
    ) -> Response:
        request = self._read_request(ctx, records, as_of, include_reasons)
        return self._respond(ctx, request, started)

    def _read_request(
        self, ctx: bentoml.Context, records: Any, as_of: Any, include_reasons: Any
    ) -> _ScoreRequest:
        """Decode the body that :class:`ScoreBodyMiddleware` kept, for the model."""
        loaded = self.champion.loaded
        body = ctx.request.scope.get(SCORE_BODY_KEY)
        if isinstance(body, bytes) and loaded is not None:
            plain = decode_plain_request(body, loaded.spec)
            if plain is not None:
                return _ScoreRequest(
                    loaded, plain.batch, None, plain.as_of, plain.include_reasons
                )
        if body is None:
            # BentoML filled the parameters: the middleware passed the body on.
            return _ScoreRequest(loaded, None, records, as_of, include_reasons)
        parsed = parse_score_body(body)
        if parsed is None:
            problem = _unparseable_body_problem(body)
            return _ScoreRequest(loaded, None, None, None, True, [problem], False)
        records, as_of, include_reasons = score_arguments(parsed)
        key_problems = unknown_key_problems(parsed)
        if "records" not in parsed:
            key_problems.append(
                RecordProblem(None, "records", None, _RECORDS_EXPECTED, "missing")
            )
        return _ScoreRequest(
            loaded,
            None,
            records,
            as_of,
            include_reasons,
            key_problems,
            has_records="records" in parsed,
        )

    def _respond(
        self, ctx: bentoml.Context, request: _ScoreRequest, started: float
    ) -> Response:
        principal = principal_of(ctx.request.scope)
        loaded = request.loaded
        status, body = self._score(request)
        # The access log gets one row per request: the records carry no pupil id.
        self.access_log.append(
            AccessEvent(
                endpoint="/v1/score",
                outcome=f"{status} {request.count} record(s)",
                token_id=principal.token_id if principal else None,
                role=principal.role if principal else None,
                model_version=loaded.version if loaded else None,
            )
        )
        ctx.response.status_code = status
        if status == HTTPStatus.OK:
            logger.info(
                "scored %d record(s) in %.1f ms with %s version %s (%d warning(s))",
                request.count,
                (time.perf_counter() - started) * 1000,
                loaded.name,
                loaded.version,
                len(body["warnings"]),
            )
        # Returning a Response skips BentoML's output model, which builds a JSON
        # schema on every response (16 % of the worker's busy samples in a py-spy
        # profile of single-record requests).
        return Response(
            _JSON_ENCODER.encode(body),
            status_code=status,
            media_type="application/json",
        )

    def _score(self, request: _ScoreRequest) -> tuple[int, dict[str, Any]]:
        loaded = request.loaded
        if loaded is None:
            self._not_ready_warning.log(
                "rejected scoring request: model %s is not loaded", self.model_name
            )
            return HTTPStatus.SERVICE_UNAVAILABLE, error_body(
                self._not_loaded_message()
            )
        as_of_text, request_problems = _parse_options(
            request.as_of, request.include_reasons
        )
        request_problems = request.key_problems + request_problems
        include_reasons = request.include_reasons is True
        # Only counts and durations are logged at INFO because record values
        # are pupil-level data.
        try:
            if request_problems:
                _raise_with_record_problems(request_problems, request, loaded)
            if request.batch is not None:
                result = score_batch(
                    request.batch,
                    loaded,
                    as_of=as_of_text,
                    include_reasons=include_reasons,
                )
            else:
                result = score_records(
                    request.records,
                    loaded,
                    as_of=as_of_text,
                    include_reasons=include_reasons,
                )
        except BatchTooLargeError as exc:
            logger.info(
                "rejected scoring request: %d records exceed the limit of %d",
                exc.count,
                exc.limit,
            )
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_body(str(exc)) | {
                "max_records": exc.limit
            }
        except RecordValidationError as exc:
            logger.info(
                "rejected scoring request: %d problem(s), %d record(s) received",
                len(exc.problems),
                request.count,
            )
            # The message contains pupil-level values, so it is logged only at DEBUG.
            logger.debug("validation problems: %s", exc)
            listed = exc.problems[:MAX_PROBLEMS_IN_RESPONSE]
            return HTTPStatus.BAD_REQUEST, error_body(
                str(exc),
                [problem.to_dict() for problem in listed],
                problem_count=len(exc.problems),
            )
        return HTTPStatus.OK, result.response_body()

    def _not_loaded_message(self) -> str:
        reason = self.champion.last_error or "the registry has not been checked yet"
        return (
            f"model {self.model_name!r} is not loaded: {reason}. The server "
            f"checks the registry every {self.champion.interval_seconds:g} s and "
            "loads a new champion without a restart, and it tries a rejected "
            f"version again after {self.champion.retry_seconds:g} s. Retry when "
            "/readyz returns 200."
        )

    @read_api.get(
        "/pupils/{pupil_id}/explanation",
        response_model=Explanation,
        responses=_ERRORS | _PUPIL_READ_ERRORS,
    )
    def explanation(
        self,
        request: Request,
        pupil_id: Annotated[str, Path(pattern=PUPIL_ID_PATTERN)],
    ) -> Explanation:
        """Return the pupil's latest stored scores with every feature's contribution.

        Only scores at the token's schools are read. Every row returned, and a
        404, is written to the access log.
        """
        endpoint = "/v1/pupils/{id}/explanation"
        stored = self._read_pupil(request, pupil_id, endpoint)
        latest = [row for row in stored if row.run == stored[0].run]
        first = latest[0]
        return Explanation(
            pupil_id=pupil_id,
            as_of=first.run.as_of,
            model_name=first.run.model_name,
            model_version=first.run.model_version,
            scored_at=first.created_at,
            scores=[
                ExplainedScore(
                    school_id=row.score.school_id,
                    enrolment_id=row.score.enrolment_id,
                    probability=row.score.probability,
                    school_rank=row.score.school_rank,
                    school_size=row.score.school_size,
                    reasons=stored_reasons_to_show(row.score.reasons),
                    base_value_log_odds=row.score.contributions["base_value_log_odds"],
                    contributions=row.score.contributions["features"],
                )
                for row in latest
            ],
        )

    @read_api.get(
        "/pupils/{pupil_id}/history",
        response_model=History,
        responses=_ERRORS | _PUPIL_READ_ERRORS,
    )
    def history(
        self,
        request: Request,
        pupil_id: Annotated[str, Path(pattern=PUPIL_ID_PATTERN)],
    ) -> History:
        """Return every stored score of the pupil at the token's schools, newest first."""
        stored = self._read_pupil(request, pupil_id, "/v1/pupils/{id}/history")
        return History(
            pupil_id=pupil_id,
            entries=[
                HistoryEntry(
                    as_of=row.run.as_of,
                    school_id=row.score.school_id,
                    probability=row.score.probability,
                    school_rank=row.score.school_rank,
                    school_size=row.score.school_size,
                    reasons=stored_reasons_to_show(row.score.reasons),
                    model_name=row.run.model_name,
                    model_version=row.run.model_version,
                    scored_at=row.created_at,
                )
                for row in stored
            ],
        )

    def _read_pupil(self, request: Request, pupil_id: str, endpoint: str) -> list[Any]:
        principal = principal_of(request.scope)
        if principal is None or principal.role != "staff":
            # The middleware already rejects these; this guards a misconfiguration.
            raise HTTPException(403, "only staff tokens read pupil scores")

        def log_read(
            outcome: str, school: str | None = None, version: str | None = None
        ) -> None:
            self.access_log.append(
                AccessEvent(
                    endpoint=endpoint,
                    outcome=outcome,
                    token_id=principal.token_id,
                    role=principal.role,
                    pupil_id=pupil_id,
                    school_id=school,
                    model_version=version,
                )
            )

        try:
            with self.scores.reading() as store:
                stored = store.pupil_scores(pupil_id, principal.schools)
        except ScoreStoreUnavailableError as exc:
            log_read("503 store unavailable")
            logger.info(
                "rejected %s: the score store is unavailable, token %s",
                endpoint,
                principal.token_id,
            )
            raise HTTPException(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
        if not stored:
            log_read("404 not found")
            raise HTTPException(
                404,
                f"no stored score for pupil {pupil_id!r} at your schools "
                f"({', '.join(principal.schools)})",
            )
        for school, version in sorted(
            {(row.score.school_id, row.run.model_version) for row in stored}
        ):
            log_read("200 ok", school, version)
        logger.info("read %d stored score(s) for %s", len(stored), endpoint)
        return stored

    @read_api.get("/model", response_model=ModelInfo, responses=_ERRORS)
    def model(self) -> ModelInfo:
        """Return the served model's identity, digests and training metrics."""
        champion = self.champion
        loaded = champion.loaded
        tags = loaded.tags if loaded else {}
        registry_version = champion.registry_version
        # The served version keeps its alias only while the registry agrees.
        alias = None
        if loaded is not None and registry_version == loaded.version:
            alias = loaded.alias
        return ModelInfo(
            name=self.model_name,
            version=loaded.version if loaded else None,
            alias=alias,
            loaded_at=champion.loaded_at,
            artifact_sha256=tags.get(ARTIFACT_DIGEST_TAG),
            training_data_sha256=tags.get(TRAINING_DATA_TAG),
            source=tags.get("source"),
            features=list(loaded.spec.features) if loaded else [],
            metrics=loaded.metrics if loaded else {},
            model_card_url=self._model_card_url(loaded),
            registry_champion_version=registry_version,
            registry_champion_rejected=champion.registry_version_rejected,
            last_load_error=champion.last_error,
        )

    def _model_card_url(self, loaded: LoadedModel | None) -> str | None:
        """Return the review screens' path of the served version's model card.

        The version's ``model_card_url`` tag is the fallback when its run
        stored no model card document. A failed registry read gives None and
        is tried again on the next request.
        """
        from mlflow.exceptions import MlflowException

        if loaded is None:
            return None
        if loaded.version in self._model_card_urls:
            return self._model_card_urls[loaded.version]
        document = None
        if loaded.run_id:
            try:
                document = model_card_document(loaded.run_id)
            except MlflowException as exc:
                logger.warning(
                    "failed to list the artifacts of model %s version %s: %s",
                    loaded.name,
                    loaded.version,
                    redact_credentials(str(exc)),
                )
                return None
        if document is None:
            url = loaded.tags.get(MODEL_CARD_URL_TAG)
        else:
            url = model_card_path(loaded.name, loaded.version, document)
        self._model_card_urls[loaded.version] = url
        return url

    @read_api.get("/tokens", response_model=list[TokenEntry], responses=_ERRORS)
    def list_tokens(self) -> list[TokenEntry]:
        """Return the API tokens without their secrets."""
        return [
            TokenEntry(
                token_id=info.token_id,
                role=info.role,
                schools=list(info.schools),
                label=info.label,
                created_at=info.created_at,
                revoked_at=info.revoked_at,
            )
            for info in self.tokens.list()
        ]


# The first middleware added runs first: a HEAD becomes a GET before its
# token is checked, and tokens are checked before a body is read.
ScoringService.add_asgi_middleware(HeadAsGetMiddleware)
ScoringService.add_asgi_middleware(AccessControlMiddleware)
ScoringService.add_asgi_middleware(BodyLimitMiddleware)
ScoringService.add_asgi_middleware(ErrorFormatMiddleware)
ScoringService.add_asgi_middleware(ScoreBodyMiddleware)

# /metrics is open, so its endpoint labels carry route templates, never ids.
install_metric_templates(
    RouteTemplates(
        [("/v1", read_api), ("/ui", ui_app)],
        fixed_paths=PUBLIC_PATHS | {"/v1/score", "/docs"},
        fixed_prefixes=("/static_content/", "/assets/"),
    )
)


def _exit_worker_on_failed_start() -> None:
    """Make a worker whose start-up fails exit instead of serving without a service.

    BentoML 1.4.40 starts each worker's uvicorn with ``lifespan="auto"``. In
    that mode an exception raised before the application handles the
    lifespan (for example while Starlette builds the middleware stack) is
    logged at INFO as "lifespan protocol appears unsupported", and the worker
    serves requests that all fail with "service isn't instantiated yet".
    With ``"on"`` uvicorn logs the error and the worker exits, so BentoML's
    process manager starts it again.
    """
    import uvicorn

    if getattr(uvicorn.Config, "lifespan_required", False):
        return

    class LifespanRequiredConfig(uvicorn.Config):
        lifespan_required = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("lifespan", "on")
            super().__init__(*args, **kwargs)

    # NOTE: the worker module of BentoML 1.4.40 reads uvicorn.Config after it
    # imports this service; tests/serving/test_service_settings.py checks it.
    uvicorn.Config = LifespanRequiredConfig


_exit_worker_on_failed_start()


SCORE_REQUEST_KEYS = ("records", "as_of", "include_reasons")
"""The keys of a ``POST /v1/score`` body."""

_PARSEABLE_OBJECT_EXPECTED = (
    'valid JSON: an object such as {"records": [...]}, with nothing after it, '
    "nested less than about 200 levels deep"
)


_RECORDS_EXPECTED = (
    "a non-empty array of records, each an object keyed by the model's feature "
    'names (the "features" of GET /v1/model)'
)
"""Expected content of ``records``, named when a body lacks it or is empty."""

_NONEMPTY_OBJECT_EXPECTED = (
    'a JSON object such as {"records": [...]}, where "records" is ' + _RECORDS_EXPECTED
)


def _unparseable_body_problem(body: bytes) -> RecordProblem:
    """Return why a body that starts as a JSON object did not parse.

    Besides broken JSON and nesting deeper than pydantic_core 2.50 reads
    (about 200 levels), the causes are bytes that are not UTF-8 and integers
    longer than Python reads from text (``sys.get_int_max_str_digits()``,
    4300 digits by default). An empty body, or one of whitespace only, gets
    a problem that says so.
    """
    if not body.strip(b" \t\n\r"):
        return RecordProblem(
            None,
            "body",
            None,
            _NONEMPTY_OBJECT_EXPECTED,
            body_fault="is empty",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordProblem(
            None,
            "body",
            None,
            "JSON text encoded as UTF-8",
            body_fault=(
                f"is not UTF-8 text: the byte 0x{body[exc.start]:02x} at offset "
                f"{exc.start} does not start a valid UTF-8 character"
            ),
        )
    digits = _longest_unreadable_integer(text)
    if digits:
        return RecordProblem(
            None,
            "body",
            None,
            f"integers of at most {sys.get_int_max_str_digits()} digits, and for "
            "a numeric feature a finite number within its range",
            body_fault=f"contains an integer of {digits} digits, too long to read",
        )
    return RecordProblem(None, "body", None, _PARSEABLE_OBJECT_EXPECTED)


def _longest_unreadable_integer(text: str) -> int:
    """Return the digit count of the longest integer too long to read, else 0.

    Returns 0 as well when ``text`` is not valid JSON for another reason.
    """
    limit = sys.get_int_max_str_digits()
    longest = 0

    def read_integer(token: str) -> int:
        nonlocal longest
        digits = len(token.lstrip("-"))
        if limit and digits > limit:
            longest = max(longest, digits)
            return 0
        return int(token)

    try:
        json.loads(text, parse_int=read_integer)
    except (ValueError, RecursionError):
        return 0
    return longest


@dataclass(frozen=True)
class _ScoreRequest:
    """A scoring request's arguments, with its records validated if they are plain.

    ``batch`` is set when :func:`~serving.request_body.decode_plain_request`
    validated the records while decoding, and ``records`` is then None.
    Otherwise ``records`` is the decoded ``records`` value, for
    :func:`~serving.scoring.score_records` to check.
    """

    loaded: LoadedModel | None
    batch: ValidatedBatch | None
    records: Any
    as_of: Any
    include_reasons: Any
    key_problems: list[RecordProblem] = field(default_factory=list)
    """Problems of the body's top-level keys: unknown keys and a missing ``records``."""
    parsed: bool = True
    """False when the body could not be parsed, so no records can be checked."""
    has_records: bool = True
    """False when the parsed body has no ``records`` key, so no records can be checked."""

    @property
    def count(self) -> int:
        """The number of records, or 0 when ``records`` is not an array."""
        if self.batch is not None:
            return len(self.batch.matrix)
        if isinstance(self.records, (list, tuple)):
            return len(self.records)
        return 0


def score_arguments(body: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Return ``records``, ``as_of`` and ``include_reasons`` of a parsed body.

    Absent keys get the defaults of :meth:`ScoringService.score`, as BentoML
    gives them.
    """
    return (
        body.get("records"),
        body.get("as_of"),
        body.get("include_reasons", True),
    )


def unknown_key_problems(body: dict[str, Any]) -> list[RecordProblem]:
    """Return a problem for each top-level key of ``body`` that no option reads.

    A misspelled option such as ``include_reason`` would otherwise be ignored
    silently and its default used.
    """
    expected = "only the fields " + ", ".join(SCORE_REQUEST_KEYS)
    return [
        RecordProblem(None, str(key), body[key], expected, "unknown")
        for key in body
        if key not in SCORE_REQUEST_KEYS
    ]


def _raise_with_record_problems(
    problems: list[RecordProblem], request: _ScoreRequest, loaded: Any
) -> None:
    """Raise :class:`RecordValidationError` for ``problems`` and any in the records."""
    found = list(problems)
    if request.batch is None and request.parsed and request.has_records:
        try:
            validate_records(request.records, loaded.spec)
        except RecordValidationError as exc:
            found.extend(exc.problems)
    raise RecordValidationError(found, loaded.spec.features)


def _parse_options(
    as_of: Any, include_reasons: Any
) -> tuple[str | None, list[RecordProblem]]:
    """Return ``as_of`` as an ISO date and the problems of the request's options."""
    problems = []
    as_of_text, problem = _parse_as_of(as_of)
    if problem is not None:
        problems.append(problem)
    if not isinstance(include_reasons, bool):
        problems.append(
            RecordProblem(None, "include_reasons", include_reasons, "true or false")
        )
    return as_of_text, problems


def _parse_as_of(value: Any) -> tuple[str | None, RecordProblem | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat(), None
        except ValueError:
            pass
    return None, RecordProblem(None, "as_of", value, "a date as YYYY-MM-DD, or null")
