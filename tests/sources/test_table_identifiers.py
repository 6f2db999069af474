"""Direct-identifier detection, on synthetic values only."""

import pandas as pd
import pytest

from sources.identifiers import identifier_reason, is_personal_identity_code


@pytest.mark.parametrize(
    "code",
    [
        "131052-308T",  # The check character of 131052308 is T (131052308 % 31 = 26).
        "010105A900S",
        "241299U9124",
        "150312+1235",
    ],
)
def test_valid_identity_codes(code):
    assert is_personal_identity_code(code)


@pytest.mark.parametrize(
    "code",
    [
        "131052-308U",  # Wrong check character.
        "131052G308T",  # G is not a century sign.
        "321052-308T",  # Day 32.
        "131352-308T",  # Month 13.
        "131052-30T",  # Too short.
        "pupil-1234",
    ],
)
def test_invalid_identity_codes(code):
    assert not is_personal_identity_code(code)


def test_identity_code_column_flagged():
    values = pd.Series(["131052-308T", "010105A900S", "241299U9124"])
    assert "identity codes" in identifier_reason("code", values)


def test_email_column_flagged():
    values = pd.Series([f"pupil{i}@school.example" for i in range(5)])
    assert "e-mail" in identifier_reason("contact", values)


def test_name_column_flagged():
    first = ["Aino", "Eetu", "Helmi", "Onni", "Sofia", "Leo", "Aada", "Elias"]
    last = ["Virtanen", "Korhonen", "Mäkinen"]
    values = pd.Series([f"{f} {s}" for f in first for s in last])
    assert "person names" in identifier_reason("pupil", values)


@pytest.mark.parametrize("header", ["Name", "sukunimi", "E-mail", "hetu", "Sähköposti"])
def test_identifier_headers_flagged(header):
    assert identifier_reason(header, pd.Series(["x", "y"])) is not None


def test_repeated_school_names_pass():
    values = pd.Series(["Kallion Lukio", "Ressun Lukio"] * 20)
    assert identifier_reason("school", values) is None


@pytest.mark.parametrize(
    ("header", "values"),
    [
        ("address", ["U", "R", "U"]),
        ("school_name", ["GP", "MS"]),
        ("absences", ["1", "2", "30"]),
    ],
)
def test_ordinary_columns_pass(header, values):
    assert identifier_reason(header, pd.Series(values)) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Sähköposti", "sahkoposti"),
        ("Äidinkieli / Modersmål", "aidinkieli_modersmal"),
        ("Poissaolot (h)", "poissaolot_h"),
    ],
)
def test_headers_keep_finnish_letters(header, name):
    from sources.table_mapping import snake_case

    assert snake_case(header) == name
