import re
from pathlib import Path

import pytest

from sources.errors import InputDataError
from sources.school.marks import read_mark_codes


def _problems(path: Path) -> list[str]:
    with pytest.raises(InputDataError) as raised:
        read_mark_codes(path)
    return [str(p) for p in raised.value.problems]


def test_latin1_table_reported(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_bytes(b"code;mark\r\nP;present\r\nPoissa\xe4;excused\r\n")
    problems = _problems(path)
    assert problems == [
        f"{path}: table 'mark_codes', row 3: the file is not UTF-8: column 'code', "
        "byte 0xe4 (invalid continuation byte); save it as CSV UTF-8"
    ]


def test_latin1_after_comment_names_column(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_bytes(b"# Local codes\ncode;mark\nP;present\nX;poissa\xe4\n")
    problems = _problems(path)
    assert len(problems) == 1
    assert "row 4: the file is not UTF-8: column 'mark', byte 0xe4" in problems[0]


@pytest.mark.parametrize("separator", [",", "\t"], ids=["comma", "tab"])
def test_other_separator_reported(tmp_path, separator):
    path = tmp_path / "mark_codes.csv"
    path.write_text(f"code{separator}mark\nP{separator}present\n", encoding="utf-8")
    problems = _problems(path)
    assert len(problems) == 1
    assert "'mark_codes', row 1: the header line looks separated by" in problems[0]
    assert "with ';' as the separator" in problems[0]
    assert "'code', 'mark'" in problems[0]


def test_missing_column_reported(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_text("# Local codes\ncode;kind\nP;present\n", encoding="utf-8")
    expected = (
        "table 'mark_codes', row 2: the header line lacks the column(s) 'mark'; "
        "add them"
    )
    assert _problems(path) == [f"{path}: {expected}"]


def test_rows_numbered_as_lines(tmp_path):
    # Comment and blank lines are skipped but still count as lines.
    path = tmp_path / "mark_codes.csv"
    path.write_text(
        "# Local codes\ncode;mark\nP;present\n\nX;bogus\nP;late\n", encoding="utf-8"
    )
    problems = _problems(path)
    assert len(problems) == 2
    assert re.search(r"column 'mark', row 5: value 'bogus'", problems[0])
    assert re.search(r"column 'code', row 6: value 'P'", problems[1])


def test_separator_only_rows_skipped(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_text("code;mark\nP;present\n;\n ; \n", encoding="utf-8")
    assert read_mark_codes(path) == {"P": "present"}


def test_empty_code_reported(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_text("code;mark\nP;present\n;excused\n", encoding="utf-8")
    problems = _problems(path)
    assert problems == [
        f"{path}: table 'mark_codes', column 'code', row 3: value (empty) is "
        "invalid; expected a non-empty code. Write the platform's code for the "
        "mark 'excused' before the ';', or remove the line"
    ]


def test_repeated_code_names_first_row(tmp_path):
    # The first P is on line 3, after a comment line.
    path = tmp_path / "mark_codes.csv"
    path.write_text(
        "# Local codes\ncode;mark\nP;present\nX;late\n P ;present\n",
        encoding="utf-8",
    )
    problems = _problems(path)
    assert problems == [
        f"{path}: table 'mark_codes', column 'code', row 5: value 'P' is invalid; "
        "expected each code listed once. Row 3 has the same code: remove one of "
        "the two rows"
    ]


def test_empty_mark_shown_as_empty(tmp_path):
    path = tmp_path / "mark_codes.csv"
    path.write_text("code;mark\nP;present\nX;\n", encoding="utf-8")
    problems = _problems(path)
    assert len(problems) == 1
    assert "column 'mark', row 3: value (empty) is invalid" in problems[0]
