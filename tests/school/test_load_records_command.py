from pathlib import Path

import pandas as pd
from school_fixtures import EXPORT, write_export
from typer.testing import CliRunner

from ajoissa.cli import app
from sources.school.records import read_records

runner = CliRunner()


def test_valid_export_stored(export_dir: Path, tmp_path: Path):
    store = tmp_path / "store"
    result = runner.invoke(
        app, ["load-records", "--data", str(export_dir), "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "duplicate_marks_dropped" in result.output
    assert len(pd.read_parquet(store / "pupils.parquet")) == 2


def test_blank_rows_counted_in_summary(tmp_path: Path):
    grades = [*EXPORT["grades"], ";;;;", ";;;;"]
    data = write_export(tmp_path / "e", EXPORT | {"grades": grades})
    result = runner.invoke(app, ["load-records", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "blank_rows_skipped: 2" in result.output
    # The counts line up on the colon after the longest name.
    counts = [line for line in result.output.splitlines() if ": " in line]
    assert len({line.index(": ") for line in counts}) == 1


def test_invalid_export_lists_problems(tmp_path: Path):
    broken = {k: list(v) for k, v in EXPORT.items()}
    broken["grades"][1] = "p1;s1;20.12.2024;MA;11"
    broken["pupils"][1] = "p1;2009;13;female;finnish;Helsinki"
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        [
            "load-records",
            "--data",
            str(write_export(tmp_path / "e", broken)),
            "--store",
            str(store),
        ],
    )
    assert result.exit_code == 2
    assert "column 'grade', row 2: value '11' is invalid" in result.output
    assert "column 'birth_month', row 2: value '13' is invalid" in result.output
    assert not store.exists()


def test_many_problems_summarized(tmp_path: Path):
    broken = {k: list(v) for k, v in EXPORT.items()}
    del broken["pupils"][1]
    broken["attendance_marks"] += [
        f"p1;s1;{day:02d}.10.2024 08:15;1;MA;P;teacher;" for day in range(1, 31)
    ]
    data = write_export(tmp_path / "e", broken)
    result = runner.invoke(app, ["load-records", "--data", str(data)])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    marks = [line for line in lines if "'attendance_marks', column 'pupil_id'" in line]
    assert len(marks) == 21
    assert "... and 12 more rows with the same problem" in marks[-1]
    report = data / "load-records-problems.txt"
    assert f"listed in {report}" in result.output.replace("\n", "")
    listed = report.read_text(encoding="utf-8").splitlines()
    assert sum("'attendance_marks', column 'pupil_id'" in line for line in listed) == 32
    # Once the export is fixed, the old report goes.
    write_export(data, EXPORT)
    fixed = runner.invoke(app, ["load-records", "--data", str(data)])
    assert fixed.exit_code == 0, fixed.output
    assert not report.exists()


def test_store_with_other_files_rejected(export_dir: Path, tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "thesis.txt").write_text("keep me")
    result = runner.invoke(
        app, ["load-records", "--data", str(export_dir), "--store", str(store)]
    )
    assert result.exit_code == 2
    assert "thesis.txt" in result.output
    assert (store / "thesis.txt").read_text() == "keep me"
    assert not (store / "pupils.parquet").exists()


def test_store_reload_replaces_tables(export_dir: Path, tmp_path: Path):
    store = tmp_path / "store"
    for _ in range(2):
        result = runner.invoke(
            app, ["load-records", "--data", str(export_dir), "--store", str(store)]
        )
        assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(store / "pupils.parquet")) == 2


def test_store_containing_export_rejected(export_dir: Path):
    before = sorted(p.name for p in export_dir.iterdir())
    result = runner.invoke(
        app, ["load-records", "--data", str(export_dir), "--store", str(export_dir)]
    )
    assert result.exit_code == 2
    assert "contains the export folder" in result.output
    assert sorted(p.name for p in export_dir.iterdir()) == before


def test_missing_data_folder_rejected(tmp_path: Path):
    result = runner.invoke(app, ["load-records", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "folder not found" in result.output
    assert not (tmp_path / "nope").exists()


def test_latin1_mark_codes_reported(export_dir: Path, tmp_path: Path):
    (export_dir / "mark_codes.csv").write_bytes(
        b"code;mark\r\nP;present\r\nPoissa\xe4;excused\r\n"
    )
    store = tmp_path / "store"
    result = runner.invoke(
        app, ["load-records", "--data", str(export_dir), "--store", str(store)]
    )
    assert result.exit_code == 2, result.output
    assert "table 'mark_codes', row 3: the file is not UTF-8" in result.output
    assert "nothing was stored" in result.output
    assert not store.exists()


def _store_export(folder: Path, tables: dict[str, list[str]], store: Path, *options):
    data = write_export(folder, tables)
    return runner.invoke(
        app, ["load-records", "--data", str(data), "--store", str(store), *options]
    )


def test_empty_table_not_stored_over_rows(tmp_path: Path):
    store = tmp_path / "store"
    first = _store_export(tmp_path / "e1", EXPORT, store)
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    header_only = EXPORT | {"attendance_marks": EXPORT["attendance_marks"][:1]}
    stored = len(pd.read_parquet(store / "attendance_marks.parquet"))

    result = _store_export(tmp_path / "e2", header_only, store)

    assert result.exit_code == 2, result.output
    assert (
        f"Table 'attendance_marks' has no rows in {tmp_path / 'e2'}, but the load "
        f"stored in {store} has {stored}" in " ".join(result.output.split())
    )
    assert "--allow-empty attendance_marks" in result.output
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before


def test_allow_empty_stores_empty_table(tmp_path: Path):
    store = tmp_path / "store"
    assert _store_export(tmp_path / "e1", EXPORT, store).exit_code == 0
    header_only = EXPORT | {"support_decisions": EXPORT["support_decisions"][:1]}

    result = _store_export(
        tmp_path / "e2", header_only, store, "--allow-empty", "support_decisions"
    )

    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(store / "support_decisions.parquet")) == 0
    assert len(pd.read_parquet(store / "pupils.parquet")) == 2


def test_allow_empty_unknown_table_rejected(export_dir: Path, tmp_path: Path):
    result = runner.invoke(
        app,
        ["load-records", "--data", str(export_dir), "--allow-empty", "marks"],
    )
    assert result.exit_code == 2
    assert "Invalid --allow-empty marks: not a table of the export" in result.output


def test_mark_outside_study_right_not_stored(tmp_path: Path):
    # p1 has no study right at s2. features reads the export with the same
    # check, so load-records must not store what features would reject.
    marks = [*EXPORT["attendance_marks"], "p1;s2;10.08.2022 08:15;1;MA;P;teacher;"]
    store = tmp_path / "store"
    result = _store_export(tmp_path / "e", EXPORT | {"attendance_marks": marks}, store)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert (
        f"{tmp_path / 'e' / 'attendance_marks.csv'}: table 'attendance_marks', "
        "column 'lesson_start', row 7: value '10.08.2022 08:15' is invalid; "
        "expected a date within one of the pupil's study rights at this school. "
        "The mark of pupil 'p1' at school 's2' on 10.08.2022 in subject 'MA' is "
        "outside them" in output
    )
    assert "nothing was stored" in output
    assert not store.exists()


def test_store_keeps_mark_codes_option(tmp_path: Path):
    # The codes come from --mark-codes, outside the export. SA and LV mean the
    # opposite of the bundled example table, and X9 is not in it.
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records

    codes = tmp_path / "platform-codes.csv"
    codes.write_text(
        "code;mark\nP;present\nSA;unexcused\nLV;excused\nMY;late\nX9;excused\n",
        encoding="utf-8",
    )
    marks = [*EXPORT["attendance_marks"], "p1;s1;03.09.2024 08:15;1;MA;X9;teacher;"]
    store = tmp_path / "store"
    result = _store_export(
        tmp_path / "e",
        EXPORT | {"attendance_marks": marks},
        store,
        "--mark-codes",
        str(codes),
    )
    assert result.exit_code == 0, result.output
    from_export = to_input_tables(read_records(tmp_path / "e", codes)).attendance
    from_store = to_input_tables(read_records(store)).attendance
    pd.testing.assert_frame_equal(from_store.astype("str"), from_export.astype("str"))
    assert (from_store["mark"] == "unexcused").sum() == 1
    assert (from_store["mark"] == "excused").sum() == 2


def test_features_of_store_match_export(tmp_path: Path):
    codes = "code;mark\nP;present\nSA;unexcused\nLV;excused\nMY;late\n"
    export = write_export(tmp_path / "e", EXPORT)
    (export / "mark_codes.csv").write_text(codes, encoding="utf-8")
    store = tmp_path / "store"
    loaded = runner.invoke(
        app, ["load-records", "--data", str(export), "--store", str(store)]
    )
    assert loaded.exit_code == 0, loaded.output
    frames = {}
    for name, data in (("export", export), ("store", store)):
        out = tmp_path / f"{name}.parquet"
        result = runner.invoke(
            app,
            ["features", "--source", "records", "--data", str(data)]
            + ["--out", str(out), "--label-window-days", "60"]
            + ["--transfer-gap-days", "10"],
        )
        assert result.exit_code == 0, result.output
        assert "bundled example" not in result.output
        frames[name] = pd.read_parquet(out)
    assert len(frames["export"]) > 0
    pd.testing.assert_frame_equal(frames["store"], frames["export"])


def test_absent_optional_table_stays_absent(tmp_path: Path):
    store = tmp_path / "store"
    result = _store_export(tmp_path / "e", EXPORT, store)
    assert result.exit_code == 0, result.output
    assert "behaviour_notes" not in EXPORT
    assert not (store / "behaviour_notes.parquet").exists()
    assert (store / "pupils.parquet").exists()
    assert "behaviour_notes" in read_records(store).absent_tables
    assert "support_decisions" not in read_records(store).absent_tables


def test_absent_table_over_rows_named_missing(tmp_path: Path):
    store = tmp_path / "store"
    assert _store_export(tmp_path / "e1", EXPORT, store).exit_code == 0
    behaviour = ["pupil_id;date;note_type", "p1;02.09.2024;disruption"]
    (tmp_path / "e1" / "behaviour_notes.csv").write_bytes(
        ("\r\n".join(behaviour) + "\r\n").encode("utf-8-sig")
    )
    first = runner.invoke(
        app, ["load-records", "--data", str(tmp_path / "e1"), "--store", str(store)]
    )
    assert first.exit_code == 0, first.output

    result = _store_export(tmp_path / "e2", EXPORT, store)

    message = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"Table 'behaviour_notes' is missing from {tmp_path / 'e2'}" in message
    assert "no behaviour_notes.csv or behaviour_notes.parquet" in message
    assert "--allow-empty behaviour_notes" in message
