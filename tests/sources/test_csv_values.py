"""Values that parse as numbers but cannot train a model, in every CSV reader."""

import re

import numpy as np
import pandas as pd
import pytest

from sources.csvread import read_typed_csv
from sources.errors import InputDataError


@pytest.mark.parametrize("value", ["inf", "-Infinity", "1e400"])
def test_typed_csv_rejects_infinite(tmp_path, value):
    path = tmp_path / "scores.csv"
    path.write_text(f"id,score\na,1.5\nb,{value}\n", encoding="utf-8")
    expected = (
        f"{path}: table 'scores', column 'score', row 3: value '{value}' is "
        "invalid; expected a finite number"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        read_typed_csv(path, "scores", {"id": "str", "score": "float"})


def test_typed_csv_int_infinite(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("id,day\na,1\nb,inf\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="row 3: value 'inf'"):
        read_typed_csv(path, "scores", {"id": "str", "day": "int"})


def test_typed_csv_non_utf8_line(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_bytes("id,town\na,Espoo\nb,Jyväskylä\n".encode("latin-1"))
    expected = (
        "table 'scores', row 3: the file is not valid utf-8 text: column 'town', "
        "byte 0xe4 (invalid continuation byte); save it as CSV UTF-8"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        read_typed_csv(path, "scores", {"id": "str", "town": "str"})


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (pd.Timestamp("2020-01-01"), "value 2020-01-01 is invalid"),
        (pd.Timestamp("2020-01-01 08:15"), "value 2020-01-01 08:15:00 is invalid"),
        (None, "value (empty) is invalid"),
        (float("nan"), "value (empty) is invalid"),
        (True, "value true is invalid"),
        (np.int64(7), "value 7 is invalid"),
        ("8++", "value '8++' is invalid"),
    ],
)
def test_problem_shows_value_as_written(value, shown):
    from sources.errors import Problem

    problem = Problem("pupils.csv", "pupils", "birth", 3, value, "a date")
    assert shown in str(problem)
