"""Parse grades on the Finnish general-education scale.

The scale runs from 4 to 10. Teachers append ``+`` (a quarter up), ``-`` (a
quarter down) or ``½`` (a half up) to a number: ``8+`` is 8.25, ``8½`` is 8.5 and
``9-`` is 8.75. 4 is the failing grade, so 4, 4+ and 4½ fail and 5- (4.75)
is the lowest pass. ``S`` (hyväksytty) is a pass without a number, ``H`` (hylätty) a
fail, and ``O`` (osallistunut) means the pupil took part. The letters and numbers
follow the Koski code list ``arviointiasteikkoyleissivistava``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMERIC = re.compile(r"^(10|[4-9])\s*([+\-½]|1/2)?$")
_SUFFIX_STEP = {None: 0.0, "+": 0.25, "-": -0.25, "½": 0.5, "1/2": 0.5}

LETTER_GRADES = {"S": True, "H": False, "O": True}
"""Letter grades and whether each one passes."""

PASS_MARK = 4.75
"""Lowest passing numeric grade, 5- (a weak pass): 4, 4+ and 4½ fail."""


@dataclass(frozen=True)
class Grade:
    """One parsed grade; ``value`` is missing for letter grades."""

    token: str
    value: float | None
    passed: bool


def parse_grade(token: str) -> Grade | None:
    """Parse ``token``; return None when it is not a grade on the scale.

    Surrounding spaces are ignored and letters may be lower case. ``10+``,
    ``10½`` and ``4-`` fall outside the scale and return None.
    """
    text = token.strip()
    letter = text.upper()
    if letter in LETTER_GRADES:
        return Grade(token, None, LETTER_GRADES[letter])
    match = _NUMERIC.match(text)
    if match is None:
        return None
    base = int(match.group(1))
    suffix = match.group(2)
    if (base == 10 and suffix in ("+", "½", "1/2")) or (base == 4 and suffix == "-"):
        return None
    value = base + _SUFFIX_STEP[suffix]
    return Grade(token, value, value >= PASS_MARK)


GRADE_EXPECTED = "a grade 4 to 10 with an optional +, - or ½ suffix, or S, H or O"


def off_scale_detail(token: str) -> str:
    """Return why ``token`` is not a grade when it has the form of one, else "".

    ``4-``, ``10+`` and ``10½`` look like a number with a suffix, but the
    suffix takes them past an end of the scale.
    """
    text = token.strip()
    match = _NUMERIC.match(text)
    if match is None:
        return ""
    if match.group(1) == "10":
        return f"{text} lies above 10, the highest grade on the scale"
    return f"{text} lies below 4, the lowest grade on the scale"
