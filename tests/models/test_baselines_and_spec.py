import numpy as np
import pandas as pd
import pytest

from models.baselines import LogisticBaseline, RuleBaseline
from models.risk import fit_risk_model, predict_risk
from models.spec import FeatureSpec


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 600
    missed = rng.integers(0, 4, n)
    failed = rng.integers(0, 3, n)
    X = pd.DataFrame(
        {
            "assessments_missed": missed.astype(float),
            "assessments_failed": failed.astype(float),
            "mean_score": rng.normal(60, 15, n),
            "attr_module": pd.Categorical(rng.choice(["AAA", "BBB", "CCC"], n)),
        }
    )
    logit = -2 + 0.8 * missed + 0.5 * failed
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_rule_rates_increase_with_count(frame):
    X, y = frame
    rule = RuleBaseline().fit(X, y)
    rates = rule.rates_.to_numpy()
    assert rates[-1] > rates[0]


def test_rule_count_above_training_uses_max(frame):
    X, y = frame
    rule = RuleBaseline().fit(X, y)
    high = X.head(1).assign(assessments_missed=50.0)
    assert rule.predict_proba(high)[0, 1] == pytest.approx(rule.rates_.iloc[-1])


def test_rule_needs_its_columns(frame):
    X, y = frame
    with pytest.raises(KeyError, match="assessments_failed"):
        RuleBaseline().fit(X.drop(columns="assessments_failed"), y)


def test_rule_applicability(frame):
    X, _ = frame
    rule = RuleBaseline()
    assert rule.applicability(X) is None
    silent = X.assign(assessments_missed=0.0, assessments_failed=np.nan)
    assert "ranks no one" in rule.applicability(silent)
    assert "no assessment data" in rule.applicability(
        X.drop(columns="assessments_missed")
    )


def test_logistic_ignores_unseen_category(frame):
    X, y = frame
    model = LogisticBaseline(["attr_module"]).fit(X, y)
    unseen = X.head(3).astype({"attr_module": object}).assign(attr_module="ZZZ")
    probabilities = model.predict_proba(unseen)[:, 1]
    assert np.isfinite(probabilities).all()


def test_spec_keeps_only_seen_categories(frame):
    X, _ = frame
    subset = X[X["attr_module"] != "CCC"]
    spec = FeatureSpec.from_frame(subset)
    assert spec.categorical["attr_module"] == ["AAA", "BBB"]


def test_spec_round_trip(frame):
    X, _ = frame
    spec = FeatureSpec.from_frame(X)
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_scores_same_with_text_and_reordered_columns(frame):
    X, y = frame
    model, spec = fit_risk_model(X, y, {"n_estimators": 20})
    reordered = X[list(reversed(X.columns))].astype({"attr_module": str})
    assert np.array_equal(
        predict_risk(model, spec, X), predict_risk(model, spec, reordered)
    )


def test_unseen_category_scores_as_missing(frame):
    X, y = frame
    model, spec = fit_risk_model(X, y, {"n_estimators": 20})
    unseen = X.head(5).astype({"attr_module": str}).assign(attr_module="ZZZ")
    missing = X.head(5).astype({"attr_module": object}).assign(attr_module=None)
    assert np.array_equal(
        predict_risk(model, spec, unseen), predict_risk(model, spec, missing)
    )


def test_reasons_skip_context_features():
    from models.reasons import reason_codes

    X = pd.DataFrame({"days_since_unit_start": [30.0], "mean_score": [40.0]})
    values = np.array([[2.0, -0.5]])
    reasons = reason_codes(values, X, list(X.columns), top_n=2)
    assert [r["feature"] for r in reasons[0]] == ["mean_score"]
    assert reasons[0][0]["direction"] == "lowers"


@pytest.mark.parametrize("hidden", ["attr_gender", "attr_mother_tongue", "gender"])
def test_reasons_never_name_sensitive(hidden):
    from models.reasons import reason_codes

    X = pd.DataFrame({hidden: ["F"], "mean_score": [40.0]})
    values = np.array([[3.0, -0.5]])
    reasons = reason_codes(values, X, list(X.columns), top_n=2)
    assert [r["feature"] for r in reasons[0]] == ["mean_score"]


def test_small_table_still_splits():
    from models.risk import STRONG_REGULARISATION, fit_risk_model, predict_risk

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"mean_score": rng.normal(60, 15, 300)})
    y = (X["mean_score"] + rng.normal(0, 10, 300) < 55).to_numpy().astype(int)
    model, spec = fit_risk_model(X, y, dict(STRONG_REGULARISATION))
    assert np.unique(predict_risk(model, spec, X)).size > 1
