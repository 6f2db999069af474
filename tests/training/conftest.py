"""Synthetic contract tables for fast training tests.

Three schools run one unit per cohort (four cohorts, half a year apart). Some
learners enrol in two consecutive cohorts, so the fold tests can check that no
learner lands on both sides. Withdrawal depends on missed assessments and, when
attendance is generated, on absences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sources.contract import InputTables, empty_table

COHORTS = (
    ("2021A", "2021-01-10"),
    ("2021B", "2021-07-10"),
    ("2022A", "2022-01-10"),
    ("2022B", "2022-07-10"),
)
SCHOOLS = ("north", "south", "east")


def make_tables(
    learners_per_unit: int = 60,
    attendance: bool = False,
    seed: int = 0,
    interaction: bool = False,
) -> InputTables:
    """Return validated synthetic tables.

    With ``interaction`` the risk raises withdrawal only in the vocational
    programme and lowers it in the general one, which a tree model captures and
    a logistic regression on the same features does not.
    """
    rng = np.random.default_rng(seed)
    units, enrolments, assessments, marks, attributes = [], [], [], [], []
    learner_ids: set[str] = set()
    for c, (cohort, start) in enumerate(COHORTS):
        start_date = pd.Timestamp(start)
        for school in SCHOOLS:
            unit_id = f"{school}-{cohort}"
            units.append(
                {
                    "unit_id": unit_id,
                    "cohort": cohort,
                    "start_date": start_date,
                    "end_date": start_date + pd.Timedelta(days=170),
                }
            )
            for i in range(learners_per_unit):
                # Every fifth learner of the previous cohort enrols again.
                repeat = c > 0 and i % 5 == 0
                learner = f"{school}-{c - 1}-{i + 1}" if repeat else f"{school}-{c}-{i}"
                learner_ids.add(learner)
                enrolment = f"{unit_id}-{learner}"
                risk = rng.normal()
                programme = rng.choice(["general", "vocational"])
                slope = 2.0
                if interaction:
                    slope = 3.0 if programme == "vocational" else -3.0
                withdraws = rng.random() < 1 / (1 + np.exp(-(risk * slope - 1.5)))
                leave_day = int(rng.integers(40, 160))
                end = start_date + pd.Timedelta(days=leave_day if withdraws else 170)
                enrolments.append(
                    {
                        "enrolment_id": enrolment,
                        "learner_id": learner,
                        "unit_id": unit_id,
                        "start_date": start_date,
                        "end_date": end,
                        "end_reason": "withdrawn" if withdraws else "completed",
                    }
                )
                attributes.append(
                    {
                        "enrolment_id": enrolment,
                        "known_from": start_date,
                        "programme": programme,
                    }
                )
                for a in range(5):
                    due = start_date + pd.Timedelta(days=20 + 30 * a)
                    submitted = rng.random() > 0.15 + 0.3 * (risk > 0.5)
                    score = float(np.clip(rng.normal(65 - 12 * risk, 12), 0, 100))
                    assessments.append(
                        {
                            "enrolment_id": enrolment,
                            "assessment_id": f"a{a}",
                            "due_date": due,
                            "submitted_date": due if submitted else pd.NaT,
                            "score": score if submitted else np.nan,
                            "passed": (score >= 40) if submitted else None,
                            "weight": 20.0,
                        }
                    )
                if attendance:
                    for day in range(0, 150, 7):
                        absent = rng.random() < 0.05 + 0.15 * (risk > 0.5)
                        marks.append(
                            {
                                "enrolment_id": enrolment,
                                "date": start_date + pd.Timedelta(days=day),
                                "mark": "unexcused" if absent else "present",
                            }
                        )
    return InputTables(
        learners=pd.DataFrame(
            {
                "learner_id": sorted(learner_ids),
                "gender": rng.choice(["F", "M"], len(learner_ids)),
            }
        ),
        units=pd.DataFrame(units),
        enrolments=pd.DataFrame(enrolments),
        attributes=pd.DataFrame(attributes),
        assessments=pd.DataFrame(assessments),
        attendance=pd.DataFrame(marks) if attendance else empty_table("attendance"),
    ).validated()


@pytest.fixture(scope="session")
def synthetic_tables() -> InputTables:
    return make_tables()


@pytest.fixture(scope="session")
def synthetic_tables_with_attendance() -> InputTables:
    return make_tables(attendance=True, seed=1)
