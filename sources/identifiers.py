"""Detect columns that look like direct identifiers of a person.

A mapped table must not carry names, e-mail addresses or Finnish personal
identity codes into features, audits or outputs. :func:`identifier_reason`
flags a column by its header or by its values; the table loader rejects a
flagged column unless the mapping excludes it.
"""

from __future__ import annotations

import re

import pandas as pd

from sources.table_mapping import snake_case

IDENTIFIER_HEADERS = frozenset(
    {
        "name",
        "names",
        "first_name",
        "firstname",
        "given_name",
        "last_name",
        "lastname",
        "surname",
        "family_name",
        "full_name",
        "fullname",
        "student_name",
        "pupil_name",
        "nimi",
        "etunimi",
        "etunimet",
        "sukunimi",
        "oppilaan_nimi",
        "email",
        "e_mail",
        "email_address",
        "sahkoposti",
        "s_hk_posti",
        "hetu",
        "henkilotunnus",
        "henkil_tunnus",
        "ssn",
        "social_security_number",
        "personal_identity_code",
        "personal_identity_number",
    }
)
"""Headers (in snake case, so ``sähköposti`` is ``s_hk_posti``) that name a
direct identifier whatever the values are."""

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")

PERSONAL_IDENTITY_CODE = re.compile(
    r"^(?P<day>\d{2})(?P<month>\d{2})(?P<year>\d{2})(?P<sign>[-+A-FU-Y])"
    r"(?P<number>\d{3})(?P<check>[0-9A-Y])$"
)
"""Finnish personal identity code: ``ddmmyy``, a century sign, a 3-digit
individual number and a check character. Century signs since 2023: ``+`` for
the 1800s, ``-`` and ``U`` to ``Y`` for the 1900s, ``A`` to ``F`` for the 2000s."""

CHECK_CHARACTERS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
"""Check character of a personal identity code: the nine digits ``ddmmyynnn``
read as one integer, modulo 31, index into this string."""

PERSON_NAME = re.compile(r"^[A-ZÅÄÖÜÉ][a-zåäöüé'’-]+(?:\s+[A-ZÅÄÖÜÉ][a-zåäöüé'’-]+)+$")
"""Two or more capitalised words, as in ``Aino Virtanen``."""

VALUE_SHARE = 0.5
"""Share of a column's non-missing values that must look like e-mail addresses or
identity codes for the column to be flagged."""

NAME_SHARE = 0.8
NAME_UNIQUE_SHARE = 0.9
NAME_MIN_DISTINCT = 10
"""A column is flagged as person names when at least ``NAME_SHARE`` of its values
look like full names and at least ``NAME_UNIQUE_SHARE`` of them are distinct, with
at least ``NAME_MIN_DISTINCT`` distinct values. School or town names repeat, so
they pass."""


def is_personal_identity_code(text: str) -> bool:
    """Return whether ``text`` is a Finnish personal identity code with a valid check."""
    match = PERSONAL_IDENTITY_CODE.match(text.strip().upper())
    if match is None:
        return False
    day, month = int(match["day"]), int(match["month"])
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return False
    digits = int(match["day"] + match["month"] + match["year"] + match["number"])
    return CHECK_CHARACTERS[digits % 31] == match["check"]


def identifier_reason(header: str, values: pd.Series) -> str | None:
    """Return why the column looks like a direct identifier, or None.

    Parameters
    ----------
    header
        The column name as in the file.
    values
        The column's non-missing values as text.
    """
    if snake_case(header) in IDENTIFIER_HEADERS:
        return f"its header {header!r} names a direct identifier"
    texts = values.astype(str).str.strip()
    texts = texts[texts != ""]
    if texts.empty:
        return None
    if texts.str.match(EMAIL).mean() >= VALUE_SHARE:
        return "its values look like e-mail addresses"
    if texts.map(is_personal_identity_code).mean() >= VALUE_SHARE:
        return "its values look like Finnish personal identity codes"
    distinct = texts.nunique()
    looks_like_names = texts.str.match(PERSON_NAME).mean() >= NAME_SHARE
    if (
        looks_like_names
        and distinct >= NAME_MIN_DISTINCT
        and distinct / len(texts) >= NAME_UNIQUE_SHARE
    ):
        return "its values look like person names"
    return None
