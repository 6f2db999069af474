import json
import math

import numpy as np
import pandas as pd
import pytest

from fairness.audit import UNKNOWN_GROUP, FairnessAudit, audit_groups


def synthetic_frame() -> pd.DataFrame:
    """Four groups whose rates are worked out by hand in the tests below.

    a (10 rows): 4 positives, 3 of them selected, 1 of 6 negatives selected.
    b (10 rows): 2 positives, 1 of them selected, 1 of 8 negatives selected.
    c (3 rows): below the minimum size of 10, so suppressed.
    missing (10 rows): no positives, 1 of 10 negatives selected.
    """
    parts = [
        ("a", [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]),
        ("b", [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ("c", [1, 0, 0], [1, 1, 1]),
        (None, [0] * 10, [1] + [0] * 9),
    ]
    rows = []
    for group, labels, selections in parts:
        for label, selection in zip(labels, selections, strict=True):
            rows.append(
                {
                    "group": group,
                    "y_true": label,
                    "selected": selection,
                    "score": 0.9 if selection else 0.1,
                }
            )
    return pd.DataFrame(rows)


def group_row(audit: FairnessAudit, attribute: str, group: str) -> pd.Series:
    table = audit.tables[attribute]
    matches = table[table["group"] == group]
    assert len(matches) == 1, f"expected one row for group {group!r}"
    return matches.iloc[0]


@pytest.fixture
def audit() -> FairnessAudit:
    return audit_groups(synthetic_frame(), sensitive_features=["group"])


def test_rates_group_a(audit):
    row = group_row(audit, "group", "a")
    assert row["n"] == 10
    assert row["prevalence"] == pytest.approx(0.4)
    assert row["selection_rate"] == pytest.approx(0.4)
    assert row["recall"] == pytest.approx(0.75)
    assert row["false_positive_rate"] == pytest.approx(1 / 6)
    assert row["precision"] == pytest.approx(0.75)


def test_rates_group_b(audit):
    row = group_row(audit, "group", "b")
    assert row["n"] == 10
    assert row["prevalence"] == pytest.approx(0.2)
    assert row["selection_rate"] == pytest.approx(0.2)
    assert row["recall"] == pytest.approx(0.5)
    assert row["false_positive_rate"] == pytest.approx(1 / 8)
    assert row["precision"] == pytest.approx(0.5)


def test_mean_score_per_group(audit):
    row = group_row(audit, "group", "a")
    assert row["mean_score"] == pytest.approx(0.4 * 0.9 + 0.6 * 0.1)


def test_small_group_suppressed(audit):
    table = audit.tables["group"]
    assert "c" not in set(table["group"])
    assert audit.suppressed["group"].groups == 1
    assert audit.suppressed["group"].rows == 3
    assert audit.total_rows == 33


def test_missing_becomes_unknown(audit):
    table = audit.tables["group"]
    assert list(table["group"]) == ["a", "b", UNKNOWN_GROUP]
    row = group_row(audit, "group", UNKNOWN_GROUP)
    assert row["n"] == 10
    assert row["selection_rate"] == pytest.approx(0.1)


def test_categorical_missing_becomes_unknown():
    frame = synthetic_frame()
    frame["group"] = frame["group"].astype("category")
    audit = audit_groups(frame, sensitive_features=["group"])
    assert UNKNOWN_GROUP in set(audit.tables["group"]["group"])


def test_existing_unknown_merged():
    frame = synthetic_frame()
    frame.loc[frame["group"] == "c", "group"] = "unknown"
    audit = audit_groups(frame, sensitive_features=["group"])
    assert group_row(audit, "group", UNKNOWN_GROUP)["n"] == 13
    assert audit.suppressed["group"].groups == 0


def test_recall_undefined_not_zero(audit):
    row = group_row(audit, "group", UNKNOWN_GROUP)
    assert math.isnan(row["recall"])
    assert row["recall"] != 0
    assert "no denominator" in row["recall_reason"]
    assert row["precision"] == 0.0
    assert pd.isna(row["precision_reason"])


def test_fpr_undefined_all_positive():
    frame = pd.DataFrame(
        {
            "group": ["p"] * 10 + ["q"] * 10,
            "y_true": [1] * 10 + [0, 1] * 5,
            "selected": [1, 0] * 10,
            "score": np.linspace(0, 1, 20),
        }
    )
    audit = audit_groups(frame, sensitive_features=["group"])
    row = group_row(audit, "group", "p")
    assert math.isnan(row["false_positive_rate"])
    assert "every row" in row["false_positive_rate_reason"]


def test_precision_undefined_none_selected():
    frame = synthetic_frame()
    frame.loc[frame["group"] == "b", "selected"] = 0
    audit = audit_groups(frame, sensitive_features=["group"])
    row = group_row(audit, "group", "b")
    assert math.isnan(row["precision"])
    assert "selected" in row["precision_reason"]
    assert row["selection_rate"] == 0.0


def test_disparity_selection_rate(audit):
    disparity = audit.disparities["group"].loc["selection_rate"]
    # Shown groups a, b, unknown: 0.4, 0.2, 0.1.
    assert disparity["difference"] == pytest.approx(0.3)
    assert disparity["ratio"] == pytest.approx(0.25)
    assert disparity["groups_compared"] == 3
    assert pd.isna(disparity["difference_reason"])


def test_disparity_recall_skips_undefined(audit):
    disparity = audit.disparities["group"].loc["recall"]
    # Recall is 0.75 in a, 0.5 in b and undefined in unknown.
    assert disparity["difference"] == pytest.approx(0.25)
    assert disparity["ratio"] == pytest.approx(0.5 / 0.75)
    assert disparity["groups_compared"] == 2


def test_disparity_fpr(audit):
    disparity = audit.disparities["group"].loc["false_positive_rate"]
    # 1/6 in a, 1/8 in b, 1/10 in unknown.
    assert disparity["difference"] == pytest.approx(1 / 6 - 1 / 10)
    assert disparity["ratio"] == pytest.approx(0.1 / (1 / 6))


def test_disparity_excludes_suppressed():
    frame = synthetic_frame()
    # c selects every row, so it would dominate the selection-rate maximum.
    with_c = audit_groups(frame, sensitive_features=["group"], min_group_size=3)
    without_c = audit_groups(frame, sensitive_features=["group"])
    with_c_difference = with_c.disparities["group"].loc["selection_rate", "difference"]
    without_c_difference = without_c.disparities["group"].loc[
        "selection_rate", "difference"
    ]
    assert with_c_difference == pytest.approx(0.9)
    assert without_c_difference == pytest.approx(0.3)


def test_shuffled_index_same_rates():
    frame = synthetic_frame()
    frame.index = np.arange(len(frame))[::-1] * 7
    audit = audit_groups(frame, sensitive_features=["group"])
    row = group_row(audit, "group", "a")
    assert row["recall"] == pytest.approx(0.75)
    assert row["false_positive_rate"] == pytest.approx(1 / 6)


def test_disparity_single_group_undefined():
    frame = synthetic_frame()
    frame["school"] = "one"
    audit = audit_groups(frame, sensitive_features=["school"])
    disparity = audit.disparities["school"].loc["selection_rate"]
    assert math.isnan(disparity["difference"])
    assert math.isnan(disparity["ratio"])
    assert "fewer than two" in disparity["ratio_reason"]


def test_ratio_undefined_all_zero():
    frame = synthetic_frame()
    frame["selected"] = 0
    audit = audit_groups(frame, sensitive_features=["group"])
    disparity = audit.disparities["group"].loc["selection_rate"]
    assert disparity["difference"] == 0.0
    assert math.isnan(disparity["ratio"])
    assert "0/0" in disparity["ratio_reason"]


def test_all_groups_suppressed():
    audit = audit_groups(
        synthetic_frame(), sensitive_features=["group"], min_group_size=50
    )
    assert len(audit.tables["group"]) == 0
    assert audit.suppressed["group"].groups == 4
    assert audit.suppressed["group"].rows == 33
    reason = audit.disparities["group"].loc["recall", "difference_reason"]
    assert "no group has at least 50 learners" in reason


def test_overall_row(audit):
    overall = audit.overall.iloc[0]
    assert overall["n"] == 33
    # 7 positives, 5 of them selected.
    assert overall["recall"] == pytest.approx(5 / 7)
    assert overall["selection_rate"] == pytest.approx(10 / 33)


def test_two_attributes():
    frame = synthetic_frame()
    frame["site"] = ["north", "south"] * 16 + ["north"]
    audit = audit_groups(frame, sensitive_features=["group", "site"])
    assert list(audit.tables) == ["group", "site"]
    assert audit.tables["site"]["n"].sum() == 33


def test_bool_columns_accepted():
    frame = synthetic_frame()
    frame["selected"] = frame["selected"].astype(bool)
    frame["y_true"] = frame["y_true"].astype(bool)
    audit = audit_groups(frame, sensitive_features=["group"])
    assert group_row(audit, "group", "a")["recall"] == pytest.approx(0.75)


def test_to_dict_json(audit):
    data = json.loads(json.dumps(audit.to_dict()))
    groups = {g["group"]: g for g in data["attributes"]["group"]["groups"]}
    assert data["total_rows"] == 33
    assert data["min_group_size"] == 10
    assert groups[UNKNOWN_GROUP]["recall"] is None
    assert "no denominator" in groups[UNKNOWN_GROUP]["recall_reason"]
    assert groups["a"]["recall"] == pytest.approx(0.75)
    assert groups["a"]["recall_reason"] is None
    assert data["attributes"]["group"]["suppressed"] == {
        "groups": 1,
        "rows": 3,
        "learners": 3,
    }


def test_to_dict_disparities(audit):
    data = audit.to_dict()
    recall = data["attributes"]["group"]["disparities"]["recall"]
    assert recall["difference"] == pytest.approx(0.25)
    assert recall["groups_compared"] == 2
    assert recall["ratio_reason"] is None


def test_rejects_missing_column():
    with pytest.raises(ValueError, match=r"no column \['gender'\]"):
        audit_groups(synthetic_frame(), sensitive_features=["gender"])


def test_rejects_non_binary_label():
    frame = synthetic_frame()
    frame.loc[0, "y_true"] = 2
    with pytest.raises(ValueError, match="'y_true' must be 0 or 1"):
        audit_groups(frame, sensitive_features=["group"])


def test_rejects_missing_selection():
    frame = synthetic_frame()
    frame["selected"] = frame["selected"].astype(float)
    frame.loc[0, "selected"] = np.nan
    with pytest.raises(ValueError, match="'selected' has 1 missing values"):
        audit_groups(frame, sensitive_features=["group"])


def test_rejects_text_score():
    frame = synthetic_frame()
    frame["score"] = frame["score"].astype(str)
    with pytest.raises(ValueError, match="must be numeric"):
        audit_groups(frame, sensitive_features=["group"])


def test_rejects_missing_score():
    frame = synthetic_frame()
    frame.loc[0, "score"] = np.nan
    with pytest.raises(ValueError, match="score every row"):
        audit_groups(frame, sensitive_features=["group"])


def test_rejects_zero_min_size():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        audit_groups(synthetic_frame(), sensitive_features=["group"], min_group_size=0)


def test_rejects_empty_frame():
    with pytest.raises(ValueError, match="no rows"):
        audit_groups(synthetic_frame().iloc[:0], sensitive_features=["group"])


def test_rejects_no_attributes():
    with pytest.raises(ValueError, match="sensitive_features is empty"):
        audit_groups(synthetic_frame(), sensitive_features=[])


def test_rejects_label_as_attribute():
    with pytest.raises(ValueError, match="also the label"):
        audit_groups(synthetic_frame(), sensitive_features=["y_true"])
