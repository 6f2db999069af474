"""The main job keeps the study-right label of school records."""

from pathlib import Path

import numpy as np
import pandas as pd

from features.build import LABEL, WITHDRAWAL_DATE, asof_points_by_offset, build_features
from features.labels import LabelRule
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
