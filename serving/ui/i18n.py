"""Message catalogues of the review screens: Finnish, Swedish and English.

Each language has one JSON file in ``messages/`` that maps a message key to a
text with ``str.format`` fields. Every catalogue has the same keys; a test
checks it. A message that counts things has a ``key_one`` variant for a count
of 1, which :meth:`Translator.plural` picks. A test lists the few messages
that read right for 1 without one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)

LANGUAGES = ("fi", "sv", "en")
DEFAULT_LANGUAGE = "fi"
LOCAL_TIME_ZONE = ZoneInfo("Europe/Helsinki")
"""Time zone of the times shown to staff: that of the schools."""
_MESSAGES = Path(__file__).parent / "messages"


@cache
def catalogue(language: str) -> dict[str, str]:
    """Return the messages of ``language``, one of ``LANGUAGES``."""
    if language not in LANGUAGES:
        raise ValueError(
            f"invalid language {language!r}: expected one of {', '.join(LANGUAGES)}"
        )
    path = _MESSAGES / f"{language}.json"
    return json.loads(path.read_text(encoding="utf-8"))


class Translator:
    """Format messages of one language; also callable as ``t(key, **fields)``."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.messages = catalogue(language)

    def __call__(self, key: str, **fields: Any) -> str:
        text = self.messages.get(key)
        if text is None:
            # A missing key shows as itself, which a reader can report.
            logger.warning("message %s is missing in %s", key, self.language)
            return key
        return text.format(**fields) if fields else text

    def plural(self, key: str, number: float | str, /, **fields: Any) -> str:
        """Format ``key``, or ``key_one`` when ``number`` is exactly 1.

        ``number`` is the number as shown, so a change shown as "1" takes the
        singular however it was rounded. All three languages use the singular
        for 1 only.
        """
        singular = number == 1 or number == "1"
        chosen = f"{key}_one" if singular and self.has(f"{key}_one") else key
        return self(chosen, **fields)

    def has(self, key: str) -> bool:
        return key in self.messages

    def percent(self, share: float, digits: int = 0) -> str:
        """Format a share from 0 to 1 as a percentage in this language."""
        value = f"{share * 100:.{digits}f}"
        if self.language != "en":
            value = value.replace(".", ",")
        return self("fmt.percent", value=value)

    def date(self, day: dt.date) -> str:
        """Format a date as this language's readers write it.

        Finnish, and Swedish as written in Finland, use day.month.year with
        no leading zeros (5.12.2026); English uses ISO 8601 (2026-12-05).
        """
        if self.language == "en":
            return day.isoformat()
        return f"{day.day}.{day.month}.{day.year}"

    def time(self, moment: dt.datetime) -> str:
        """Format a date and time to the minute in Finnish time, as in :meth:`date`.

        A time without a zone is taken as UTC, as the stores write it.
        """
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        local = moment.astimezone(LOCAL_TIME_ZONE)
        return f"{self.date(local.date())} {local:%H:%M}"

    def number(self, value: float, digits: int = 0) -> str:
        """Format a number with the language's decimal separator."""
        text = f"{value:.{digits}f}"
        return text if self.language == "en" else text.replace(".", ",")


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """Return the cookie's language, else the first supported one the browser
    accepts, else ``DEFAULT_LANGUAGE``."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE
