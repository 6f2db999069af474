import pandas as pd
import pytest

from features.labels import (
    LabelRule,
    dropout_events,
    first_dropout_dates,
    label_dropouts,
)

ASOF = pd.Timestamp("2024-10-01")
RULE = LabelRule(window_days=365, transfer_gap_days=120)


def history(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    """Build states for learner L from (study right, level, date, state) rows."""
    return pd.DataFrame(
        {
            "learner_id": "L",
            "study_right_id": [r[0] for r in rows],
            "level": [r[1] for r in rows],
            "state_from": pd.to_datetime([r[2] for r in rows]),
            "state": [r[3] for r in rows],
        }
    )


def label(
    states: pd.DataFrame,
    born: str = "2008-05-01",
    rule: LabelRule = RULE,
    asof: pd.Timestamp = ASOF,
) -> int:
    learners = pd.DataFrame({"learner_id": ["L"], "birth_date": [pd.Timestamp(born)]})
    events = dropout_events(states, learners, rule)
    keys = pd.DataFrame({"learner_id": ["L"], "asof_date": [asof]})
    return int(label_dropouts(keys, events, rule).iloc[0])


def test_school_change_is_not_dropout():
    states = history(
        ("a", "basic", "2018-08-01", "present"),
        ("a", "basic", "2025-01-10", "resigned"),
        ("b", "basic", "2025-01-20", "present"),
    )
    assert label(states) == 0


def test_resigned_without_new_right():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "resigned"),
    )
    assert label(states) == 1


def test_considered_resigned_without_new_right():
    states = history(
        ("a", "general_upper_secondary", "2023-08-01", "present"),
        ("a", "general_upper_secondary", "2025-03-01", "considered_resigned"),
    )
    assert label(states) == 1


def test_new_right_after_gap_is_dropout():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "resigned"),
        ("b", "vocational", "2025-08-15", "present"),
    )
    assert label(states) == 1


def test_parallel_right_is_not_dropout():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "resigned"),
        ("b", "general_upper_secondary", "2023-08-01", "present"),
    )
    assert label(states) == 0


def test_basic_without_upper_secondary():
    states = history(
        ("a", "basic", "2015-08-01", "present"),
        ("a", "basic", "2025-06-01", "graduated"),
    )
    assert label(states) == 1


def test_basic_then_vocational():
    states = history(
        ("a", "basic", "2015-08-01", "present"),
        ("a", "basic", "2025-06-01", "graduated"),
        ("b", "vocational", "2025-08-12", "present"),
    )
    assert label(states) == 0


def test_basic_then_another_basic_right():
    states = history(
        ("a", "basic", "2015-08-01", "present"),
        ("a", "basic", "2025-06-01", "graduated"),
        ("b", "basic", "2025-08-12", "present"),
    )
    assert label(states) == 1


def test_basic_graduate_past_compulsory_age():
    states = history(
        ("a", "basic", "2015-08-01", "present"),
        ("a", "basic", "2025-06-01", "graduated"),
    )
    assert label(states, born="2006-01-01") == 0


def test_upper_secondary_graduation_is_not_dropout():
    states = history(
        ("a", "general_upper_secondary", "2022-08-01", "present"),
        ("a", "general_upper_secondary", "2025-06-01", "graduated"),
    )
    assert label(states) == 0


def test_leave_and_return_is_not_dropout():
    states = history(
        ("a", "basic", "2018-08-01", "present"),
        ("a", "basic", "2024-12-20", "on_leave"),
        ("a", "basic", "2025-01-06", "present"),
    )
    assert label(states) == 0


def test_temporarily_interrupted_is_not_dropout():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "temporarily_interrupted"),
    )
    assert label(states) == 0


def test_reopened_right_is_not_dropout():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "considered_resigned"),
        ("a", "vocational", "2025-02-01", "present"),
    )
    assert label(states) == 0


@pytest.mark.parametrize(("window", "expected"), [(365, 1), (182, 0)])
def test_window_length(window, expected):
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-05-01", "resigned"),
    )
    rule = LabelRule(window_days=window, transfer_gap_days=120)
    assert label(states, rule=rule) == expected


def test_dropout_before_asof_not_labelled():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2024-09-01", "resigned"),
    )
    assert label(states) == 0


@pytest.mark.parametrize(("gap", "expected"), [(120, 0), (30, 1)])
def test_gap_length(gap, expected):
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "resigned"),
        ("b", "vocational", "2025-03-01", "present"),
    )
    rule = LabelRule(window_days=365, transfer_gap_days=gap)
    assert label(states, rule=rule) == expected


def label_by(
    states: pd.DataFrame, observed_until: str, asof: pd.Timestamp = ASOF
) -> object:
    """Label learner L at ``asof`` with the data ending on ``observed_until``."""
    learners = pd.DataFrame(
        {"learner_id": ["L"], "birth_date": [pd.Timestamp("2008-05-01")]}
    )
    events = dropout_events(states, learners, RULE)
    keys = pd.DataFrame({"learner_id": ["L"], "asof_date": [asof]})
    labels = label_dropouts(keys, events, RULE, pd.Timestamp(observed_until))
    return labels.iloc[0]


# As of 2024-10-01 the 365-day window ends on 2025-10-01 and the 120-day gap
# after it on 2026-01-29, the first data end at which the label is known.
JUDGED_ON = "2026-01-29"


def test_window_past_data_end_is_unknown():
    states = history(("a", "vocational", "2023-08-01", "present"))
    assert pd.isna(label_by(states, "2026-01-28"))


def test_window_ending_at_limit_is_known():
    states = history(("a", "vocational", "2023-08-01", "present"))
    assert label_by(states, JUDGED_ON) == 0


def test_dropout_known_at_limit():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-10-01", "resigned"),
    )
    assert label_by(states, JUDGED_ON) == 1


def test_seen_dropout_past_data_end_is_unknown():
    # The dropout and its gap are both observed, but the window is not. Keeping
    # the row as 1 would over-represent dropouts among such rows.
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-01-10", "resigned"),
    )
    assert pd.isna(label_by(states, "2025-07-31"))


def test_end_near_data_end_is_unknown():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-05-01", "resigned"),
    )
    assert pd.isna(label_by(states, "2025-07-31"))


def test_labels_known_for_earlier_asof_only():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-03-01", "resigned"),
    )
    learners = pd.DataFrame(
        {"learner_id": ["L"], "birth_date": [pd.Timestamp("2008-05-01")]}
    )
    events = dropout_events(states, learners, RULE)
    keys = pd.DataFrame(
        {
            "learner_id": ["L", "L", "L"],
            "asof_date": pd.to_datetime(["2023-10-01", "2024-10-01", "2024-10-02"]),
        },
        index=[5, 9, 2],
    )
    labels = label_dropouts(keys, events, RULE, pd.Timestamp(JUDGED_ON))
    assert list(labels.index) == [5, 9, 2]
    assert labels.loc[5] == 0
    assert labels.loc[9] == 1
    assert pd.isna(labels.loc[2])


def test_without_data_end_every_label_known():
    states = history(("a", "vocational", "2023-08-01", "present"))
    assert label(states) == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window_days": 0}, "invalid label window 0 days"),
        ({"window_days": -5}, "invalid label window -5 days"),
        ({"transfer_gap_days": -1}, "invalid transfer gap -1 days"),
    ],
)
def test_label_rule_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        LabelRule(**settings)


def test_run_rejects_negative_window():
    from typer.testing import CliRunner

    from ajoissa.cli import app

    result = CliRunner().invoke(
        app, ["run", "--source", "records", "--label-window-days", "-5"]
    )
    assert result.exit_code == 2
    assert "--label-window-days" in result.output


def test_first_dropout_date_in_window():
    states = history(
        ("a", "vocational", "2023-08-01", "present"),
        ("a", "vocational", "2025-03-01", "resigned"),
    )
    learners = pd.DataFrame(
        {"learner_id": ["L"], "birth_date": [pd.Timestamp("2008-05-01")]}
    )
    events = dropout_events(states, learners, RULE)
    keys = pd.DataFrame(
        {
            "learner_id": ["L", "L"],
            "asof_date": [ASOF, pd.Timestamp("2025-04-01")],
        },
        index=[7, 3],
    )
    dates = first_dropout_dates(keys, events, RULE)
    assert list(dates.index) == [7, 3]
    assert dates.loc[7] == pd.Timestamp("2025-03-01")
    assert pd.isna(dates.loc[3])
