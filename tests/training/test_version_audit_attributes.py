"""The version audit records which of the policy's attributes a source lacks."""

import numpy as np
import pandas as pd

from fairness.policy import load_policy
from training.version_audit import EvaluationRows, audit_input


def _rows(learners: int) -> EvaluationRows:
    data = pd.DataFrame(
        {
            "learner_id": [f"L{i}" for i in range(learners)],
            "asof_date": pd.Timestamp("2024-10-01"),
            "asof_offset_days": 61,
        }
    )
    scores = np.linspace(0, 1, learners)
    return EvaluationRows(data, np.zeros(learners, dtype=int), scores, "test rows")


def test_mapped_attributes_record_policy_gaps():
    learners = pd.DataFrame(
        {"learner_id": [f"L{i}" for i in range(20)], "gender": ["f", "m"] * 10}
    )
    policy = load_policy()
    prepared = audit_input(
        _rows(20), learners, policy, top_share=0.1, attributes=["gender"]
    )
    assert prepared.present == ["gender"]
    lacking = [a for a in policy.sensitive_attributes if a != "gender"]
    assert sorted(prepared.absent) == sorted(lacking)


def test_mapped_attributes_leave_out_present_policy_attribute():
    learners = pd.DataFrame(
        {
            "learner_id": [f"L{i}" for i in range(20)],
            "gender": ["f", "m"] * 10,
            "mother_tongue": ["finnish"] * 20,
        }
    )
    prepared = audit_input(
        _rows(20), learners, load_policy(), top_share=0.1, attributes=["gender"]
    )
    assert "mother_tongue" not in prepared.absent
    assert "mother_tongue" not in prepared.present
