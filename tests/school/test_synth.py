from pathlib import Path

import pandas as pd
import pytest

from features.build import learner_features
from sources.school.mapping import to_input_tables
from sources.school.records import load_day, read_records
from sources.school.synth import (
    FIRST_YEAR_MIN,
    SynthConfig,
    check_config,
    generate,
    teaching_days,
)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "records"
    generate(SynthConfig(pupils=1200, years=2, seed=3, lessons_per_day=1), out)
    return out


def test_same_seed_same_files(synth_dir, tmp_path):
    again = tmp_path / "again"
    generate(SynthConfig(pupils=1200, years=2, seed=3, lessons_per_day=1), again)
    for path in sorted(synth_dir.iterdir()):
        assert path.read_bytes() == (again / path.name).read_bytes(), path.name


def test_other_seed_differs(synth_dir, tmp_path):
    other = tmp_path / "other"
    generate(SynthConfig(pupils=1200, years=2, seed=4, lessons_per_day=1), other)
    first = pd.read_parquet(synth_dir / "attendance_marks.parquet")["mark_code"]
    second = pd.read_parquet(other / "attendance_marks.parquet")["mark_code"]
    assert not first.equals(second)


def test_output_passes_validation(synth_dir):
    records = read_records(synth_dir, synth_dir / "mark_codes.csv")
    assert records.counts["pupils"] == 1200
    assert records.counts["duplicate_marks_dropped"] > 0


def test_csv_output_passes_validation(tmp_path):
    out = tmp_path / "csv"
    generate(
        SynthConfig(pupils=40, years=1, seed=1, lessons_per_day=2, file_format="csv"),
        out,
    )
    assert (out / "grades.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_records(out, out / "mark_codes.csv").counts["pupils"] == 40


def test_absences_rise_before_dropout(synth_dir):
    """Pupils who resign show more unexcused absence in their last 8 weeks."""
    records = read_records(synth_dir, synth_dir / "mark_codes.csv")
    tables = to_input_tables(records).validated()
    states = tables.study_right_states
    exits = states[states["state"].isin(["resigned", "considered_resigned"])]
    later = states.groupby("learner_id")["state_from"].max()
    dropouts = exits[exits["state_from"].values == later[exits["learner_id"]].values]
    marks = tables.attendance.merge(tables.enrolments[["enrolment_id", "learner_id"]])
    marks["unexcused"] = marks["mark"] == "unexcused"
    end = marks.groupby("learner_id")["date"].transform("max")
    last = marks[marks["date"] > end - pd.Timedelta(days=56)]
    rate = last.groupby("learner_id")["unexcused"].mean()
    left = rate[rate.index.isin(dropouts["learner_id"])]
    stayed = rate[~rate.index.isin(dropouts["learner_id"])]
    assert len(left) >= 10
    assert left.mean() > 3 * stayed.mean()


def test_calendar_is_school_year():
    days = teaching_days(2024)
    assert days[0] >= pd.Timestamp("2024-08-08")
    assert days[-1] <= pd.Timestamp("2025-05-31")
    assert len(days) > 170


def test_rejects_zero_pupils(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        generate(SynthConfig(pupils=0, years=1, seed=0), tmp_path / "x")


def test_grade_levels_follow_years(synth_dir):
    records = read_records(synth_dir, synth_dir / "mark_codes.csv")
    rights = records.study_rights[["study_right_id", "pupil_id"]]
    levels = records.grade_levels.merge(rights, on="study_right_id")
    first_year = levels[levels["start_date"] < pd.Timestamp("2023-08-01")]
    assert first_year["pupil_id"].nunique() == 1200
    assert levels["grade_level"].between(1, 9).all()


def test_held_back_pupils_show_age(synth_dir):
    tables = to_input_tables(read_records(synth_dir, synth_dir / "mark_codes.csv"))
    keys = pd.DataFrame(
        {
            "learner_id": tables.learners["learner_id"],
            "asof_date": pd.Timestamp("2022-10-01"),
        }
    )
    ages = learner_features(tables.validated(), keys)[0]["age_for_grade_months"]
    assert ages.between(0, 23).all()
    assert ages.between(12, 23).mean() == pytest.approx(0.02, abs=0.015)


@pytest.mark.parametrize("first_year", [2023, 2025])
def test_other_first_years_validate(tmp_path, first_year):
    out = tmp_path / str(first_year)
    config = SynthConfig(
        pupils=300, years=1, seed=2, first_year=first_year, lessons_per_day=1
    )
    generate(config, out)
    tables = to_input_tables(read_records(out, out / "mark_codes.csv"))
    assert tables.learners["learner_id"].nunique() == 300


def test_rejects_folder_with_other_files(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("keep me")
    with pytest.raises(ValueError, match="thesis.txt"):
        generate(SynthConfig(pupils=5, years=1, seed=1), out)
    assert (out / "thesis.txt").read_text() == "keep me"
    assert (out / "sub").is_dir()


def test_rejects_file_as_folder(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        generate(SynthConfig(pupils=5, years=1, seed=1), target)
    assert target.read_text() == "x"


def test_replaces_own_earlier_output(tmp_path):
    out = tmp_path / "out"
    generate(SynthConfig(pupils=5, years=1, seed=1), out)
    counts = generate(SynthConfig(pupils=6, years=1, seed=1), out)
    assert counts["pupils"] == 6
    assert len(pd.read_parquet(out / "pupils.parquet")) == 6


def test_school_change_goes_to_another_school(synth_dir):
    rights = pd.read_parquet(synth_dir / "study_rights.parquet")
    rights = rights.sort_values(["pupil_id", "start_date"])
    previous = rights.groupby("pupil_id")["school_id"].shift()
    changes = rights[previous.notna()]
    # Basic to upper secondary always changes level, so any repeat is a change.
    assert len(changes) > 0
    assert (changes["school_id"] != previous[previous.notna()]).all()


def test_dropouts_show_signs_in_their_last_right(tmp_path):
    """Dropouts rarely leave in a right's first weeks, before any sign shows."""
    # Three years, so that pupils who disengage in basic education reach upper
    # secondary.
    out = tmp_path / "records"
    generate(SynthConfig(pupils=1200, years=3, seed=3, lessons_per_day=1), out)
    rights = pd.read_parquet(out / "study_rights.parquet")
    states = pd.read_parquet(out / "study_right_states.parquet")
    exits = states[states["state"].isin(["resigned", "considered_resigned"])]
    exits = exits.merge(rights, on="study_right_id")
    last_start = rights.groupby("pupil_id")["start_date"].max()
    dropouts = exits[exits["start_date"].values == last_start[exits["pupil_id"]].values]
    days_in = (dropouts["state_from"] - dropouts["start_date"]).dt.days
    assert len(dropouts) >= 40
    assert (days_in < 21).mean() < 0.05


def test_school_year_not_ended_rejected(tmp_path):
    # The school year that starts this calendar year ends next July.
    this_year = load_day().year
    config = SynthConfig(pupils=5, years=1, seed=1, first_year=this_year)
    with pytest.raises(ValueError, match="dates that have not happened yet"):
        generate(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_default_years_have_ended():
    check_config(SynthConfig(pupils=5, years=4, seed=1))


def test_synth_command_rejects_future_years(tmp_path):
    from typer.testing import CliRunner

    from ajoissa.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["synth", "--pupils", "5", "--years", "2", "--out", str(out)]
        + ["--first-year", str(load_day().year)],
    )
    assert result.exit_code == 2
    assert "Invalid --first-year or --years" in result.output
    assert "or earlier, or fewer years" in result.output
    assert not out.exists()


def test_earliest_first_year_validates(tmp_path):
    out = tmp_path / "records"
    config = SynthConfig(
        pupils=300, years=1, seed=2, first_year=FIRST_YEAR_MIN, lessons_per_day=1
    )
    generate(config, out)
    records = read_records(out, out / "mark_codes.csv")
    assert records.pupils["birth_year"].min() >= 1980


@pytest.mark.parametrize("first_year", ["1990", "-5"])
def test_synth_command_rejects_early_first_year(tmp_path, first_year):
    from typer.testing import CliRunner

    from ajoissa.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["synth", "--pupils", "5", "--out", str(out), "--first-year", first_year],
    )
    assert result.exit_code == 2
    assert f"Choose a first year of {FIRST_YEAR_MIN} or later" in result.output
    assert "out of range" not in result.output
    assert not out.exists()


def test_one_future_year_suggests_no_fewer(tmp_path):
    config = SynthConfig(pupils=5, years=1, seed=1, first_year=load_day().year)
    with pytest.raises(ValueError) as raised:
        check_config(config)
    assert "or earlier." in str(raised.value)
    assert "fewer years" not in str(raised.value)


def test_replaces_output_with_load_report(tmp_path):
    from ajoissa.records_commands import REPORT_NAME

    out = tmp_path / "out"
    generate(SynthConfig(pupils=5, years=1, seed=1), out)
    (out / REPORT_NAME).write_text("problems of the earlier output\n")
    counts = generate(SynthConfig(pupils=6, years=1, seed=1), out)
    assert counts["pupils"] == 6
    assert not (out / REPORT_NAME).exists()
