import pytest

from sources.school.grades import parse_grade


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("8", 8.0),
        ("8+", 8.25),
        ("8½", 8.5),
        ("9-", 8.75),
        ("10", 10.0),
        ("10-", 9.75),
        ("4", 4.0),
        (" 7 ", 7.0),
        ("7 1/2", 7.5),
    ],
)
def test_numeric_value(token, value):
    assert parse_grade(token).value == value


def test_token_kept():
    assert parse_grade("8½").token == "8½"


@pytest.mark.parametrize(
    ("token", "passed"),
    [
        ("4", False),
        ("4+", False),
        ("4½", False),
        ("4 1/2", False),
        ("5-", True),
        ("5", True),
        ("S", True),
        ("H", False),
        ("O", True),
        ("h", False),
    ],
)
def test_passed(token, passed):
    assert parse_grade(token).passed is passed


def test_letter_has_no_value():
    assert parse_grade("S").value is None


@pytest.mark.parametrize(
    "token", ["3", "11", "10+", "10½", "4-", "8++", "", "A", "8.5"]
)
def test_invalid(token):
    assert parse_grade(token) is None
