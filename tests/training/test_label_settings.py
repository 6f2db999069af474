"""Label settings of a run, and how two versions' settings are compared."""

from features.labels import LabelRule
from training.label_settings import (
    label_change_problem,
    label_differences,
    label_settings,
    label_settings_tag,
    read_label_settings,
)


def test_records_settings_follow_rule():
    settings = label_settings(
        "records", LabelRule(window_days=183), 30, has_history=True
    )
    assert settings == {
        "source": "records",
        "label_window_days": 183,
        "transfer_gap_days": 120,
        "compulsory_education_until_age": 18,
    }


def test_table_settings_name_outcome():
    settings = label_settings(
        "table", None, None, has_history=False, outcome="adverse when G3 < 10"
    )
    assert settings == {
        "source": "table",
        "label_window_days": None,
        "outcome": "adverse when G3 < 10",
    }


def test_tag_round_trip():
    settings = label_settings("oulad", None, 60, has_history=False)
    tags = {"label_settings": label_settings_tag(settings)}
    assert read_label_settings(tags) == settings


def test_invalid_tag_is_unknown():
    assert read_label_settings({}) is None
    assert read_label_settings({"label_settings": "60"}) is None
    assert read_label_settings({"label_settings": "{not json"}) is None


def test_differences_name_both_values():
    champion = label_settings("records", LabelRule(), None, has_history=True)
    challenger = label_settings(
        "records", LabelRule(transfer_gap_days=0), None, has_history=True
    )
    assert label_differences(champion, challenger) == [
        "transfer gap: champion 120 days, challenger 0 days"
    ]
    assert label_differences(champion, champion) == []


def test_differences_across_sources():
    champion = label_settings("records", LabelRule(), None, has_history=True)
    challenger = label_settings("oulad", None, None, has_history=False)
    assert label_differences(champion, challenger) == [
        "source: champion records, challenger oulad",
        "label window: champion 365 days, challenger until the unit ends",
        "transfer gap: champion 120 days, challenger not set",
        "compulsory education until age: champion 18, challenger not set",
    ]


def test_problem_for_unknown_versions():
    settings = label_settings("oulad", None, None, has_history=False)
    assert label_change_problem("3", settings, settings) is None
    unknown_champion = label_change_problem("3", None, settings)
    assert unknown_champion is not None
    assert unknown_champion.startswith("champion version 3 has no recorded label")
    unknown_challenger = label_change_problem("3", settings, None)
    assert unknown_challenger is not None
    assert unknown_challenger.startswith("the challenger has no recorded label")
