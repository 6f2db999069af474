import math

import numpy as np
import pandas as pd
import pytest

from fairness.audit import UNKNOWN_GROUP, audit_groups
from fairness.comparison import BootstrapSettings


def learner_frame(seed: int = 0) -> pd.DataFrame:
    """600 learners with 2 rows each; group "b" has half the recall of group "a"."""
    rng = np.random.default_rng(seed)
    learners = np.repeat(np.arange(600), 2)
    gender = np.where(learners % 3 == 0, "b", "a")
    band = np.where(learners % 2 == 0, "low", "high").astype(object)
    band[learners % 50 == 1] = None
    y = rng.random(len(learners)) < 0.3
    selected = np.where(
        gender == "a", rng.random(len(y)) < 0.6, rng.random(len(y)) < 0.3
    )
    selected = selected & y | (~y & (rng.random(len(y)) < 0.05))
    return pd.DataFrame(
        {
            "learner": learners.astype(str),
            "gender": gender,
            "band": band,
            "y_true": y.astype(int),
            "selected": selected.astype(int),
            "score": np.clip(0.3 + rng.normal(0, 0.1, len(y)), 0, 1),
        }
    )


def audit_of(frame: pd.DataFrame, **kwargs):
    return audit_groups(
        frame,
        sensitive_features=["gender", "band"],
        learner="learner",
        bootstrap=BootstrapSettings(replicates=100, seed=1),
        **kwargs,
    )


def comparison(audit, attribute, group, metric) -> pd.Series:
    table = audit.comparisons[attribute]
    match = table[(table["group"] == group) & (table["metric"] == metric)]
    assert len(match) == 1
    return match.iloc[0]


def test_suppression_counts_learners():
    # 12 rows but only 4 learners: too few at the default minimum of 10.
    frame = learner_frame()
    extra = pd.DataFrame(
        {
            "learner": ["x1", "x2", "x3", "x4"] * 3,
            "gender": ["c"] * 12,
            "band": ["low"] * 12,
            "y_true": [0, 1] * 6,
            "selected": [0, 1] * 6,
            "score": [0.5] * 12,
        }
    )
    audit = audit_of(pd.concat([frame, extra], ignore_index=True))
    assert "c" not in set(audit.tables["gender"]["group"])
    assert audit.suppressed["gender"].rows == 12
    assert audit.suppressed["gender"].learners == 4


def test_learners_column():
    audit = audit_of(learner_frame())
    row = audit.tables["gender"].set_index("group").loc["a"]
    assert row["learners"] == 400
    assert row["n"] == 800


def test_intersection_groups():
    audit = audit_of(learner_frame(), intersections=[("gender", "band")])
    groups = set(audit.tables["gender x band"]["group"])
    assert "a & low" in groups
    # 12 learners have no band: 8 in a and 4 in b, both below 10 learners.
    assert f"a & {UNKNOWN_GROUP}" not in groups
    assert audit.suppressed["gender x band"].groups == 2
    assert audit.suppressed["gender x band"].learners == 12
    assert UNKNOWN_GROUP in set(audit.tables["band"]["group"])


def test_intersection_rejects_unknown_attribute():
    with pytest.raises(ValueError, match="not among the audited attributes"):
        audit_of(learner_frame(), intersections=[("gender", "school")])


def test_reference_is_largest():
    audit = audit_of(learner_frame())
    assert audit.references["gender"][0] == "a"
    assert audit.references["band"][0] in {"low", "high"}


def test_reference_from_policy():
    audit = audit_of(learner_frame(), reference_groups={"gender": "b"})
    assert audit.references["gender"][0] == "b"
    assert set(audit.comparisons["gender"]["group"]) == {"a"}


def test_recall_ratio_interval():
    audit = audit_of(learner_frame())
    row = comparison(audit, "gender", "b", "recall")
    assert row["ratio"] == pytest.approx(row["value"] / row["reference_value"])
    assert row["ratio_low"] < row["ratio"] < row["ratio_high"]
    assert row["ratio_high"] < 0.8


def test_difference_interval_contains_estimate():
    audit = audit_of(learner_frame())
    row = comparison(audit, "gender", "b", "selection_rate")
    assert row["difference_low"] <= row["difference"] <= row["difference_high"]


def test_bootstrap_seeded():
    first = audit_of(learner_frame()).comparisons["gender"]
    second = audit_of(learner_frame()).comparisons["gender"]
    pd.testing.assert_frame_equal(first, second)


def test_bootstrap_seed_changes_interval():
    frame = learner_frame()
    one = audit_groups(
        frame,
        sensitive_features=["gender"],
        learner="learner",
        bootstrap=BootstrapSettings(replicates=100, seed=1),
    )
    two = audit_groups(
        frame,
        sensitive_features=["gender"],
        learner="learner",
        bootstrap=BootstrapSettings(replicates=100, seed=2),
    )
    low_one = comparison(one, "gender", "b", "recall")["ratio_low"]
    low_two = comparison(two, "gender", "b", "recall")["ratio_low"]
    assert low_one != low_two


def test_ratio_undefined_reference_zero():
    frame = learner_frame()
    frame.loc[frame["gender"] == "a", "selected"] = 0
    audit = audit_of(frame)
    row = comparison(audit, "gender", "b", "selection_rate")
    assert math.isnan(row["ratio"])
    assert "reference group's value is 0" in row["ratio_reason"]


def test_comparison_undefined_without_positives():
    frame = learner_frame()
    frame.loc[frame["gender"] == "b", "y_true"] = 0
    audit = audit_of(frame)
    row = comparison(audit, "gender", "b", "recall")
    assert math.isnan(row["difference"])
    assert "no denominator" in row["difference_reason"]


def test_fnr_complements_recall():
    audit = audit_of(learner_frame())
    row = audit.tables["gender"].set_index("group").loc["a"]
    assert row["false_negative_rate"] == pytest.approx(1 - row["recall"])


def test_roc_auc_undefined_one_class():
    frame = learner_frame()
    frame.loc[frame["gender"] == "b", "y_true"] = 1
    audit = audit_of(frame)
    row = audit.tables["gender"].set_index("group").loc["b"]
    assert math.isnan(row["roc_auc"])
    assert "only one class" in row["roc_auc_reason"]


def test_calibration_gap():
    audit = audit_of(learner_frame())
    row = audit.tables["gender"].set_index("group").loc["a"]
    assert row["calibration_gap"] == pytest.approx(
        row["prevalence"] - row["mean_score"]
    )


def test_no_reference_without_known_group():
    frame = learner_frame()
    frame["band"] = None
    audit = audit_of(frame)
    assert audit.references["band"][0] is None
    assert audit.comparisons["band"].empty


def test_rates_match_fairlearn():
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    frame = learner_frame()
    audit = audit_of(frame)
    reference = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "recall": true_positive_rate,
            "false_negative_rate": false_negative_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=frame["y_true"],
        y_pred=frame["selected"],
        sensitive_features=frame["gender"],
    ).by_group
    table = audit.tables["gender"].set_index("group")
    for metric in reference.columns:
        for group in ("a", "b"):
            assert table.loc[group, metric] == pytest.approx(
                reference.loc[group, metric]
            )


@pytest.mark.parametrize(
    "missing",
    [None, np.nan, pd.NA, "", "  "],
    ids=["none", "nan", "pd-na", "empty", "blank"],
)
def test_missing_kinds_become_unknown(missing):
    frame = learner_frame()
    frame["band"] = frame["band"].astype(object)
    frame.loc[frame["learner"].astype(int) < 30, "band"] = missing
    audit = audit_of(frame)
    groups = set(audit.tables["band"]["group"])
    assert UNKNOWN_GROUP in groups
    assert groups - {UNKNOWN_GROUP} == {"low", "high"}


def test_numeric_missing_becomes_unknown():
    frame = learner_frame()
    frame["band"] = np.where(frame["learner"].astype(int) < 30, np.nan, 1.0)
    audit = audit_of(frame)
    assert set(audit.tables["band"]["group"]) == {"1.0", UNKNOWN_GROUP}
