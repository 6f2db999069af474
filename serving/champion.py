"""Keep the champion version of a registered model loaded, following alias moves.

A background thread queries the registry every ``AJOISSA_RELOAD_SECONDS`` seconds
(default ``DEFAULT_RELOAD_SECONDS``) which version carries the ``champion``
alias. When it changes, the new version is downloaded, verified and loaded
beside the old one, and then a single attribute assignment swaps it in.
Requests read :attr:`ChampionHolder.loaded` once and score with that object, so
a request that started before the swap finishes with the old model and no
request fails during a switch. A version that fails to load or fails its
integrity check is rejected and the previous model keeps serving. It is tried
again after ``REJECTED_RETRY_INTERVALS`` reload intervals.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time

import prometheus_client

from models.store import (
    LoadedModel,
    ModelIntegrityError,
    champion_version,
    load_registered,
)

logger = logging.getLogger(__name__)

RELOAD_SECONDS_ENV = "AJOISSA_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 30.0


def reload_seconds() -> float:
    """Return ``AJOISSA_RELOAD_SECONDS`` or ``DEFAULT_RELOAD_SECONDS``.

    Raises
    ------
    ValueError
        If the setting is not a positive number of seconds.
    """
    raw = os.environ.get(RELOAD_SECONDS_ENV)
    if raw is None:
        return DEFAULT_RELOAD_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"invalid {RELOAD_SECONDS_ENV}={raw!r}: expected a positive number of "
            "seconds"
        )
    return seconds


REJECTED_RETRY_INTERVALS = 10
"""A rejected version is loaded again after this many reload intervals (5
minutes at the default interval), so a version that failed because its files
or the registry were unavailable for a while is served once they are back."""


MODEL_LOADED = prometheus_client.Gauge(
    "ajoissa_model_loaded",
    "1 for the model version that a worker process serves, 0 for one it served "
    "before; no series while a worker has no verified model.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_FAILURES = prometheus_client.Counter(
    "ajoissa_model_load_failures",
    "Failed attempts to find or load the champion model, counted per worker "
    "process: a missing champion alias, a failed integrity check or another "
    "load error.",
    ["model"],
)


_URL_USER_INFO = re.compile(r"(?<=://)[^/\s@]+@")
_SECRET_QUERY_VALUE = re.compile(
    r"(?i)([?&][^=&\s]*(?:password|token|secret|signature|credential|key)[^=&\s]*=)"
    r"[^&\s]+"
)


def redact_credentials(text: str) -> str:
    """Replace the user info of URLs and secret-looking query values with ``***``.

    A load error can quote the tracking URI or an artifact URL, and the error
    goes to the log, ``GET /v1/model`` and the 503 of ``POST /v1/score``.
    """
    text = _URL_USER_INFO.sub("***@", text)
    return _SECRET_QUERY_VALUE.sub(r"\1***", text)


class ChampionHolder:
    """The loaded champion of model ``name``, refreshed by :meth:`refresh`."""

    def __init__(self, name: str, interval_seconds: float) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self.loaded: LoadedModel | None = None
        self.loaded_at: dt.datetime | None = None
        self.last_error: str | None = None
        """The error of the last failed attempt to find or load the champion,
        with credentials in URLs removed; None after a successful check."""
        self.registry_version: str | None = None
        """The version that carried the champion alias at the last registry
        check; None when the alias was missing or the registry failed."""
        self._rejected_version: str | None = None
        self._rejected_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def retry_seconds(self) -> float:
        """Seconds after which a rejected version is loaded again."""
        return REJECTED_RETRY_INTERVALS * self.interval_seconds

    def refresh(self) -> bool:
        """Load the champion if it is not the loaded version; return whether it changed.

        A ``LookupError`` from the registry and any error while loading are logged
        and kept in ``last_error`` instead of raised, so the old model keeps serving.
        """
        with self._lock:
            try:
                version = champion_version(self.name)
            except LookupError as exc:
                MODEL_LOAD_FAILURES.labels(self.name).inc()
                self.registry_version = None
                error = redact_credentials(str(exc))
                if self.last_error != error:
                    logger.error("failed to load model %s: %s", self.name, error)
                self.last_error = error
                return False
            self.registry_version = version
            current = self.loaded.version if self.loaded else None
            if version == current:
                # The alias points at the served version again, for example
                # after an operator moved it back from a rejected one.
                self.last_error = None
                self._rejected_version = None
                return False
            if (
                version == self._rejected_version
                and time.monotonic() - self._rejected_at < self.retry_seconds
            ):
                return False
            try:
                loaded = load_registered(self.name)
            except (ModelIntegrityError, LookupError) as exc:
                self._reject(version, redact_credentials(str(exc)))
                return False
            except Exception as exc:  # noqa: BLE001 - any load failure keeps the old model
                error = redact_credentials(f"{type(exc).__name__}: {exc}")
                self._reject(version, error)
                return False
            if current is not None:
                MODEL_LOADED.labels(self.name, current).set(0)
            MODEL_LOADED.labels(self.name, loaded.version).set(1)
            self.loaded = loaded
            self.loaded_at = dt.datetime.now(dt.UTC)
            self.last_error = None
            self._rejected_version = None
        logger.info(
            "model loaded (name %s, version %s); previous version %s",
            loaded.name,
            loaded.version,
            current,
        )
        return True

    def _reject(self, version: str, error: str) -> None:
        MODEL_LOAD_FAILURES.labels(self.name).inc()
        repeated = version == self._rejected_version and error == self.last_error
        self._rejected_version = version
        self._rejected_at = time.monotonic()
        self.last_error = error
        if self.loaded is None:
            outcome = "No model is served."
        else:
            outcome = f"Still serving version {self.loaded.version}."
        # A retry that fails the same way is logged once, not every few minutes.
        logger.log(
            logging.INFO if repeated else logging.ERROR,
            "rejected model %s version %s: %s. %s",
            self.name,
            version,
            error,
            outcome,
        )

    @property
    def registry_version_rejected(self) -> bool:
        """Whether the registry's champion failed to load and is not served."""
        served = self.loaded.version if self.loaded else None
        return (
            self.registry_version is not None
            and self.registry_version == self._rejected_version
            and self.registry_version != served
        )

    def start(self) -> None:
        """Start the thread that calls :meth:`refresh` every interval."""
        self._thread = threading.Thread(
            target=self._watch, name="champion-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresh thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_seconds + 5)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.refresh()
