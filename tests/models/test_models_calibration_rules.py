"""Calibration stored as numbers, rank ties, and the rule baselines."""

import numpy as np
import pandas as pd
import pytest

from models.baselines import (
    AbcRule,
    AbsenceHoursRule,
    ContextBaseline,
    LastGradeRule,
    NotApplicableError,
)
from models.calibration import Calibration, choose_method, fit_calibration
from models.risk import fit_risk_model, predict_risk, rank_order


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * X["a"] - 1)))).astype(int).to_numpy()
    return X, y


def test_calibration_leaves_booster_unchanged(data):
    X, y = data
    model, spec = fit_risk_model(X.iloc[:2000], y[:2000], {"n_estimators": 30})
    before = model.booster_.model_to_string()
    raw_before = predict_risk(model, spec, X.iloc[2000:])
    calibration = fit_calibration(raw_before, y[2000:])
    calibrated = predict_risk(model, spec, X.iloc[2000:], calibration)
    assert model.booster_.model_to_string() == before
    assert np.array_equal(predict_risk(model, spec, X.iloc[2000:]), raw_before)
    assert not np.array_equal(calibrated, raw_before)


def test_method_by_size():
    assert choose_method(np.array([0, 1] * 100)) == "sigmoid"
    assert choose_method(np.array([0, 1] * 1000)) == "isotonic"


def test_calibration_round_trip(data):
    _, y = data
    calibration = fit_calibration(np.linspace(0.01, 0.99, len(y)), y, "isotonic")
    again = Calibration.from_dict(calibration.to_dict())
    probe = np.linspace(0, 1, 11)
    assert np.array_equal(again.apply(probe), calibration.apply(probe))


def test_sigmoid_improves_brier():
    rng = np.random.default_rng(1)
    truth = rng.random(5000)
    y = (rng.random(5000) < truth).astype(int)
    overconfident = np.clip(truth**3, 0.001, 0.999)
    calibration = fit_calibration(overconfident, y, "sigmoid")
    before = np.mean((overconfident - y) ** 2)
    after = np.mean((calibration.apply(overconfident) - y) ** 2)
    assert after < before


def test_one_class_calibration_raises():
    with pytest.raises(ValueError, match="only one class"):
        fit_calibration(np.array([0.1, 0.2]), np.array([0, 0]))


def test_rank_order_breaks_ties_by_raw():
    calibrated = np.array([0.2, 0.5, 0.5, 0.1])
    raw = np.array([0.3, 0.40, 0.45, 0.05])
    assert rank_order(calibrated, raw).tolist() == [2, 1, 0, 3]


def test_abc_without_attendance():
    X = pd.DataFrame({"assessments_failed": [0.0, 1.0]})
    assert AbcRule().applicability(X) == (
        "not applicable: the source has no attendance data (absence_share)"
    )
    with pytest.raises(NotApplicableError, match="attendance"):
        AbcRule().fit(X, np.array([0, 1]))


def test_abc_counts_indicators():
    X = pd.DataFrame(
        {
            "absence_share": [0.05, 0.2, 0.2],
            "assessments_failed": [0.0, 0.0, 2.0],
            "attr_behaviour_notes": [0.0, 0.0, 1.0],
        }
    )
    assert AbcRule().rule_score(X).tolist() == [0.0, 1.0, 3.0]
    assert AbcRule().components(X)[-1] == "behaviour notes"


def test_absence_hour_levels():
    X = pd.DataFrame({"absence_hours_year": [10.0, 30.0, 55.0, 80.0]})
    assert AbsenceHoursRule().rule_score(X).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_all_missing_column_not_applicable():
    X = pd.DataFrame({"last_score": [np.nan, np.nan]})
    assert "grade" in LastGradeRule().applicability(X)


def test_last_grade_ranks_missing_first():
    X = pd.DataFrame({"last_score": [80.0, np.nan, 30.0]})
    y = np.array([0, 1, 1])
    rule = LastGradeRule().fit(X, y)
    assert rule.tiebreak(X).tolist() == [20.0, 101.0, 70.0]
    assert rule.predict_proba(X)[:, 1][0] <= rule.predict_proba(X)[:, 1][2]


def test_context_falls_back_for_new_cohort():
    rows = pd.DataFrame(
        {
            "unit_id": ["s1-2021", "s1-2021", "s2-2021", "s2-2021"],
            "cohort": ["2021"] * 4,
        }
    )
    model = ContextBaseline(prior_rows=0.0).fit(rows, np.array([1, 1, 0, 0]))
    new = pd.DataFrame(
        {"unit_id": ["s1-2022", "s2-2022", "s3-2022"], "cohort": ["2022"] * 3}
    )
    assert model.predict_proba(new)[:, 1].tolist() == [1.0, 0.0, 0.5]


def test_abc_prefers_learner_failed_grades():
    X = pd.DataFrame(
        {
            "absence_share": [0.05, 0.05],
            "assessments_failed": [0.0, 0.0],
            "grades_failed_365d": [0.0, 2.0],
        }
    )
    assert AbcRule().rule_score(X).tolist() == [0.0, 1.0]


def test_last_grade_uses_term_means():
    X = pd.DataFrame(
        {
            "last_score": [np.nan, np.nan, np.nan],
            "grade_mean_term": [np.nan, 7.0, np.nan],
            "grade_mean_previous_term": [10.0, 4.0, np.nan],
        }
    )
    rule = LastGradeRule()
    assert rule.applicability(X) is None
    assert rule.tiebreak(X).tolist() == [0.0, 50.0, 101.0]


def test_empty_training_column_named():
    all_rows = pd.DataFrame(
        {
            "grade_mean_term": [np.nan, np.nan, np.nan],
            "grade_mean_previous_term": [np.nan, np.nan, 7.5],
        }
    )
    train = all_rows.iloc[:2]
    assert LastGradeRule().applicability(train, all_rows) == (
        "not applicable: no training row has grade data "
        "(grade_mean_term, grade_mean_previous_term), "
        "though other rows of the source do"
    )
    assert LastGradeRule().applicability(train) == (
        "not applicable: the source has no grade data "
        "(grade_mean_term, grade_mean_previous_term)"
    )
