from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairness.audit import UNKNOWN_GROUP, audit_groups
from fairness.report import write_report
from sources.oulad import load_oulad

OULAD_DIR = Path(__file__).resolve().parents[2] / "ajoissa" / "data" / "oulad"
ATTRIBUTES = ["gender", "disability", "age_band", "deprivation_band"]


@pytest.fixture(scope="module")
def oulad_frame() -> pd.DataFrame:
    """One row per OULAD enrolment with its learner's attributes and a random score.

    The top 10 % of rows by score are selected, so rates differ between groups
    only by chance.
    """
    tables = load_oulad(OULAD_DIR).validated()
    frame = tables.enrolments.merge(
        tables.learners[["learner_id", *ATTRIBUTES]],
        on="learner_id",
        how="left",
        validate="many_to_one",
    )
    rng = np.random.default_rng(0)
    frame["score"] = rng.random(len(frame))
    frame["selected"] = (frame["score"] >= frame["score"].quantile(0.9)).astype(int)
    frame["y_true"] = (frame["end_reason"] == "withdrawn").astype(int)
    return frame


def test_oulad_audit(oulad_frame):
    audit = audit_groups(oulad_frame, sensitive_features=ATTRIBUTES)
    assert audit.total_rows == len(oulad_frame)
    for attribute in ATTRIBUTES:
        table = audit.tables[attribute]
        shown_rows = int(table["n"].sum())
        assert shown_rows + audit.suppressed[attribute].rows == len(oulad_frame)
        assert table["selection_rate"].between(0.05, 0.15).all()
    # OULAD leaves the deprivation (IMD) band blank for some learners.
    assert UNKNOWN_GROUP in set(audit.tables["deprivation_band"]["group"])


def test_oulad_suppression(oulad_frame):
    # The oldest age band, 55<=, has a few hundred enrolments in OULAD.
    oldest = int((oulad_frame["age_band"] == "55<=").sum())
    audit = audit_groups(
        oulad_frame, sensitive_features=["age_band"], min_group_size=oldest + 1
    )
    assert audit.suppressed["age_band"].groups == 1
    assert audit.suppressed["age_band"].rows == oldest
    assert "55<=" not in set(audit.tables["age_band"]["group"])


def test_oulad_report(oulad_frame, tmp_path):
    audit = audit_groups(oulad_frame, sensitive_features=ATTRIBUTES)
    path = write_report(
        audit,
        tmp_path / "oulad.html",
        model_uri="random scores",
        source=str(OULAD_DIR),
        operating_point="top 10 % of enrolments by a random score",
        notes=["Scores are random, so differences between groups are chance."],
    )
    html = path.read_text(encoding="utf-8")
    for attribute in ATTRIBUTES:
        assert f"<caption>Metrics by {attribute}</caption>" in html
