"""The grade baselines on school records read grades across school years."""

import numpy as np
import pandas as pd
import pytest

from features.build import asof_points_by_offset, build_features
from models.baselines import AbcRule, LastGradeRule
from sources.school.mapping import to_input_tables
from sources.school.records import read_records
from sources.school.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def october_rows(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Feature rows on 1 October of the second school year of an export."""
    export = tmp_path_factory.mktemp("baselines") / "export"
    generate(SynthConfig(pupils=300, years=2, seed=1, lessons_per_day=1), export)
    tables = to_input_tables(read_records(export)).validated()
    second_year = tables.units[tables.units["cohort"] == "2023"]
    points = asof_points_by_offset(second_year, [61])
    frame = build_features(tables, points, with_learner_features=True, labels=False)
    return frame.data


def test_october_has_no_grade_of_the_year(october_rows: pd.DataFrame):
    # The enrolment of a school year has no grade before the December report,
    # so its own assessment columns are empty or 0 on 1 October.
    assert october_rows["last_score"].isna().all()
    assert (october_rows["assessments_failed"] == 0).all()


def test_abc_reads_last_year_failed_grades(october_rows: pd.DataFrame):
    failed = october_rows["grades_failed_365d"] > 0
    assert failed.any()
    assert AbcRule().applicability(october_rows) is None

    score = AbcRule().rule_score(october_rows)
    without_grades = AbcRule().rule_score(october_rows.assign(grades_failed_365d=0.0))
    assert (score[failed.to_numpy()] > without_grades[failed.to_numpy()]).all()
    assert np.array_equal(score[~failed.to_numpy()], without_grades[~failed.to_numpy()])


def test_last_grade_reads_spring_report(october_rows: pd.DataFrame):
    assert LastGradeRule().applicability(october_rows) is None

    last_grade = LastGradeRule().last_grade(october_rows)
    spring_mean = october_rows["grade_mean_previous_term"].to_numpy(dtype=float)
    graded = ~np.isnan(spring_mean)
    assert graded.any()
    assert np.allclose(last_grade[graded], (spring_mean[graded] - 4) / 6 * 100)
    assert np.isnan(last_grade[~graded]).all()
    assert (LastGradeRule().rule_score(october_rows)[graded] < 101).all()
