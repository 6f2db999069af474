"""The main job keeps the study-right label of school records."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import LABEL, WITHDRAWAL_DATE, asof_points_by_offset, build_features
from features.labels import LabelRule
from sources.contract import InputTables
from sources.school.mapping import to_input_tables
from sources.school.records import read_records
from sources.school.synth import SynthConfig, generate
from training.validate import with_label_window


def test_label_window_keeps_study_right_labels(tmp_path: Path):
    generate(SynthConfig(pupils=600, years=2, seed=1), tmp_path / "export")
    tables = to_input_tables(read_records(tmp_path / "export")).validated()
    points = asof_points_by_offset(tables.units, [60, 150])
    frame = build_features(tables, points, LabelRule(window_days=365))
    labelled = frame.data[LABEL].to_numpy()
    # Some enrolments that end as resigned are school changes, not dropouts.
    # The data must contain such cases, or relabelling would go unnoticed.
    ended = frame.data["enrolment_id"].map(
        tables.enrolments.set_index("enrolment_id")["end_reason"]
    )
    assert ((ended == "withdrawn").to_numpy() != labelled.astype(bool)).any()

    windowed = with_label_window(frame, tables.enrolments, None)
    assert np.array_equal(windowed.data[LABEL].to_numpy(), labelled)
    left = windowed.data[WITHDRAWAL_DATE]
    assert left.notna().to_numpy().tolist() == (labelled == 1).tolist()
    assert (left[labelled == 1] > windowed.data.loc[labelled == 1, "asof_date"]).all()
    assert (
        left[labelled == 1]
        <= windowed.data.loc[labelled == 1, "asof_date"] + pd.Timedelta(days=365)
    ).all()


@pytest.fixture(scope="module")
def three_years(tmp_path_factory: pytest.TempPathFactory) -> InputTables:
    export = tmp_path_factory.mktemp("labels") / "export"
    generate(SynthConfig(pupils=300, years=3, seed=2, lessons_per_day=1), export)
    return to_input_tables(read_records(export)).validated()


def test_rows_past_data_end_left_out(three_years: InputTables):
    points = asof_points_by_offset(three_years.units, [61, 122, 184])
    rule = LabelRule(window_days=183, transfer_gap_days=120)
    frame = build_features(three_years, points, rule)
    unlabelled = build_features(three_years, points, rule, labels=False)

    horizon = pd.Timedelta(days=183 + 120)
    assert frame.data_end is not None
    assert (frame.data["asof_date"] + horizon <= frame.data_end).all()
    past_end = unlabelled.data["asof_date"] + horizon > frame.data_end
    assert frame.rows_past_data_end == int(past_end.sum())
    assert frame.rows_past_data_end > 0
    assert len(frame.data) + frame.rows_past_data_end == len(unlabelled.data)


def test_unlabelled_frame_keeps_latest_rows(three_years: InputTables):
    latest = three_years.units["start_date"].max()
    points = asof_points_by_offset(
        three_years.units[three_years.units["start_date"] == latest], [184]
    )
    labelled = build_features(three_years, points, LabelRule())
    unlabelled = build_features(three_years, points, LabelRule(), labels=False)
    assert labelled.data.empty
    assert len(unlabelled.data) > 0
    assert LABEL not in unlabelled.data.columns
    assert WITHDRAWAL_DATE not in unlabelled.data.columns
    assert unlabelled.rows_past_data_end == 0


def test_run_names_years_needed(three_years: InputTables, tmp_path: Path):
    from ajoissa.catalog import SOURCES
    from training.run import run_main_job

    config = SOURCES["records"].run_config(tmp_path)
    config.tuning_trials = 0
    with pytest.raises(ValueError, match="needs about 4") as raised:
        run_main_job(three_years, config, tmp_path / "out")
    message = str(raised.value)
    assert "365-day label window" in message
    assert "120-day transfer gap" in message
    assert "The data have 3 cohorts" in message
    assert "--label-window-days" in message
