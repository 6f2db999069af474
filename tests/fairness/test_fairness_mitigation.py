import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from fairness.explain import explanation_overview
from fairness.mitigation import compare_mitigations
from models.reason_text import unnamed_features
from models.spec import FeatureSpec


def data(n: int = 4000, seed: int = 0):
    """Scores that miss more dropouts in group F than in group M."""
    rng = np.random.default_rng(seed)
    gender = pd.Series(rng.choice(["F", "M"], n))
    X = pd.DataFrame(
        {
            "mean_score": rng.normal(60, 15, n),
            "attr_gender": pd.Categorical(gender),
            "attr_module": pd.Categorical(rng.choice(["AAA", "BBB"], n)),
        }
    )
    y = (rng.random(n) < 0.25).astype(int)
    noise = rng.normal(0, 1, n)
    scores = 1 / (1 + np.exp(-(2.0 * y * (gender == "M") + noise - 1.5)))
    return X, y, scores.to_numpy(), gender, (np.arange(n) // 2).astype(str)


def run(seed: int = 0, gender=None):
    X, y, scores, sex, learners = data()
    return compare_mitigations(
        X,
        y,
        scores,
        sex if gender is None else gender,
        attribute="gender",
        learners=learners,
        top_share=0.1,
        seed=seed,
        max_rows=1500,
    )


def method(result, name):
    return next(m for m in result.methods if m.name.startswith(name))


def test_methods_compared():
    result = run()
    names = [m.name for m in result.methods]
    assert names[0] == "unmitigated model"
    assert any(n.startswith("ThresholdOptimizer") for n in names)
    assert any(n.startswith("ExponentiatedGradient") for n in names)


def test_threshold_optimizer_narrows_gap():
    result = run()
    assert (
        method(result, "Threshold").recall_ratio
        > method(result, "unmitigated").recall_ratio
    )


def test_ranked_methods_at_k():
    result = run()
    for name in ("unmitigated", "logistic", "ExponentiatedGradient"):
        assert method(result, name).selection_rate == pytest.approx(0.1, abs=0.001)
        assert method(result, name).precision_at_k is not None
    assert method(result, "Threshold").precision_at_k is None


def test_halves_disjoint_by_learner():
    result = run()
    assert result.fit_rows + result.eval_rows == 4000


def test_mitigation_seeded():
    assert run(seed=3).to_dict() == run(seed=3).to_dict()


def test_single_class_group_falls_back():
    X, y, scores, gender, learners = data()
    gender = gender.copy()
    # Group "X" has no dropouts, so neither method can fit it.
    negatives = np.flatnonzero(y == 0)[:200]
    gender.iloc[negatives] = "X"
    result = compare_mitigations(
        X,
        y,
        scores,
        gender,
        attribute="gender",
        learners=learners,
        top_share=0.1,
        seed=0,
        max_rows=1500,
    )
    assert len(result.fallbacks) == 1
    assert "gender = X" in result.fallbacks[0]
    assert method(result, "Threshold").recall_by_group["X"] is None


def test_skipped_without_attribute():
    X, y, scores, _, learners = data()
    result = compare_mitigations(
        X, y, scores, None, attribute=None, learners=learners, top_share=0.1
    )
    assert result.methods == []
    assert "none of the policy's sensitive attributes" in result.skipped_reason


def test_explanations_add_up():
    X, y, _, _, _ = data(1000)
    spec = FeatureSpec.from_frame(X)
    model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(spec.conform(X), y)
    overview = explanation_overview(model, spec, X, sample=300)
    assert overview.additivity_max_error < 1e-6
    assert overview.shap_agreement_max_error < 1e-6
    values = [item["mean_abs_contribution"] for item in overview.importance]
    assert values == sorted(values, reverse=True)
    assert len(overview.plots) == 3
    assert overview.unit == "log-odds"


def test_explanation_examples_hide_sensitive():
    X, y, _, _, _ = data(1000)
    spec = FeatureSpec.from_frame(X)
    model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(spec.conform(X), y)
    overview = explanation_overview(model, spec, X, sample=300)
    named = {r["feature"] for e in overview.examples for r in e["reasons"]}
    assert named
    assert not named & unnamed_features()
