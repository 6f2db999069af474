"""The learner features give the same values on DuckDB and on Spark local[2].

One Spark session serves the whole module, because starting one takes several
seconds. The inputs are a small synthetic export and hand-made edge cases.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ajoissa.cli import app
from features.build import learner_features
from features.definitions import LEARNER_FEATURES, DerivedDef
from features.engines import DuckDBEngine, SparkEngine
from sources.contract import InputTables
from sources.school.mapping import to_input_tables
from sources.school.records import read_records
from sources.school.synth import SynthConfig, generate

pytest.importorskip("pyspark")
pytestmark = pytest.mark.e2e
JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
if "JAVA_HOME" not in os.environ and JAVA_17.is_dir():
    os.environ["JAVA_HOME"] = str(JAVA_17)
if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
    pytest.skip("Spark needs Java 17", allow_module_level=True)

KEYS = ["learner_id", "asof_date"]
WHOLE_NUMBER_AGGREGATIONS = ("count", "count_distinct", "max_streak", "max", "last")
EXACT = {
    f.name
    for f in LEARNER_FEATURES
    if not isinstance(f, DerivedDef) and f.aggregation in WHOLE_NUMBER_AGGREGATIONS
} | {"support_level_changes_365d", "subjects_missing_previous_term"}
"""Features that are whole numbers and must match exactly; the rest are floats."""


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    with SparkEngine(
        "local[2]", config={"spark.sql.warehouse.dir": str(warehouse)}
    ) as engine:
        yield engine


@pytest.fixture(scope="module")
def synth_export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "export"
    generate(SynthConfig(pupils=200, years=2, seed=7, lessons_per_day=1), out)
    return out


@pytest.fixture(scope="module")
def synthetic(synth_export) -> tuple[InputTables, pd.DataFrame]:
    out = synth_export
    tables = to_input_tables(read_records(out, out / "mark_codes.csv")).validated()
    # 1 October, 1 February and both sides of the term boundaries on 1 January
    # and 1 August. Term grades fall on a term's last teaching day.
    dates = pd.to_datetime(
        [
            "2022-10-01",
            "2022-12-31",
            "2023-01-01",
            "2023-02-01",
            "2023-07-31",
            "2023-08-01",
            "2023-10-01",
            "2024-01-01",
            "2024-02-01",
        ]
    )
    learners = tables.learners["learner_id"]
    keys = pd.DataFrame(
        {
            "learner_id": np.repeat(learners.to_numpy(), len(dates)),
            "asof_date": np.tile(dates.to_numpy(), len(learners)),
        }
    )
    return tables, keys


def _edge_tables() -> tuple[InputTables, pd.DataFrame]:
    """Build learners that exercise the edges of windows and sources.

    ``move`` changes school on 13 September 2024 and has one-day absences.
    ``edge`` has marks and grades on the term boundaries (31 July, 1 August,
    31 December, 1 January). ``quiet`` has marks only in spring, so its short
    windows are empty. ``none`` has no records at all.
    """
    enrolments = pd.DataFrame(
        {
            "enrolment_id": ["m1", "m2", "e1", "e2", "q1", "n1"],
            "learner_id": ["move", "move", "edge", "edge", "quiet", "none"],
            "unit_id": [
                "s1/2024",
                "s2/2024",
                "s1/2023",
                "s1/2024",
                "s1/2023",
                "s1/2024",
            ],
            "start_date": pd.to_datetime(
                [
                    "2024-08-01",
                    "2024-09-16",
                    "2023-08-01",
                    "2024-08-01",
                    "2023-08-01",
                    "2024-08-01",
                ]
            ),
            "end_date": pd.to_datetime(
                ["2024-09-13", None, "2024-07-31", None, None, None]
            ),
            "end_reason": ["transferred", None, "completed", None, None, None],
        }
    )
    marks = [
        ("m1", "2024-09-10", "present"),
        ("m1", "2024-09-11", "unexcused"),
        ("m1", "2024-09-12", "present"),
        ("m1", "2024-09-13", "excused"),
        ("m2", "2024-09-16", "excused"),
        ("m2", "2024-09-16", "present"),
        ("m2", "2024-09-17", "late"),
        ("m2", "2024-12-31", "unexcused"),
        ("e1", "2024-01-01", "unexcused"),
        ("e1", "2024-07-31", "unexcused"),
        ("e2", "2024-08-01", "excused"),
        ("e2", "2024-12-31", "present"),
        ("e2", "2025-01-01", "late"),
        ("q1", "2024-03-01", "unexcused"),
        ("q1", "2024-03-04", "present"),
    ]
    attendance = pd.DataFrame(marks, columns=["enrolment_id", "date", "mark"])
    attendance["date"] = pd.to_datetime(attendance["date"])
    grades = [
        ("m1", "2024-09-12", "MA", 5.0),
        ("m2", "2024-12-20", "MA", 7.0),
        ("m2", "2024-12-20", "AI", 4.0),
        ("e1", "2023-12-31", "EN", 9.0),
        ("e1", "2024-01-01", "BI", 8.5),
        ("e1", "2024-07-31", "HI", 6.0),
        ("e2", "2024-08-01", "MA", 7.25),
        ("e2", "2025-01-01", "MA", 8.75),
    ]
    assessments = pd.DataFrame(
        {
            "enrolment_id": [g[0] for g in grades],
            "assessment_id": [f"a{i}" for i in range(len(grades))],
            "due_date": pd.to_datetime([g[1] for g in grades]),
            "submitted_date": pd.to_datetime([g[1] for g in grades]),
            "score": [(g[3] - 4) / 6 * 100 for g in grades],
            "passed": [g[3] >= 5 for g in grades],
            "weight": 1.0,
            "subject": [g[2] for g in grades],
            "grade_token": [str(g[3]) for g in grades],
        }
    )
    states = pd.DataFrame(
        [
            ("move", "r1", "basic", "2018-08-01", "present"),
            ("move", "r1", "basic", "2024-09-13", "resigned"),
            ("move", "r2", "basic", "2024-09-16", "present"),
            ("edge", "r3", "basic", "2017-08-01", "present"),
        ],
        columns=["learner_id", "study_right_id", "level", "state_from", "state"],
    )
    states["state_from"] = pd.to_datetime(states["state_from"])
    attributes = pd.DataFrame(
        {
            "enrolment_id": ["m1", "m2", "m2", "e1", "e2", "e2"],
            "known_from": pd.to_datetime(
                [
                    "2024-08-01",
                    "2024-09-16",
                    "2024-11-01",
                    "2023-08-01",
                    "2024-08-01",
                    "2025-01-01",
                ]
            ),
            "support_level": [0.0, 0.0, 1.0, 2.0, 2.0, 1.0],
            "grade_level": [8.0, 8.0, 8.0, 8.0, 9.0, 10.0],
        }
    )
    learners = pd.DataFrame(
        {
            "learner_id": ["move", "edge", "quiet", "none"],
            "birth_date": pd.to_datetime(
                ["2010-03-01", "2008-12-01", "2009-06-01", None]
            ),
        }
    )
    tables = InputTables(
        learners=learners,
        units=pd.DataFrame(
            {
                "unit_id": ["s1/2023", "s1/2024", "s2/2024"],
                "cohort": ["2023", "2024", "2024"],
                "start_date": pd.to_datetime(
                    ["2023-08-01", "2024-08-01", "2024-08-01"]
                ),
                "end_date": pd.to_datetime(["2024-07-31", "2025-07-31", "2025-07-31"]),
            }
        ),
        enrolments=enrolments,
        attributes=attributes,
        assessments=assessments,
        attendance=attendance,
        study_right_states=states,
    ).validated()
    dates = pd.to_datetime(
        [
            "2023-12-31",
            "2024-01-01",
            "2024-07-31",
            "2024-08-01",
            "2024-09-13",
            "2024-09-16",
            "2024-10-01",
            "2024-12-31",
            "2025-01-01",
        ]
    )
    keys = pd.DataFrame(
        {
            "learner_id": np.repeat(learners["learner_id"].to_numpy(), len(dates)),
            "asof_date": np.tile(dates.to_numpy(), len(learners)),
        }
    )
    return tables, keys


def both_engines(tables, keys, spark) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    duck, names = learner_features(tables, keys, engine=DuckDBEngine())
    on_spark, spark_names = learner_features(tables, keys, engine=spark)
    assert spark_names == names
    duck = duck.sort_values(KEYS).reset_index(drop=True)
    on_spark = on_spark.sort_values(KEYS).reset_index(drop=True)
    return duck, on_spark, names


def assert_same(duck: pd.DataFrame, on_spark: pd.DataFrame, names: list[str]) -> None:
    assert list(on_spark.columns) == list(duck.columns)
    assert on_spark["learner_id"].tolist() == duck["learner_id"].tolist()
    assert (on_spark["asof_date"] == duck["asof_date"]).all()
    for name in names:
        expected = duck[name].to_numpy(dtype=float)
        actual = on_spark[name].to_numpy(dtype=float)
        missing = np.isnan(expected)
        assert (np.isnan(actual) == missing).all(), f"{name}: missing values differ"
        if name in EXACT:
            assert (actual[~missing] == expected[~missing]).all(), f"{name} differs"
        else:
            np.testing.assert_allclose(
                actual[~missing],
                expected[~missing],
                rtol=1e-9,
                atol=1e-12,
                err_msg=name,
            )


def test_synthetic_records_match(synthetic, spark):
    tables, keys = synthetic
    duck, on_spark, names = both_engines(tables, keys, spark)
    every_feature = [f.name for f in LEARNER_FEATURES]
    assert names[: len(every_feature)] == every_feature
    for name in every_feature:
        assert duck[name].notna().any(), f"{name} is never computed"
    assert duck["age_for_grade_months"].max() >= 12
    assert_same(duck, on_spark, names)


@pytest.fixture(scope="module")
def edge_results(spark) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    tables, keys = _edge_tables()
    return both_engines(tables, keys, spark)


def test_edge_cases_match(edge_results):
    assert_same(*edge_results)


def test_edge_case_values(edge_results):
    _, on_spark, _ = edge_results
    rows = on_spark.set_index(KEYS)
    # The school change does not reset the streak: 13 and 16 September are
    # consecutive recorded days, but 16 September has a present mark too.
    assert rows.loc[("move", pd.Timestamp("2024-10-01")), "absence_streak_year"] == 1
    assert rows.loc[("move", pd.Timestamp("2024-10-01")), "school_changes_365d"] == 1
    # 1 August opens a new term and school year; 31 July belongs to the last.
    assert rows.loc[("edge", pd.Timestamp("2024-08-01")), "absence_share_term"] == 1
    edge_july = rows.loc[("edge", pd.Timestamp("2024-07-31")), "grade_mean_term"]
    assert edge_july == pytest.approx(7.25)
    assert rows.loc[("edge", pd.Timestamp("2025-01-01")), "late_share_term"] == 1
    assert np.isnan(rows.loc[("quiet", pd.Timestamp("2024-10-01")), "absence_share_2w"])
    assert rows.loc[("none", pd.Timestamp("2024-10-01")), "absence_hours_year"] == 0
    # Born December 2008: a year behind in grade 9, on track once moved to
    # grade 10 (upper secondary year 1) on 1 January 2025.
    edge_age = rows.loc[("edge", pd.Timestamp("2024-08-01")), "age_for_grade_months"]
    assert edge_age == 12
    edge_age = rows.loc[("edge", pd.Timestamp("2025-01-01")), "age_for_grade_months"]
    assert edge_age == 0


def test_command_builds_on_spark(synth_export, spark, tmp_path):
    # The command reuses the module's active session and leaves it running.
    files = {}
    for engine in ("duckdb", "spark"):
        files[engine] = tmp_path / f"{engine}.parquet"
        result = CliRunner().invoke(
            app,
            [
                "features",
                "--data",
                str(synth_export),
                "--engine",
                engine,
                "--out",
                str(files[engine]),
            ],
        )
        assert result.exit_code == 0, result.output
    duck = pd.read_parquet(files["duckdb"])
    on_spark = pd.read_parquet(files["spark"])
    names = [f.name for f in LEARNER_FEATURES]
    assert_same(duck, on_spark, names)
