"""A warning repeated by every rejected request, logged at most once a minute."""

from __future__ import annotations

import logging

import pytest

from serving.ratelimitedlog import RateLimitedWarning

LOGGER_NAME = "tests.ratelimited"


class Clock:
    """A monotonic clock that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def warning(clock) -> RateLimitedWarning:
    return RateLimitedWarning(logging.getLogger(LOGGER_NAME), 60.0, clock)


def _records(caplog, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER_NAME and record.levelno == level
    ]


def test_first_event_warns(warning, caplog):
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    warning.log("rejected scoring request: model %s is not loaded", "m")
    assert _records(caplog, logging.WARNING) == [
        "rejected scoring request: model m is not loaded"
    ]
    assert _records(caplog, logging.DEBUG) == []


def test_repeats_within_minute_debug(warning, clock, caplog):
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    for _ in range(26):
        warning.log("rejected scoring request: model %s is not loaded", "m")
        clock.now += 6 / 26
    assert len(_records(caplog, logging.WARNING)) == 1
    assert len(_records(caplog, logging.DEBUG)) == 25


def test_next_warning_counts_events(warning, clock, caplog):
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    warning.log("rejected: %s", "m")
    for _ in range(9):
        clock.now += 5.0
        warning.log("rejected: %s", "m")
    clock.now += 20.0
    warning.log("rejected: %s", "m")
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 2
    # Nine events at DEBUG and this one, 65 s after the first warning.
    assert warnings[1] == "rejected: m (10 such events in the last 65 s)"


def test_interval_restarts_after_warning(warning, clock, caplog):
    caplog.set_level(logging.DEBUG, LOGGER_NAME)
    warning.log("rejected")
    clock.now += 60.0
    warning.log("rejected")
    clock.now += 59.0
    warning.log("rejected")
    assert len(_records(caplog, logging.WARNING)) == 2
    assert len(_records(caplog, logging.DEBUG)) == 1
