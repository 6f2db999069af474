import logging
import re

import numpy as np
import pandas as pd
import pytest
from school_fixtures import EXPORT, write_export

from sources.errors import InputDataError
from sources.school.marks import DEFAULT_MARK_CODES
from sources.school.records import (
    _resolve_duplicate_marks,
    load_day,
    read_records,
    school_year,
    write_records,
)


def test_reads_every_table(export_dir):
    records = read_records(export_dir)
    assert len(records.pupils) == 2
    assert records.counts["attendance_marks"] == 5
    assert records.behaviour_notes.empty


def test_office_correction_wins(export_dir):
    marks = read_records(export_dir).attendance_marks
    p2 = marks[(marks["pupil_id"] == "p2") & (marks["lesson"] == "1")]
    assert len(p2) == 1
    assert p2["mark"].iloc[0] == "excused"


def test_duplicates_counted(export_dir):
    assert read_records(export_dir).counts["duplicate_marks_dropped"] == 1


def test_exact_duplicate_rows_dropped(tmp_path):
    grades = [*EXPORT["grades"], EXPORT["grades"][1], EXPORT["grades"][1]]
    # The same decision with the start date written another way.
    support = [*EXPORT["support_decisions"], "p2;1.10.2024;;intensified"]
    notes = ["pupil_id;date;note_type", "p1;03.09.2024;late", "p1;03.09.2024;late"]
    export = write_export(
        tmp_path / "e",
        EXPORT
        | {"grades": grades, "support_decisions": support, "behaviour_notes": notes},
    )
    records = read_records(export)
    assert len(records.grades) == len(EXPORT["grades"]) - 1
    assert len(records.support_decisions) == 1
    assert len(records.behaviour_notes) == 1
    assert records.counts["grades"] == len(grades) - 1
    assert records.counts["duplicate_grades_dropped"] == 2
    assert records.counts["duplicate_support_decisions_dropped"] == 1
    assert records.counts["duplicate_behaviour_notes_dropped"] == 1


def test_rows_differing_in_one_column_kept(tmp_path):
    grades = [*EXPORT["grades"], "p1;s1;20.12.2024;MA;8"]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    records = read_records(export)
    assert len(records.grades) == len(grades) - 1
    assert records.counts["duplicate_grades_dropped"] == 0
    assert records.counts["duplicate_behaviour_notes_dropped"] == 0


def test_utc_timestamp_dated_in_helsinki(export_dir):
    marks = read_records(export_dir).attendance_marks
    late = marks[(marks["pupil_id"] == "p1") & (marks["lesson"] == "9")]
    # 21:30 UTC on 2 September is 00:30 on 3 September in Helsinki (UTC+3).
    assert late["date"].iloc[0] == pd.Timestamp("2024-09-03")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2.9.2024 8.15", "2024-09-02 08:15:00"),
        ("02.09.2024 08.15", "2024-09-02 08:15:00"),
        ("2.9.2024 8.15.30", "2024-09-02 08:15:30"),
        ("2.9.2024 8:15", "2024-09-02 08:15:00"),
    ],
)
def test_finnish_local_time_read(tmp_path, written, expected):
    marks = [
        EXPORT["attendance_marks"][0],
        f"p1;s1;{written};1;MA;P;teacher;{written}",
    ]
    export = write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    mark = read_records(export).attendance_marks.iloc[0]
    assert mark["lesson_start"] == pd.Timestamp(expected)
    assert mark["recorded_at"] == pd.Timestamp(expected)
    assert mark["date"] == pd.Timestamp("2024-09-02")


@pytest.mark.parametrize("written", ["2.9.2024 25.15", "2.9.2024 8.5", "2.9.2024 8:5"])
def test_invalid_dotted_time_reported(tmp_path, written):
    # 8.5 could mean 08:05, 08:30 or 08:50, so minutes need two digits.
    marks = [EXPORT["attendance_marks"][0], f"p1;s1;{written};1;MA;P;teacher;"]
    export = write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    problems = _problems(export)
    assert len(problems) == 1
    assert f"column 'lesson_start', row 2: value '{written}'" in problems[0]
    assert "dd.mm.yyyy hh:mm, dd.mm.yyyy hh.mm or yyyy-mm-dd hh:mm" in problems[0]


def test_grades_parsed(export_dir):
    grades = read_records(export_dir).grades.set_index(["pupil_id", "subject"])
    assert grades.loc[("p1", "MA"), "value"] == 8.25
    assert grades.loc[("p1", "MA"), "grade"] == "8+"
    assert not grades.loc[("p2", "MA"), "passed"]


def test_school_year_boundary():
    days = pd.Series(pd.to_datetime(["2025-07-31", "2025-08-01"]))
    assert school_year(days).tolist() == [2024, 2025]


def test_all_problems_in_one_report(tmp_path):
    broken = {k: list(v) for k, v in EXPORT.items()}
    broken["pupils"][1] = "p1;2009;13;female;klingon;Helsinki"
    broken["attendance_marks"][1] = "p1;s1;31.02.2024 08:15;1;MA;ZZ;teacher;"
    broken["grades"][1] = "p1;s1;20.12.2024;MA;11"
    broken["study_rights"][2] = "r2;p9;s1;01.08.2018"
    with pytest.raises(InputDataError) as caught:
        read_records(write_export(tmp_path / "bad", broken))
    found = {(p.table, p.column, p.row, p.value) for p in caught.value.problems}
    assert ("pupils", "birth_month", 2, "13") in found
    assert ("pupils", "mother_tongue", 2, "klingon") in found
    assert ("attendance_marks", "lesson_start", 2, "31.02.2024 08:15") in found
    assert ("attendance_marks", "mark_code", 2, "ZZ") in found
    assert ("grades", "grade", 2, "11") in found
    assert ("study_rights", "pupil_id", 3, "p9") in found


def test_missing_table_reported(tmp_path):
    tables = {k: v for k, v in EXPORT.items() if k != "grades"}
    with pytest.raises(InputDataError, match="grades.csv or grades.parquet not found"):
        read_records(write_export(tmp_path / "partial", tables))


def test_unknown_code_names_table(tmp_path):
    codes = tmp_path / "codes.csv"
    codes.write_text("code;mark\nP;present\n", encoding="utf-8")
    export = write_export(tmp_path / "e", EXPORT)
    with pytest.raises(InputDataError, match="value 'LV' is invalid"):
        read_records(export, codes)


def test_unknown_code_names_export_table(tmp_path):
    marks = [*EXPORT["attendance_marks"], "p1;s1;03.09.2024 08:15;1;MA;XX;teacher;"]
    export = write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    with pytest.raises(InputDataError) as raised:
        read_records(export)
    problems = [str(p) for p in raised.value.problems]
    assert len(problems) == 1
    assert "column 'mark_code', row 7: value 'XX' is invalid" in problems[0]
    assert (
        f"add {export / 'mark_codes.csv'} with the columns code;mark" in (problems[0])
    )
    assert str(DEFAULT_MARK_CODES) not in problems[0]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_example_codes_warn_once(export_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        read_records(export_dir)
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert f"{export_dir} has no mark_codes.csv" in warnings[0]
    assert "bundled example mark codes (P, SA, LU, TE, LV, MY) apply" in warnings[0]
    assert "those codes are assumed" in warnings[0]


def test_export_codes_used_without_warning(export_dir, caplog):
    # LV maps to late here but to unexcused in the example table.
    codes = "code;mark\nP;present\nSA;excused\nLV;late\nMY;late\n"
    (export_dir / "mark_codes.csv").write_text(codes, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        marks = read_records(export_dir).attendance_marks
    assert _warnings(caplog) == []
    late = marks[(marks["pupil_id"] == "p1") & (marks["lesson"] == "9")]
    assert late["mark"].tolist() == ["late"]


def test_unknown_code_names_given_table(tmp_path):
    codes = tmp_path / "codes.csv"
    codes.write_text("code;mark\nP;present\n", encoding="utf-8")
    export = write_export(tmp_path / "e", EXPORT)
    expected = f"a code listed in the mark-code table {codes}; add the code there"
    with pytest.raises(InputDataError, match=re.escape(expected)):
        read_records(export, codes)


def test_parquet_export(tmp_path, export_dir):
    records = read_records(export_dir)
    parquet_dir = tmp_path / "pq"
    parquet_dir.mkdir()
    for name in EXPORT:
        pd.read_csv(
            export_dir / f"{name}.csv",
            sep=";",
            dtype=str,
            encoding="utf-8-sig",
            keep_default_na=False,
        ).to_parquet(parquet_dir / f"{name}.parquet")
    again = read_records(parquet_dir)
    assert again.grades["value"].tolist() == records.grades["value"].tolist()


def test_load_is_idempotent(tmp_path, export_dir):
    store = tmp_path / "store"
    write_records(read_records(export_dir), store)
    first = pd.read_parquet(store / "attendance_marks.parquet")
    write_records(read_records(export_dir), store)
    second = pd.read_parquet(store / "attendance_marks.parquet")
    pd.testing.assert_frame_equal(first, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "store"]


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_school_records_infinite(tmp_path, value):
    export = {k: list(v) for k, v in EXPORT.items()}
    export["pupils"][1] = f"p1;{value};3;female;finnish;Helsinki"
    with pytest.raises(
        InputDataError, match=rf"column 'birth_year', row 2: value '{value}'"
    ):
        read_records(write_export(tmp_path / "export", export))


def test_non_utf8_line_named(tmp_path):
    export_dir = write_export(tmp_path / "export", EXPORT)
    lines = EXPORT["pupils"][:2] + ["p2;2009;11;male;swedish;Jyväskylä"]
    (export_dir / "pupils.csv").write_bytes(
        ("\r\n".join(lines) + "\r\n").encode("latin-1")
    )
    expected = (
        "table 'pupils', row 3: the file is not UTF-8: column 'home_municipality', "
        "byte 0xe4 (invalid continuation byte); save it as CSV UTF-8"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        read_records(export_dir)


def _problems(folder) -> list[str]:
    with pytest.raises(InputDataError) as raised:
        read_records(folder)
    return [str(p) for p in raised.value.problems]


def test_empty_required_file_reported(tmp_path):
    folder = write_export(tmp_path / "e", EXPORT)
    (folder / "pupils.csv").write_bytes(b"")
    problems = _problems(folder)
    assert len(problems) == 1
    assert "table 'pupils'" in problems[0]
    assert "the file is empty; export the table with its header line" in problems[0]


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom"])
def test_empty_optional_file_warns(tmp_path, caplog, content):
    folder = write_export(tmp_path / "e", EXPORT)
    (folder / "behaviour_notes.csv").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        records = read_records(folder)
    assert len(records.behaviour_notes) == 0
    assert len(records.pupils) == 2
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "behaviour_notes" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "behaviour_notes.csv is empty" in warnings[0]
    assert "export the table again with its header line" in warnings[0]


@pytest.mark.parametrize(
    "table",
    ["attendance_marks", "grades", "support_decisions", "study_right_states"],
)
def test_header_only_required_table_warns(tmp_path, caplog, table):
    folder = write_export(tmp_path / "e", EXPORT | {table: EXPORT[table][:1]})
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        records = read_records(folder)
    assert len(getattr(records, table)) == 0
    warnings = [m for m in _warnings(caplog) if f"{table}.csv" in m]
    assert len(warnings) == 1
    assert f"{folder / table}.csv has no rows, only its header line" in warnings[0]
    assert "if the export failed, export the table again" in warnings[0]


def test_header_only_optional_table_silent(tmp_path, caplog):
    folder = write_export(
        tmp_path / "e", EXPORT | {"behaviour_notes": ["pupil_id;date;note_type"]}
    )
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        read_records(folder)
    assert [m for m in _warnings(caplog) if "behaviour_notes" in m] == []


def test_header_only_table_one_problem(tmp_path):
    tables = {k: list(v) for k, v in EXPORT.items()}
    tables["pupils"] = tables["pupils"][:1]
    problems = _problems(write_export(tmp_path / "e", tables))
    assert problems == [
        f"{tmp_path / 'e' / 'pupils.csv'}: table 'pupils': the file has only its "
        "header line; export the table with its rows"
    ]


def test_comma_separated_header_hint(tmp_path):
    tables = {k: list(v) for k, v in EXPORT.items()}
    tables["pupils"] = [line.replace(";", ",") for line in tables["pupils"]]
    problems = _problems(write_export(tmp_path / "e", tables))
    pupils = [p for p in problems if "table 'pupils'" in p]
    assert len(pupils) == 1
    assert "row 1: the header line looks separated by commas or tabs" in pupils[0]
    assert "'birth_year'" in pupils[0]


def test_missing_header_column_one_problem(tmp_path):
    tables = {k: list(v) for k, v in EXPORT.items()}
    header, *rows = tables["pupils"]
    names = header.split(";")
    dropped = names.index("birth_year")
    tables["pupils"] = [
        ";".join(v for i, v in enumerate(line.split(";")) if i != dropped)
        for line in tables["pupils"]
    ]
    problems = _problems(write_export(tmp_path / "e", tables))
    assert problems == [
        f"{tmp_path / 'e' / 'pupils.csv'}: table 'pupils', row 1: the header line "
        "lacks the column(s) 'birth_year'; add them"
    ]


def test_header_column_in_other_case_named(tmp_path):
    tables = {k: list(v) for k, v in EXPORT.items()}
    header, *rows = tables["pupils"]
    tables["pupils"] = [
        header.replace("pupil_id", "Pupil_ID").replace("birth_year", " birth_year "),
        *rows,
    ]
    problems = _problems(write_export(tmp_path / "e", tables))
    assert problems == [
        f"{tmp_path / 'e' / 'pupils.csv'}: table 'pupils', row 1: the header line "
        "lacks the column(s) 'pupil_id'; rename 'Pupil_ID' as 'pupil_id': the "
        "contract's column names are lower case"
    ]


@pytest.mark.parametrize("value", ["31.12.9999", "01.08.2999", "01.01.1800"])
def test_date_out_of_range_reported(tmp_path, value):
    tables = {k: list(v) for k, v in EXPORT.items()}
    tables["support_decisions"][1] = f"p2;01.10.2024;{value};intensified"
    problems = _problems(write_export(tmp_path / "e", tables))
    assert len(problems) == 1
    assert f"column 'end_date', row 2: value '{value}'" in problems[0]
    assert "from 1900 to 2200; leave an open end empty" in problems[0]


def test_separator_only_rows_skipped(tmp_path):
    grades = [*EXPORT["grades"], ";;;;", " ; ;;;", ";;;;"]
    marks = [*EXPORT["attendance_marks"], ";;;;;;;"]
    export = write_export(
        tmp_path / "e", EXPORT | {"grades": grades, "attendance_marks": marks}
    )
    records = read_records(export)
    assert len(records.grades) == len(EXPORT["grades"]) - 1
    assert records.counts["grades"] == len(EXPORT["grades"]) - 1
    assert records.counts["attendance_marks"] == len(EXPORT["attendance_marks"]) - 1
    assert records.counts["blank_rows_skipped"] == 4


def test_empty_lines_counted_as_blank_rows(tmp_path):
    grades = [*EXPORT["grades"], "", ";;;;"]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    records = read_records(export)
    assert records.counts["grades"] == len(EXPORT["grades"]) - 1
    assert records.counts["blank_rows_skipped"] == 2


def test_problem_line_after_empty_lines(tmp_path):
    # Lines 3 and 4 are empty, so the invalid grade is on line 5.
    grades = [*EXPORT["grades"][:2], "", "", "p1;s1;20.12.2024;AI;11"]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    problems = _problems(export)
    assert len(problems) == 1
    assert "column 'grade', row 5: value '11' is invalid" in problems[0]


def test_empty_lines_before_header_skipped(tmp_path):
    grades = ["", "", *EXPORT["grades"][:2], "p1;s1;20.12.2024;AI;11"]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    problems = _problems(export)
    assert len(problems) == 1
    assert "column 'grade', row 5: value '11' is invalid" in problems[0]


def test_problem_line_after_blank_rows(tmp_path):
    # Line 3 is blank, so the invalid grade on line 4 is the table's second row.
    grades = [*EXPORT["grades"][:2], ";;;;", "p1;s1;20.12.2024;AI;11"]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    problems = _problems(export)
    assert len(problems) == 1
    assert "column 'grade', row 4: value '11' is invalid" in problems[0]


def test_blank_rows_only_is_header_only(tmp_path):
    pupils = [EXPORT["pupils"][0], ";;;;;"]
    problems = _problems(write_export(tmp_path / "e", EXPORT | {"pupils": pupils}))
    assert len(problems) == 1
    assert "table 'pupils'" in problems[0]
    assert "the file has only its header line and 1 empty row(s)" in problems[0]


def test_blank_parquet_rows_skipped(tmp_path):
    export = write_export(tmp_path / "e", EXPORT)
    (export / "support_decisions.csv").unlink()
    pd.DataFrame(
        {
            "pupil_id": ["p2", None],
            "start_date": pd.to_datetime(["2024-10-01", None]),
            "end_date": pd.to_datetime([None, None]),
            "level": ["intensified", " "],
        }
    ).to_parquet(export / "support_decisions.parquet")
    records = read_records(export)
    assert len(records.support_decisions) == 1
    assert records.counts["blank_rows_skipped"] == 1


def test_line_with_extra_fields_reported(tmp_path):
    tables = {k: list(v) for k, v in EXPORT.items()}
    tables["support_decisions"].append("p1;01.10.2024;;general;extra;fields")
    problems = _problems(write_export(tmp_path / "e", tables))
    assert len(problems) == 1
    assert "table 'support_decisions'" in problems[0]
    assert "cannot be read as CSV" in problems[0]
    assert "line 3" in problems[0]


def test_empty_parquet_file_reported(tmp_path):
    folder = write_export(tmp_path / "e", EXPORT)
    (folder / "grades.csv").unlink()
    (folder / "grades.parquet").write_bytes(b"")
    problems = _problems(folder)
    assert len(problems) == 1
    assert "table 'grades'" in problems[0]
    assert "cannot be read as Parquet" in problems[0]


def test_problem_line_after_quoted_newlines(tmp_path):
    # Row 1's name spans lines 2 and 3, line 4 is blank, and row 2 starts on
    # line 5: the line a text editor shows for the bad level.
    schools = [
        "school_id;name;municipality;level",
        's1;"Alppilan koulu\nlisärakennus";Helsinki;basic',
        "",
        "s2;Kallion lukio;Helsinki;lukio",
    ]
    folder = write_export(tmp_path / "e", EXPORT | {"schools": schools})
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'level', row 5" in problems[0]


def test_state_far_after_last_mark_reported(tmp_path):
    # One mistyped year would make the data seem to run until 2099.
    states = [*EXPORT["study_right_states"], "r1;01.01.2099;resigned"]
    folder = write_export(tmp_path / "e", EXPORT | {"study_right_states": states})
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'state_from'" in problems[0]
    assert "2099" in problems[0]
    assert "last attendance mark or grade" in problems[0]


def test_state_far_ahead_without_marks_or_grades_reported(tmp_path):
    # With header-only marks and grades, the day of the load bounds the dates.
    states = [*EXPORT["study_right_states"], "r1;01.01.2099;resigned"]
    tables = EXPORT | {
        "study_right_states": states,
        "attendance_marks": EXPORT["attendance_marks"][:1],
        "grades": EXPORT["grades"][:1],
    }
    problems = _problems(write_export(tmp_path / "e", tables))
    assert len(problems) == 1
    assert "column 'state_from'" in problems[0]
    assert "the day of the load" in problems[0]


def test_repeated_state_names_first_row(tmp_path):
    # Line 5 repeats line 2's state date, written without leading zeros.
    states = [*EXPORT["study_right_states"], "r1;1.8.2018;resigned"]
    folder = write_export(tmp_path / "e", EXPORT | {"study_right_states": states})
    problems = _problems(folder)
    assert problems == [
        f"{folder / 'study_right_states.csv'}: table 'study_right_states', column "
        "'state_from', row 5: value '1.8.2018' is invalid; expected a unique value "
        "of (study_right_id, state_from). Row 2 has the same state_from for "
        "study_right_id 'r1': remove one of the two rows or correct its state_from"
    ]


def test_repeated_id_names_first_row(tmp_path):
    pupils = [*EXPORT["pupils"], "p1;2010;1;male;finnish;Espoo"]
    problems = _problems(write_export(tmp_path / "e", EXPORT | {"pupils": pupils}))
    assert len(problems) == 1
    assert "column 'pupil_id', row 4: value 'p1' is invalid" in problems[0]
    assert "Row 2 has the same pupil_id: remove one of the two rows" in problems[0]


def test_state_before_start_names_start(tmp_path):
    # The repeated r2 is reported, and the states compare with its first row.
    rights = [*EXPORT["study_rights"], "r2;p2;s1;01.08.2016"]
    states = [*EXPORT["study_right_states"], "r2;1.8.2017;present"]
    folder = write_export(
        tmp_path / "e",
        EXPORT | {"study_rights": rights, "study_right_states": states},
    )
    problems = [p for p in _problems(folder) if "'study_right_states'" in p]
    assert problems == [
        f"{folder / 'study_right_states.csv'}: table 'study_right_states', column "
        "'state_from', row 5: value '1.8.2017' is invalid; expected a date on or "
        "after the study right's start_date. Study right 'r2' starts on "
        "'01.08.2018' (study_rights.csv, row 3): correct the state_from or the "
        "start_date"
    ]


def test_support_end_names_start(tmp_path):
    support = [*EXPORT["support_decisions"], "p1;1.10.2024;30.9.2024;general"]
    folder = write_export(tmp_path / "e", EXPORT | {"support_decisions": support})
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'end_date', row 3: value '30.9.2024' is invalid" in problems[0]
    assert "The row's start_date is '1.10.2024'" in problems[0]


def test_late_event_shown_as_written(tmp_path):
    notes = ["pupil_id;date;note_type", "p1;1.1.2099;late"]
    folder = write_export(tmp_path / "e", EXPORT | {"behaviour_notes": notes})
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'date', row 2: value '1.1.2099' is invalid" in problems[0]


def test_repeated_state_problems_grouped(tmp_path):
    # Each problem names its own first row, but the console summary still
    # groups them as one kind.
    from sources.errors import summarize_problems

    states = [EXPORT["study_right_states"][0]]
    for day in range(1, 26):
        states += [f"r1;{day:02d}.09.2019;present", f"r1;{day}.9.2019;present"]
    folder = write_export(tmp_path / "e", EXPORT | {"study_right_states": states})
    with pytest.raises(InputDataError) as raised:
        read_records(folder)
    lines = summarize_problems(raised.value.problems, per_group=20)
    assert len(raised.value.problems) == 25
    assert len(lines) == 21
    assert "... and 5 more rows with the same problem" in lines[-1]


def test_csv_and_parquet_of_one_table_reported(tmp_path):
    folder = write_export(tmp_path / "e", EXPORT)
    pd.read_csv(
        folder / "grades.csv", sep=";", dtype=str, encoding="utf-8-sig"
    ).to_parquet(folder / "grades.parquet")
    problems = _problems(folder)
    assert len(problems) == 1
    assert "table 'grades'" in problems[0]
    assert "both grades.csv and grades.parquet" in problems[0]


def test_empty_mark_code_file_reported(tmp_path):
    from sources.school.marks import read_mark_codes

    path = tmp_path / "mark_codes.csv"
    path.write_bytes(b"")
    with pytest.raises(InputDataError, match="the file is empty; write a header"):
        read_mark_codes(path)


def _reference_resolution(marks: pd.DataFrame) -> pd.DataFrame:
    """The precedence rule written as a plain sort: office, latest, later row."""
    ranked = marks.assign(
        row=range(len(marks)),
        office=marks["recorded_by"] == "office",
        recorded=marks["recorded_at"].fillna(pd.Timestamp.min),
    ).sort_values(["office", "recorded", "row"])
    last = ranked.groupby(["pupil_id", "date", "lesson"], dropna=False).tail(1)
    return marks.iloc[sorted(last["row"])].reset_index(drop=True)


@pytest.mark.parametrize("seed", range(5))
def test_duplicate_precedence_matches_plain_sort(seed):
    rng = np.random.default_rng(seed)
    n = 400
    recorded = pd.Series(
        pd.to_datetime("2024-09-02") + pd.to_timedelta(rng.integers(0, 3, n), "h")
    ).where(rng.random(n) > 0.2)
    marks = pd.DataFrame(
        {
            "pupil_id": pd.Categorical(rng.choice(["p1", "p2", "p3"], n)),
            "lesson": pd.Categorical(rng.choice(["1", "2", None], n)),
            "date": pd.to_datetime("2024-09-02")
            + pd.to_timedelta(rng.integers(0, 4, n), "D"),
            "recorded_by": pd.Categorical(rng.choice(["teacher", "office"], n)),
            "recorded_at": recorded,
            "mark": rng.choice(["present", "late"], n),
        }
    )
    resolved, dropped = _resolve_duplicate_marks(marks)
    expected = _reference_resolution(marks)
    assert dropped == n - len(expected) > 0
    pd.testing.assert_frame_equal(resolved, expected)


def test_unique_marks_not_copied():
    marks = pd.DataFrame(
        {
            "pupil_id": ["p1", "p1", "p2"],
            "lesson": ["1", "2", "1"],
            "date": pd.to_datetime(["2024-09-02"] * 3),
            "recorded_by": ["teacher"] * 3,
            "recorded_at": pd.to_datetime([None] * 3),
        }
    )
    resolved, dropped = _resolve_duplicate_marks(marks)
    assert dropped == 0
    assert resolved is marks


def test_repeated_header_column_reported(tmp_path):
    broken = {k: list(v) for k, v in EXPORT.items()}
    header, *rows = broken["schools"]
    broken["schools"] = [header + ";name"] + [row + ";x" for row in rows]
    with pytest.raises(InputDataError) as caught:
        read_records(write_export(tmp_path / "dup", broken))
    found = [(p.table, p.column, p.row) for p in caught.value.problems]
    assert found == [("schools", "name", 1)]


def test_id_unreadable_by_api_reported(tmp_path):
    broken = {k: list(v) for k, v in EXPORT.items()}
    broken["pupils"][1] = broken["pupils"][1].replace("p1;", "AB 12/3;", 1)
    with pytest.raises(InputDataError) as caught:
        read_records(write_export(tmp_path / "ids", broken))
    found = {(p.table, p.column, p.row, p.value) for p in caught.value.problems}
    assert ("pupils", "pupil_id", 2, "AB 12/3") in found


def test_id_rule_matches_api_path_rule():
    from serving.api_models import PUPIL_ID_PATTERN
    from sources.contract import ID_PATTERN

    assert PUPIL_ID_PATTERN == f"^{ID_PATTERN}$"


def test_extra_columns_named_in_warning(tmp_path, caplog):
    pupils = [
        EXPORT["pupils"][0] + ";hetu;name",
        EXPORT["pupils"][1] + ";010309A123B;Aino Virtanen",
        EXPORT["pupils"][2] + ";011109A456C;Eero Lahti",
    ]
    export = write_export(tmp_path / "e", EXPORT | {"pupils": pupils})
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        records = read_records(export)
    messages = [record.getMessage() for record in caplog.records]
    warnings = [message for message in messages if "not read" in message]
    assert len(warnings) == 1
    assert "table 'pupils'" in warnings[0]
    assert "'hetu', 'name'" in warnings[0]
    assert "not read or stored" in warnings[0]
    assert "010309A123B" not in caplog.text
    assert "Virtanen" not in caplog.text
    assert "hetu" not in records.pupils.columns


def test_koski_state_code_names_contract_state(tmp_path):
    states = [*EXPORT["study_right_states"][:3], "r2;15.02.2025;eronnut"]
    folder = write_export(tmp_path / "e", EXPORT | {"study_right_states": states})
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'state', row 4: value 'eronnut' is invalid" in problems[0]
    assert "'eronnut' is the Koski code of 'resigned': write resigned" in problems[0]


def test_other_state_has_no_koski_hint(tmp_path):
    states = [*EXPORT["study_right_states"][:3], "r2;15.02.2025;left"]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"study_right_states": states})
    )
    assert len(problems) == 1
    assert "Koski" not in problems[0]


def test_invalid_date_names_both_formats(tmp_path):
    support = [EXPORT["support_decisions"][0], "p2;2024/10/01;;intensified"]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"support_decisions": support})
    )
    assert len(problems) == 1
    assert "value '2024/10/01' is invalid" in problems[0]
    assert "expected a date as dd.mm.yyyy or yyyy-mm-dd" in problems[0]


def test_mistyped_future_year_of_mark_reported(tmp_path):
    # r1 is still open, so only the date shows that the year is wrong.
    year = load_day().year + 3
    marks = [*EXPORT["attendance_marks"], f"p1;s1;15.03.{year} 08:15;1;MA;P;teacher;"]
    folder = write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    problems = _problems(folder)
    assert problems == [
        f"{folder / 'attendance_marks.csv'}: table 'attendance_marks', column "
        f"'lesson_start', row 7: value '15.03.{year} 08:15' is invalid; expected "
        f"a date on or before {load_day():%d.%m.%Y}, the day of the load; correct "
        "the date of the lesson"
    ]


def test_mark_of_today_read(tmp_path):
    today = f"{load_day():%d.%m.%Y}"
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{today} 23:45;1;MA;P;teacher;{today} 23:50",
    ]
    records = read_records(
        write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    )
    assert records.attendance_marks["date"].max() == load_day()


def test_future_recorded_at_reported(tmp_path):
    today = load_day()
    tomorrow = today + pd.Timedelta(days=1)
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{today:%d.%m.%Y} 08:15;1;MA;P;teacher;{tomorrow:%d.%m.%Y} 08:20",
    ]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    )
    assert len(problems) == 1
    assert (
        f"column 'recorded_at', row 7: value '{tomorrow:%d.%m.%Y} 08:20'"
        in (problems[0])
    )
    assert "correct the time the mark was entered" in problems[0]


def test_future_grade_reported(tmp_path):
    tomorrow = load_day() + pd.Timedelta(days=1)
    grades = [*EXPORT["grades"], f"p1;s1;{tomorrow:%d.%m.%Y};MA;8"]
    problems = _problems(write_export(tmp_path / "e", EXPORT | {"grades": grades}))
    assert len(problems) == 1
    assert (
        f"column 'date', row 7: value '{tomorrow:%d.%m.%Y}' is invalid" in (problems[0])
    )
    assert f"on or before {load_day():%d.%m.%Y}, the day of the load" in problems[0]


def test_planned_graduation_reported(tmp_path):
    # A mark of today keeps the graduation within 366 days of the last mark,
    # so only the day of the load rejects it.
    today = load_day()
    tomorrow = today + pd.Timedelta(days=1)
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{today:%d.%m.%Y} 08:15;1;MA;P;teacher;",
    ]
    states = [*EXPORT["study_right_states"], f"r1;{tomorrow:%d.%m.%Y};graduated"]
    folder = write_export(
        tmp_path / "e",
        EXPORT | {"attendance_marks": marks, "study_right_states": states},
    )
    problems = _problems(folder)
    assert len(problems) == 1
    assert "column 'state_from', row 5" in problems[0]
    assert "the day of the load" in problems[0]
    assert "leave the row out until then" in problems[0]


def test_future_study_right_start_read(tmp_path):
    # A pupil admitted for the next school year has a study right that starts
    # later, and no state until it does.
    start = load_day() + pd.Timedelta(days=60)
    rights = [*EXPORT["study_rights"], f"r3;p1;s2;{start:%d.%m.%Y}"]
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{load_day():%d.%m.%Y} 08:15;1;MA;P;teacher;",
    ]
    records = read_records(
        write_export(
            tmp_path / "e",
            EXPORT | {"study_rights": rights, "attendance_marks": marks},
        )
    )
    assert records.study_rights["start_date"].max() == start


CUSTOM_CODES = "code;mark\nP;present\nSA;unexcused\nLV;excused\nMY;late\nX9;excused\n"
"""A platform's own codes: SA and LV mean the opposite of the bundled example
table, and X9 is not in it."""


def _compared_marks(records) -> pd.DataFrame:
    columns = ["pupil_id", "lesson", "date", "mark_code", "mark"]
    return records.attendance_marks[columns].astype("str").reset_index(drop=True)


def test_store_keeps_export_mark_codes(tmp_path, caplog):
    marks = [*EXPORT["attendance_marks"], "p1;s1;03.09.2024 08:15;1;MA;X9;teacher;"]
    export = write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    (export / "mark_codes.csv").write_text(CUSTOM_CODES, encoding="utf-8")
    store = tmp_path / "store"
    from_export = read_records(export)
    write_records(from_export, store)
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        from_store = read_records(store)
    assert "bundled example" not in caplog.text
    assert from_store.mark_codes == from_export.mark_codes
    pd.testing.assert_frame_equal(
        _compared_marks(from_store), _compared_marks(from_export)
    )
    stored = _compared_marks(from_store).set_index(["pupil_id", "lesson", "date"])
    # p1's LV and p2's office SA keep the export's meanings.
    assert stored.loc[("p1", "9", "2024-09-03"), "mark"] == "excused"
    assert stored.loc[("p2", "1", "2024-09-02"), "mark"] == "unexcused"


def _recent_mark_export() -> dict[str, list[str]]:
    """Return the export with a mark ten days before the load, so that the
    366-day limit lies after the day of the load."""
    recent = load_day() - pd.Timedelta(days=10)
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{recent:%d.%m.%Y} 08:15;1;MA;P;teacher;",
    ]
    return EXPORT | {"attendance_marks": marks}


@pytest.mark.parametrize("days_ahead", [30, 400])
def test_future_note_names_day_of_load_only(tmp_path, days_ahead):
    day = load_day() + pd.Timedelta(days=days_ahead)
    notes = ["pupil_id;date;note_type", f"p1;{day:%d.%m.%Y};disruption"]
    export = _recent_mark_export() | {"behaviour_notes": notes}
    problems = _problems(write_export(tmp_path / "e", export))
    assert len(problems) == 1
    assert f"value '{day:%d.%m.%Y}' is invalid" in problems[0]
    assert f"on or before {load_day():%d.%m.%Y}, the day of the load" in problems[0]
    assert "correct the date of the note" in problems[0]
    assert "366" not in problems[0]


def test_far_future_state_has_planned_hint(tmp_path):
    day = load_day() + pd.Timedelta(days=400)
    states = [*EXPORT["study_right_states"], f"r1;{day:%d.%m.%Y};graduated"]
    export = _recent_mark_export() | {"study_right_states": states}
    problems = _problems(write_export(tmp_path / "e", export))
    assert len(problems) == 1
    assert "column 'state_from', row 5" in problems[0]
    assert "the day of the load" in problems[0]
    assert "leave the row out until then" in problems[0]
    assert "366" not in problems[0]


def test_old_export_future_note_names_366_days(tmp_path):
    # The export ends on 30.05.2025, so its 366-day limit comes before the load.
    notes = ["pupil_id;date;note_type", "p1;27.09.2030;disruption"]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"behaviour_notes": notes})
    )
    assert len(problems) == 1
    assert "on or before 31.05.2026, at most 366 days after" in problems[0]


def test_utc_mark_after_load_names_helsinki_date(tmp_path):
    # 23:30 UTC on the day of the load is 01:30 or 02:30 the next day in Helsinki.
    today = load_day()
    written = f"{today:%Y-%m-%d}T23:30:00Z"
    marks = [*EXPORT["attendance_marks"], f"p1;s1;{written};9;MA;P;teacher;"]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    )
    tomorrow = today + pd.Timedelta(days=1)
    assert len(problems) == 1
    assert f"value '{written}' is invalid" in problems[0]
    assert f"{written} falls on {tomorrow:%d.%m.%Y} in Helsinki" in problems[0]


def test_local_mark_after_load_has_no_helsinki_note(tmp_path):
    tomorrow = load_day() + pd.Timedelta(days=1)
    marks = [
        *EXPORT["attendance_marks"],
        f"p1;s1;{tomorrow:%d.%m.%Y} 08:15;1;MA;P;teacher;",
    ]
    problems = _problems(
        write_export(tmp_path / "e", EXPORT | {"attendance_marks": marks})
    )
    assert len(problems) == 1
    assert "in Helsinki" not in problems[0]


@pytest.mark.parametrize(
    ("grade", "detail"),
    [
        ("4-", "4- lies below 4, the lowest grade on the scale"),
        ("10+", "10+ lies above 10, the highest grade on the scale"),
        ("10½", "10½ lies above 10, the highest grade on the scale"),
    ],
)
def test_off_scale_grade_named(tmp_path, grade, detail):
    grades = [*EXPORT["grades"], f"p1;s1;20.12.2024;BI;{grade}"]
    problems = _problems(write_export(tmp_path / "e", EXPORT | {"grades": grades}))
    assert len(problems) == 1
    assert f"value '{grade}' is invalid" in problems[0]
    assert problems[0].endswith(detail)


def test_unknown_grade_has_no_scale_note(tmp_path):
    grades = [*EXPORT["grades"], "p1;s1;20.12.2024;BI;11"]
    problems = _problems(write_export(tmp_path / "e", EXPORT | {"grades": grades}))
    assert len(problems) == 1
    assert "lies" not in problems[0]


def test_trailing_empty_columns_ignored(tmp_path, caplog):
    grades = [EXPORT["grades"][0] + ";;"] + [row + ";;" for row in EXPORT["grades"][1:]]
    export = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        records = read_records(export)
    assert len(records.grades) == len(EXPORT["grades"]) - 1
    assert [m for m in _warnings(caplog) if "grades.csv" in m] == []


def test_one_trailing_empty_column_ignored(tmp_path, caplog):
    pupils = [row + ";" for row in EXPORT["pupils"]]
    export = write_export(tmp_path / "e", EXPORT | {"pupils": pupils})
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        read_records(export)
    assert [m for m in _warnings(caplog) if "pupils.csv" in m] == []
    assert "Unnamed" not in caplog.text


def test_unnamed_column_with_values_named_by_number(tmp_path, caplog):
    pupils = [EXPORT["pupils"][0] + ";;"] + [
        row + ";010309A123B;" for row in EXPORT["pupils"][1:]
    ]
    export = write_export(tmp_path / "e", EXPORT | {"pupils": pupils})
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        records = read_records(export)
    warnings = [m for m in _warnings(caplog) if "pupils.csv" in m]
    assert len(warnings) == 1
    assert "values in column(s) 7," in warnings[0]
    assert "Unnamed" not in caplog.text
    assert "010309A123B" not in caplog.text
    assert len(records.pupils) == 2


def test_old_store_warns_to_load_again(tmp_path, export_dir, caplog):
    store = tmp_path / "store"
    records = read_records(export_dir)
    write_records(records, store)
    # A store written before load-records kept the mark-code table had a
    # file for every table, the export's absent optional tables included.
    (store / "mark_codes.csv").unlink()
    for name in records.absent_tables:
        getattr(records, name).to_parquet(store / f"{name}.parquet", index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sources.school.records"):
        read_records(store)
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert f"{store} has no mark_codes.csv" in warnings[0]
    assert "load the export again with load-records" in warnings[0]
    assert "add mark_codes.csv to the export" not in warnings[0]
