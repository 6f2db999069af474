"""Rate-limited logging of a warning that every request can repeat."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

DEFAULT_INTERVAL_SECONDS = 60.0


class RateLimitedWarning:
    """Log the first event at WARNING, then at most one WARNING per interval.

    Each WARNING after the first ends with the number of events since the
    previous WARNING, this one included. Events in between are logged at DEBUG.
    The count is kept per instance, so each worker process logs on its own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_seconds = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._warned_at: float | None = None
        self._count = 0

    def log(self, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING or DEBUG, as the interval allows."""
        with self._lock:
            now = self._clock()
            self._count += 1
            previous = self._warned_at
            if previous is not None and now - previous < self._interval_seconds:
                self._logger.debug(message, *args)
                return
            count = self._count
            self._warned_at = now
            self._count = 0
        if previous is None:
            self._logger.warning(message, *args)
            return
        self._logger.warning(
            f"{message} ({count} such events in the last {now - previous:.0f} s)",
            *args,
        )
