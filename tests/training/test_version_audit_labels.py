"""The version audit relabels rows with the label settings its run recorded."""

import pytest

from features.labels import LabelRule
from training.version_audit import label_definition, recorded_label_settings


@pytest.mark.parametrize(
    ("params", "rule", "window"),
    [
        ({}, None, None),
        ({"label_window_days": "None"}, None, None),
        ({"label_window_days": "90"}, None, 90),
        (
            {
                "label_window_days": "None",
                "label_rule_window_days": "180",
                "label_rule_transfer_gap_days": "60",
                "label_rule_compulsory_education_until_age": "18",
            },
            LabelRule(window_days=180, transfer_gap_days=60),
            None,
        ),
        # Runs before the rule had its own names: the rule's window overwrote
        # label_window_days.
        (
            {
                "label_window_days": "200",
                "label_transfer_gap_days": "30",
                "label_compulsory_education_until_age": "17",
            },
            LabelRule(
                window_days=200, transfer_gap_days=30, compulsory_education_until_age=17
            ),
            None,
        ),
    ],
)
def test_recorded_label_settings(params, rule, window):
    assert recorded_label_settings(params) == (rule, window)


def test_label_definition_names_the_settings():
    rule = LabelRule(window_days=180, transfer_gap_days=60)
    text = label_definition(rule, None, has_history=True)
    assert "within 180 days" in text
    assert "within 60 days" in text
    assert "within 90 days" in label_definition(None, 90, has_history=False)
    assert "before the unit ends" in label_definition(None, None, has_history=False)
