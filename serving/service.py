"""The BentoML service that scores records with the registered champion model.

Start it with :func:`serving.server.run_server` (``ajoissa serve``) or with
``bentoml serve serving.service:ScoringService --host 127.0.0.1 --port 3000``.
Always pass ``--host``, because BentoML 1.4 binds to 0.0.0.0 otherwise.

Configuration comes from the environment of the server process:

``AJOISSA_MODEL_NAME``
    Registered model to serve (default ``models.store.DEFAULT_MODEL_NAME``). The
    version that carries the ``champion`` alias is loaded.
``AJOISSA_HOME`` / ``MLFLOW_TRACKING_URI``
    Where the registry is, as described in :mod:`models.store`.

Endpoints
---------
``POST /v1/score``
    Body ``{"records": [...]}``. Returns 200 with ``{"scores": [...],
    "warnings": [...], "model": {"name", "version"}}`` (see
    :mod:`serving.scoring`). Invalid records return 400 and a batch above
    ``MAX_BATCH_RECORDS`` returns 413, both with a JSON body that has an
    ``error`` message. Returns 503 while no model is loaded.
``GET /healthz`` and ``GET /livez``
    Liveness, provided by BentoML: 200 while the worker is running.
``GET /readyz``
    Readiness, provided by BentoML. It calls ``__is_ready__`` below, so it
    returns 200 only when a model is loaded and 503 otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from pydantic import Field, ValidationError

from models.store import DEFAULT_MODEL_NAME, LoadedModel, load_registered, tracking_uri
from serving.scoring import (
    MAX_BATCH_RECORDS,
    BatchTooLargeError,
    RecordValidationError,
    score_records,
)

logger = logging.getLogger(__name__)

MODEL_NAME_ENV = "AJOISSA_MODEL_NAME"
RELOAD_INTERVAL_SECONDS = 30.0
"""Minimum time between retries to load a model that was not in the registry."""

MAX_PROBLEMS_IN_RESPONSE = 100
"""Maximum problems listed in a 400 response body. ``problem_count`` is the total."""

_APP_LOGGERS = ("serving", "models")

# NOTE: a private BentoML 1.4 logger name. If an upgrade renames it, the filter
# below stops applying and request bodies reach the ERROR log again.
_BENTOML_REQUEST_ERROR_LOGGER = "bentoml._internal.server.http_app"
"""Logger of BentoML's ``log_exception``, which logs failed request parsing."""


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
    error count remains.
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
        return True


def _install_log_filters() -> None:
    bentoml_logger = logging.getLogger(_BENTOML_REQUEST_ERROR_LOGGER)
    if not any(isinstance(f, _DropRequestBodyFilter) for f in bentoml_logger.filters):
        bentoml_logger.addFilter(_DropRequestBodyFilter())


def _describe_store() -> str:
    # The tracking URI of a remote MLflow server may contain credentials, so
    # only the embedded SQLite location is written to the log.
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return uri
    return "the MLflow server in MLFLOW_TRACKING_URI"


@bentoml.service(name="ajoissa")
class ScoringService:
    """Dropout-risk scoring with the champion version of one registered model."""

    def __init__(self) -> None:
        _enable_app_logging()
        _install_log_filters()
        self.model_name = os.environ.get(MODEL_NAME_ENV) or DEFAULT_MODEL_NAME
        self.loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._last_attempt = 0.0
        logger.info(
            "scoring service starting: model %s from %s",
            self.model_name,
            _describe_store(),
        )
        self._try_load()

    def _try_load(self) -> bool:
        with self._load_lock:
            if self.loaded is not None:
                return True
            self._last_attempt = time.monotonic()
            try:
                loaded = load_registered(self.model_name)
            except LookupError as exc:
                logger.error(
                    "failed to load model %s: %s. /readyz and /v1/score return 503 "
                    "until a retry succeeds. Requests retry at most every %.0f s.",
                    self.model_name,
                    exc,
                    RELOAD_INTERVAL_SECONDS,
                )
                return False
            self.loaded = loaded
        logger.info("model loaded (name %s, version %s)", loaded.name, loaded.version)
        return True

    def _load_if_due(self) -> bool:
        if self.loaded is not None:
            return True
        if time.monotonic() - self._last_attempt < RELOAD_INTERVAL_SECONDS:
            return False
        return self._try_load()

    def __is_ready__(self) -> bool:
        """Return whether a model is loaded, retrying a failed load now and then.

        BentoML calls this for ``GET /readyz``, which returns 503 when it is false.
        """
        return self._load_if_due()

    @bentoml.on_shutdown
    def log_stop(self) -> None:
        """Log that the worker is stopping."""
        logger.info("scoring service stopping")

    @bentoml.api(route="/v1/score")
    def score(
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
    ) -> dict[str, Any]:
        """Score records for dropout risk with the champion model.

        ``records`` is typed ``Any`` so that :mod:`serving.scoring` checks it and
        reports every problem by record index and field name. Error responses
        get their status code through ``ctx`` and an ``error`` message.

        NOTE: BentoML's input model ignores body keys other than ``records``, so
        a misspelled top-level key is not reported. The request is rejected
        anyway because ``records`` is then missing.
        """
        started = time.perf_counter()
        self._load_if_due()
        loaded = self.loaded
        if loaded is None:
            logger.warning(
                "rejected scoring request: model %s is not loaded", self.model_name
            )
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            return {
                "error": f"model {self.model_name!r} is not loaded because the "
                "registry has no champion version of it. Register one and retry "
                "when /readyz returns 200."
            }
        count = len(records) if isinstance(records, (list, tuple)) else 0
        # Only counts and durations are logged at INFO because record values
        # are pupil-level data.
        try:
            result = score_records(records, loaded)
        except BatchTooLargeError as exc:
            logger.info(
                "rejected scoring request: %d records exceed the limit of %d",
                exc.count,
                exc.limit,
            )
            ctx.response.status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            return {"error": str(exc), "max_records": exc.limit}
        except RecordValidationError as exc:
            logger.info(
                "rejected scoring request: %d problem(s), %d record(s) received",
                len(exc.problems),
                count,
            )
            # The message contains pupil-level values, so it is logged only at DEBUG.
            logger.debug("validation problems: %s", exc)
            ctx.response.status_code = HTTPStatus.BAD_REQUEST
            listed = exc.problems[:MAX_PROBLEMS_IN_RESPONSE]
            return {
                "error": str(exc),
                "problem_count": len(exc.problems),
                "problems": [problem.to_dict() for problem in listed],
            }
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "scored %d record(s) in %.1f ms with %s version %s (%d warning(s))",
            count,
            elapsed_ms,
            loaded.name,
            loaded.version,
            len(result.warnings),
        )
        return result.to_dict()
