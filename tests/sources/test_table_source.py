"""The table source: mapping validation, reading, typing, errors and inspection.

Every table here is synthetic and small, so these tests train nothing.
"""

import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.build import asof_points_by_offset, build_features
from sources.errors import InputDataError, MappingError
from sources.table import load_table, read_mapped_table, to_input_tables
from sources.table_inspect import inspect_mapped_table

REPO_ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = REPO_ROOT / "ajoissa" / "mappings"


def pupils(rows: int = 40, seed: int = 1) -> pd.DataFrame:
    """Return a synthetic pupil table with a grade outcome and mixed columns."""
    rng = np.random.default_rng(seed)
    grade = rng.integers(4, 20, rows)
    return pd.DataFrame(
        {
            "pupil": [f"p{i:03d}" for i in range(rows)],
            "school": rng.choice(["north", "south"], rows),
            "sex": rng.choice(["F", "M"], rows),
            "age": rng.integers(15, 19, rows),
            "absences": rng.integers(0, 30, rows),
            "support": rng.choice(["yes", "no"], rows),
            "home_language": rng.choice(["1", "2", "3"], rows),
            "final_grade": grade,
        }
    )


def base_mapping(**changes) -> dict:
    mapping = {
        "name": "synthetic",
        "file": {"path": "pupils.csv"},
        "id_column": "pupil",
        "group_column": "school",
        "outcome": {"rule": "final_grade < 10"},
        "sensitive": [
            {"column": "sex", "categories": {"F": "female", "M": "male"}},
            {
                "column": "age",
                "name": "age_band",
                "bins": {"edges": [14, 16, 20], "labels": ["15-16", "17+"]},
            },
        ],
        "categorical": ["home_language"],
        "min_group_size": 5,
    }
    mapping.update(changes)
    return mapping


def write_case(
    tmp_path: Path,
    table: pd.DataFrame | None = None,
    mapping: dict | None = None,
    sep: str = ",",
    **csv_options,
) -> Path:
    """Write the table as ``pupils.csv`` and the mapping; return the mapping path."""
    table = pupils() if table is None else table
    mapping = base_mapping() if mapping is None else mapping
    data = tmp_path / mapping["file"]["path"]
    if data.suffix == ".csv":
        table.to_csv(data, index=False, sep=sep, **csv_options)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    return path


def problems_of(excinfo) -> list:
    return excinfo.value.problems


def test_snapshot_tables(tmp_path):
    tables = load_table(write_case(tmp_path)).validated()
    assert len(tables.learners) == 40
    assert set(tables.units["unit_id"]) == {"unit-north", "unit-south"}
    assert tables.sensitive == ("sex", "age_band")


def test_outcome_rule_labels(tmp_path):
    table = pupils()
    tables = load_table(write_case(tmp_path, table)).validated()
    withdrawn = tables.enrolments["end_reason"].eq("withdrawn").to_numpy()
    assert (withdrawn == (table["final_grade"] < 10).to_numpy()).all()


def test_outcome_column_excluded(tmp_path):
    tables = load_table(write_case(tmp_path)).validated()
    assert "final_grade" not in tables.attributes.columns


def test_sensitive_never_features(tmp_path):
    tables = load_table(write_case(tmp_path)).validated()
    assert not {"sex", "age", "age_band"} & set(tables.attributes.columns)


def test_sensitive_groups_mapped(tmp_path):
    tables = load_table(write_case(tmp_path)).validated()
    assert set(tables.learners["sex"]) == {"female", "male"}
    assert set(tables.learners["age_band"]) == {"15-16", "17+"}


def test_types_inferred(tmp_path):
    table = read_mapped_table(write_case(tmp_path))
    kinds = {info.column: info.kind for info in table.columns}
    assert kinds["absences"] == "numeric"
    assert kinds["support"] == "categorical"
    assert kinds["home_language"] == "categorical"


def test_features_categorical_first(tmp_path):
    table = read_mapped_table(write_case(tmp_path))
    assert list(table.features.columns) == [
        "school",
        "support",
        "home_language",
        "absences",
    ]


def courses_table() -> pd.DataFrame:
    """Return ``pupils()`` with courses taken and passed; pupil 0 took none."""
    table = pupils()
    courses = np.arange(len(table)) % 6
    table["courses"] = courses
    table["passed"] = courses // 2
    return table


DERIVED = [
    {"name": "Pass share", "ratio": ["passed", "courses"]},
    {"name": "absences_less_passed", "difference": ["absences", "passed"]},
    {"name": "share_less_absences", "difference": ["pass_share", "absences"]},
]


def test_derived_features(tmp_path):
    table = courses_table()
    mapping = base_mapping(derived=DERIVED)
    read = read_mapped_table(write_case(tmp_path, table, mapping))
    features = read.features
    assert list(features.columns)[-3:] == [
        "pass_share",
        "absences_less_passed",
        "share_less_absences",
    ]
    share = table["passed"] / table["courses"].where(table["courses"] != 0)
    assert np.array_equal(features["pass_share"], share, equal_nan=True)
    assert pd.isna(features["pass_share"].iloc[0])
    assert (
        features["absences_less_passed"] == table["absences"] - table["passed"]
    ).all()
    assert np.array_equal(
        features["share_less_absences"], share - table["absences"], equal_nan=True
    )
    roles = {info.column: info.role for info in read.columns}
    assert roles["Pass share"] == "derived"


def test_derived_features_build(tmp_path):
    mapping = base_mapping(derived=DERIVED)
    tables = load_table(write_case(tmp_path, courses_table(), mapping)).validated()
    frame = build_features(tables, asof_points_by_offset(tables.units, [1]))
    assert "attr_pass_share" in frame.feature_names
    assert "attr_pass_share" not in frame.categorical


@pytest.mark.parametrize("operand", ["nowhere", "support", "share_less_absences"])
def test_derived_bad_operand_rejected(tmp_path, operand):
    derived = [{"name": "bad", "ratio": ["passed", operand]}, *DERIVED]
    mapping = base_mapping(derived=derived)
    with pytest.raises(
        InputDataError,
        match=rf"column '{operand}'.*expected a numeric feature column or an "
        r"earlier derived feature, because the derived feature 'bad' uses it",
    ):
        read_mapped_table(write_case(tmp_path, courses_table(), mapping))


def test_derived_name_clash_rejected(tmp_path):
    mapping = base_mapping(
        derived=[{"name": "Absences", "ratio": ["passed", "courses"]}]
    )
    with pytest.raises(InputDataError, match=r"column 'Absences'.*becomes 'absences'"):
        read_mapped_table(write_case(tmp_path, courses_table(), mapping))


def test_mapping_derived_one_form(tmp_path):
    both = {"name": "x", "ratio": ["a", "b"], "difference": ["a", "b"]}
    mapping = base_mapping(derived=[both])
    with pytest.raises(MappingError, match=r"key 'derived.0'.*exactly one of"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_derived_names_repeat(tmp_path):
    derived = [
        {"name": "Pass share", "ratio": ["passed", "courses"]},
        {"name": "pass_share", "difference": ["passed", "courses"]},
    ]
    mapping = base_mapping(derived=derived)
    with pytest.raises(MappingError, match=r"names \['pass_share'\] repeat"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_features_build(tmp_path):
    tables = load_table(write_case(tmp_path)).validated()
    frame = build_features(tables, asof_points_by_offset(tables.units, [1]))
    assert len(frame.data) == 40
    assert "attr_home_language" in frame.categorical
    assert frame.y.sum() == (pupils()["final_grade"] < 10).sum()


def test_adverse_values_outcome(tmp_path):
    table = pupils()
    table["status"] = np.where(table["final_grade"] < 8, "left", "stayed")
    mapping = base_mapping(
        outcome={"column": "status", "adverse_values": ["left"]},
        exclude=["final_grade"],
    )
    tables = load_table(write_case(tmp_path, table, mapping)).validated()
    assert (
        tables.enrolments["end_reason"].eq("withdrawn").sum()
        == (table["final_grade"] < 8).sum()
    )


def test_adverse_value_typo_reported(tmp_path):
    table = pupils()
    table["left"] = np.where(table["final_grade"] < 8, "kyllä", "ei")
    table.loc[3, "left"] = "Kyllä"
    mapping = base_mapping(
        outcome={"column": "left", "adverse_values": ["kyllä"]},
        exclude=["final_grade"],
    )
    with pytest.raises(InputDataError) as excinfo:
        load_table(write_case(tmp_path, table, mapping))
    [problem] = problems_of(excinfo)
    assert problem.column == "left"
    assert problem.value == "Kyllä"
    assert problem.row == 5
    assert "exactly one of the adverse values ['kyllä']" in problem.expected


def test_numeric_adverse_values_in_parquet(tmp_path):
    table = pupils()
    table["left"] = (table["final_grade"] < 8).astype(int)
    table.to_parquet(tmp_path / "pupils.parquet")
    mapping = base_mapping(
        file={"path": "pupils.parquet"},
        outcome={"column": "left", "adverse_values": ["1"]},
        exclude=["final_grade"],
    )
    tables = load_table(write_case(tmp_path, table, mapping)).validated()
    withdrawn = tables.enrolments["end_reason"].eq("withdrawn").sum()
    assert withdrawn == (table["final_grade"] < 8).sum()


def test_decimal_comma_under_point_reported(tmp_path):
    table = pupils()
    table["grade_mean"] = [f"{7 + i % 3},{i % 10}" for i in range(len(table))]
    path = write_case(tmp_path, table, sep=";")
    mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    mapping["file"]["separator"] = ";"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InputDataError) as excinfo:
        load_table(path)
    [problem] = problems_of(excinfo)
    assert problem.column == "grade_mean"
    assert problem.value == "7,0"
    assert "set file.decimal: ','" in problem.expected


def test_decimal_comma(tmp_path):
    table = pupils()
    table["mean_grade"] = [f"{7 + i / 4:.2f}".replace(".", ",") for i in range(40)]
    mapping = base_mapping(
        file={"path": "pupils.csv", "separator": ";", "decimal": ","}
    )
    mapped = read_mapped_table(write_case(tmp_path, table, mapping, sep=";"))
    assert mapped.features["mean_grade"].iloc[1] == pytest.approx(7.25)


def test_latin1_encoding(tmp_path):
    table = pupils()
    table["municipality"] = ["Jyväskylä", "Hämeenlinna"] * 20
    mapping = base_mapping(file={"path": "pupils.csv", "encoding": "latin-1"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping, encoding="latin-1"))
    assert set(mapped.features["municipality"]) == {"Jyväskylä", "Hämeenlinna"}


def test_excel_sheet(tmp_path):
    table = pupils()
    with pd.ExcelWriter(tmp_path / "pupils.xlsx", engine="openpyxl") as writer:
        pd.DataFrame({"note": ["cover sheet"]}).to_excel(writer, sheet_name="info")
        table.to_excel(writer, sheet_name="pupils", index=False)
    mapping = base_mapping(file={"path": "pupils.xlsx", "sheet": "pupils"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert mapped.rows == 40
    assert (
        mapped.features["absences"].tolist() == table["absences"].astype(float).tolist()
    )


def test_parquet_file(tmp_path):
    table = pupils()
    table.to_parquet(tmp_path / "pupils.parquet")
    mapping = base_mapping(file={"path": "pupils.parquet"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert mapped.rows == 40
    assert mapped.adverse.sum() == (table["final_grade"] < 10).sum()


def test_missing_values_tokens(tmp_path):
    table = pupils().astype({"absences": str})
    table.loc[3, "absences"] = "NA"
    mapping = base_mapping(file={"path": "pupils.csv", "missing_values": ["", "NA"]})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert np.isnan(mapped.features["absences"].iloc[3])


def test_period_makes_temporal(tmp_path):
    table = pd.concat([pupils(seed=1), pupils(seed=2)], ignore_index=True)
    table["year"] = [2023] * 40 + [2024] * 40
    mapping = base_mapping(period={"column": "year", "kind": "year"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert mapped.validation == "temporal"
    assert mapped.temporal_cutoff() == "2024-01-01"


def test_period_units_per_year(tmp_path):
    table = pd.concat([pupils(seed=1), pupils(seed=2)], ignore_index=True)
    table["year"] = [2023] * 40 + [2024] * 40
    mapping = base_mapping(period={"column": "year", "kind": "year"})
    tables = to_input_tables(read_mapped_table(write_case(tmp_path, table, mapping)))
    tables = tables.validated()
    assert len(tables.units) == 4
    assert len(tables.learners) == 40
    assert len(tables.enrolments) == 80


def test_ordinal_periods_sorted(tmp_path):
    table = pd.concat([pupils(seed=i) for i in range(3)], ignore_index=True)
    table["term"] = ["2023/24"] * 40 + ["2021/22"] * 40 + ["2022/23"] * 40
    mapping = base_mapping(period={"column": "term", "kind": "ordinal"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    latest = mapped.period_start[mapped.period_label == "2023/24"].iloc[0]
    assert mapped.temporal_cutoff() == latest.date().isoformat()


def _ordinal_periods(tmp_path: Path, labels: list[str]):
    """Map three 40-row periods with ``labels``; return the table and each start."""
    table = pd.concat([pupils(seed=i) for i in range(3)], ignore_index=True)
    table["term"] = [label for label in labels for _ in range(40)]
    mapping = base_mapping(period={"column": "term", "kind": "ordinal"})
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    starts = dict(zip(mapped.period_label, mapped.period_start, strict=True))
    return mapped, starts


def test_school_year_labels_dated(tmp_path):
    mapped, starts = _ordinal_periods(tmp_path, ["2023/24", "2021-2022", "2022/23"])
    assert starts["2021-2022"] == pd.Timestamp("2021-08-01")
    assert starts["2023/24"] == pd.Timestamp("2023-08-01")
    assert mapped.temporal_cutoff() == "2023-08-01"


def test_other_ordinal_labels_placeholder(tmp_path):
    _, starts = _ordinal_periods(tmp_path, ["3", "1", "2"])
    assert starts["1"] == pd.Timestamp("2000-01-01")
    assert starts["3"] == pd.Timestamp("2002-01-01")


def test_dates_with_format(tmp_path):
    table = pd.concat([pupils(seed=1), pupils(seed=2)], ignore_index=True)
    table["snapshot"] = ["15.08.2023"] * 40 + ["14.08.2024"] * 40
    mapping = base_mapping(
        period={"column": "snapshot", "kind": "date", "date_format": "%d.%m.%Y"}
    )
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert mapped.temporal_cutoff() == "2024-08-14"


def test_single_period_rejected(tmp_path):
    table = pupils()
    table["year"] = 2024
    mapping = base_mapping(period={"column": "year", "kind": "year"})
    with pytest.raises(InputDataError, match="more than period.test_periods"):
        read_mapped_table(write_case(tmp_path, table, mapping))


def test_bad_date_located(tmp_path):
    table = pd.concat([pupils(seed=1), pupils(seed=2)], ignore_index=True)
    table["snapshot"] = ["2023-08-15"] * 40 + ["2024-08-14"] * 40
    table.loc[5, "snapshot"] = "2023-13-45"
    mapping = base_mapping(period={"column": "snapshot", "kind": "date"})
    with pytest.raises(
        InputDataError, match=r"column 'snapshot', row 7: value '2023-13-45'"
    ):
        read_mapped_table(write_case(tmp_path, table, mapping))


def test_group_with_space_located(tmp_path):
    table = pupils()
    table.loc[3, "school"] = "Koulu A"
    with pytest.raises(InputDataError) as excinfo:
        read_mapped_table(write_case(tmp_path, table))
    message = str(excinfo.value)
    assert "column 'school', row 5: value 'Koulu A'" in message
    assert "recode the column" in message


def test_single_class_rejected(tmp_path):
    mapping = base_mapping(outcome={"rule": "final_grade < 0"})
    with pytest.raises(InputDataError, match="both outcome classes") as excinfo:
        read_mapped_table(write_case(tmp_path, mapping=mapping))
    assert "column 'final_grade': every row is not adverse" in str(
        problems_of(excinfo)[0]
    )


def test_missing_column_named(tmp_path):
    mapping = base_mapping(exclude=["teacher_comment"])
    with pytest.raises(
        InputDataError, match="row 1: the header lacks the column 'teacher_comment'"
    ) as excinfo:
        read_mapped_table(write_case(tmp_path, mapping=mapping))
    assert "pupils.csv" in problems_of(excinfo)[0].file


def test_unparseable_outcome_located(tmp_path):
    table = pupils().astype({"final_grade": str})
    table.loc[9, "final_grade"] = "absent"
    with pytest.raises(
        InputDataError, match=r"column 'final_grade', row 11: value 'absent'"
    ):
        read_mapped_table(write_case(tmp_path, table))


def test_unparseable_numeric_located(tmp_path):
    table = pupils().astype({"absences": str})
    table.loc[0, "absences"] = "many"
    mapping = base_mapping(numeric=["absences"])
    with pytest.raises(InputDataError, match=r"column 'absences', row 2: value 'many'"):
        read_mapped_table(write_case(tmp_path, table, mapping))


def test_many_bad_values_counted(tmp_path):
    table = pupils(rows=30).astype({"absences": str})
    table["absences"] = "many"
    mapping = base_mapping(numeric=["absences"])
    with pytest.raises(InputDataError) as excinfo:
        read_mapped_table(write_case(tmp_path, table, mapping))
    problems = [p for p in problems_of(excinfo) if "absences" in str(p)]
    assert len(problems) == 21
    assert problems[-1].column == "*"
    assert "column 'absences': 10 more row(s) are invalid in the same way" in str(
        problems[-1]
    )
    assert "(30 in all)" in str(problems[-1])


def test_unknown_category_located(tmp_path):
    table = pupils()
    table.loc[4, "sex"] = "X"
    with pytest.raises(InputDataError, match=r"column 'sex', row 6: value 'X'"):
        read_mapped_table(write_case(tmp_path, table))


def test_age_outside_bins_located(tmp_path):
    table = pupils()
    table.loc[2, "age"] = 30
    with pytest.raises(InputDataError, match=r"column 'age', row 4: value '30'"):
        read_mapped_table(write_case(tmp_path, table))


def test_missing_outcome_located(tmp_path):
    table = pupils().astype({"final_grade": str})
    table.loc[1, "final_grade"] = ""
    with pytest.raises(InputDataError, match=r"column 'final_grade', row 3"):
        read_mapped_table(write_case(tmp_path, table))


def test_duplicate_ids_rejected(tmp_path):
    table = pupils()
    table.loc[7, "pupil"] = "p000"
    with pytest.raises(InputDataError, match=r"column 'pupil', row 9: value 'p000'"):
        read_mapped_table(write_case(tmp_path, table))


def test_id_unreadable_by_api_rejected(tmp_path):
    table = pupils()
    table.loc[2, "pupil"] = "AB 12/3"
    with pytest.raises(InputDataError, match=r"column 'pupil', row 4: value 'AB 12/3'"):
        read_mapped_table(write_case(tmp_path, table))


def test_email_column_rejected(tmp_path):
    table = pupils()
    table["contact"] = [f"pupil{i}@school.example" for i in range(40)]
    with pytest.raises(InputDataError, match="look like e-mail addresses") as excinfo:
        read_mapped_table(write_case(tmp_path, table))
    assert "school.example" not in str(excinfo.value)


def test_excluded_email_accepted(tmp_path):
    table = pupils()
    table["contact"] = [f"pupil{i}@school.example" for i in range(40)]
    mapping = base_mapping(exclude=["contact"])
    mapped = read_mapped_table(write_case(tmp_path, table, mapping))
    assert "contact" not in mapped.features.columns


def test_identity_code_id_rejected(tmp_path):
    table = pupils(rows=4)
    table["pupil"] = ["131052-308T", "010105A900S", "241299U9124", "150312+1235"]
    table["final_grade"] = [5, 15, 8, 12]
    with pytest.raises(InputDataError, match="pseudonymous"):
        read_mapped_table(write_case(tmp_path, table))


def test_name_header_rejected(tmp_path):
    table = pupils()
    table["Sukunimi"] = "Virtanen"
    with pytest.raises(InputDataError, match="'Sukunimi'"):
        read_mapped_table(write_case(tmp_path, table))


def test_mapping_unknown_key(tmp_path):
    mapping = base_mapping(outcom={"rule": "x < 1"})
    with pytest.raises(MappingError, match=r"mapping.yaml: key 'outcom'"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_missing_outcome(tmp_path):
    mapping = base_mapping()
    del mapping["outcome"]
    with pytest.raises(
        MappingError, match=r"key 'outcome': missing; this key is required"
    ):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_unknown_key_suggests(tmp_path):
    mapping = base_mapping(exlude=["final_grade"])
    with pytest.raises(MappingError) as excinfo:
        read_mapped_table(write_case(tmp_path, mapping=mapping))
    assert excinfo.value.problems == [
        (
            "exlude",
            "unknown key; did you mean 'exclude'? docs/bring-your-own-data.md "
            "lists the keys.",
        )
    ]


def test_mapping_repeated_key_rejected(tmp_path):
    path = write_case(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "min_group_size: 3\n", encoding="utf-8")
    with pytest.raises(MappingError) as excinfo:
        read_mapped_table(path)
    [(key, message)] = excinfo.value.problems
    assert key == "min_group_size"
    assert "appears twice" in message


def test_mapping_file_missing_named(tmp_path):
    with pytest.raises(MappingError) as excinfo:
        read_mapped_table(tmp_path / "nope.yaml")
    assert "nope.yaml: file not found; check the --mapping path" in str(excinfo.value)
    assert "key '*'" not in str(excinfo.value)


def test_mapping_bad_rule(tmp_path):
    mapping = base_mapping(outcome={"rule": "final_grade below 10"})
    with pytest.raises(MappingError, match=r"key 'outcome'.*'G3 < 10'"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_bad_bins(tmp_path):
    mapping = base_mapping(
        sensitive=[{"column": "age", "bins": {"edges": [14, 16], "labels": ["a", "b"]}}]
    )
    with pytest.raises(MappingError, match=r"key 'sensitive.0.bins'"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_bad_reference(tmp_path):
    mapping = base_mapping(
        sensitive=[{"column": "sex", "categories": ["F", "M"], "reference": "X"}]
    )
    with pytest.raises(MappingError, match=r"key 'sensitive.0'.*reference 'X'"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_mapping_invalid_yaml(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(MappingError, match="invalid YAML"):
        read_mapped_table(path)


def test_mapping_not_found(tmp_path):
    with pytest.raises(MappingError, match="file not found"):
        read_mapped_table(tmp_path / "absent.yaml")


def test_data_file_not_found(tmp_path):
    path = write_case(tmp_path)
    (tmp_path / "pupils.csv").unlink()
    with pytest.raises(InputDataError, match="file not found"):
        read_mapped_table(path)


def test_inspect_leakage_warning(tmp_path):
    table = pupils()
    table["final_points"] = table["final_grade"] * 5
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    assert any("'final_points' alone separates" in w for w in report.warnings)


def test_inspect_constant_warning(tmp_path):
    table = pupils()
    table["country"] = "FI"
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    assert any("'country' is constant" in w for w in report.warnings)


def test_inspect_missing_warning(tmp_path):
    table = pupils().astype({"absences": object})
    table.loc[:14, "absences"] = ""
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    assert any("'absences' is missing in 38%" in w for w in report.warnings)


def test_inspect_small_group_warning(tmp_path):
    table = pupils()
    table["sex"] = ["M"] * 3 + ["F"] * 37
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    assert any("group 'male' has 3 rows" in w for w in report.warnings)


def test_inspect_outcome_rate(tmp_path):
    table = pupils()
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    assert report.outcome_rate == pytest.approx((table["final_grade"] < 10).mean())


def test_inspect_group_sizes(tmp_path):
    table = pupils()
    report = inspect_mapped_table(read_mapped_table(write_case(tmp_path, table)))
    expected = table["sex"].map({"F": "female", "M": "male"}).value_counts().to_dict()
    assert report.sensitive_groups["sex"] == expected


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_mappings_read(path):
    table = read_mapped_table(path)
    assert table.adverse.any()
    assert not table.adverse.all()


@pytest.mark.parametrize(
    ("setup", "grades"),
    [("a", {"g1", "g2"}), ("b", {"g1"}), ("c", set())],
)
def test_student_setups_grades(setup, grades):
    table = read_mapped_table(MAPPINGS / f"uci-student-por-{setup}.yaml")
    assert {"g1", "g2", "g3"} & set(table.features.columns) == grades


def test_missing_sheet_rejected(tmp_path):
    pupils().to_excel(tmp_path / "pupils.xlsx", index=False)
    mapping = base_mapping(file={"path": "pupils.xlsx", "sheet": "autumn"})
    with pytest.raises(InputDataError, match="Worksheet named 'autumn' not found"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))


def test_ragged_csv_rejected(tmp_path):
    path = write_case(tmp_path)
    with (tmp_path / "pupils.csv").open("a", encoding="utf-8") as handle:
        handle.write("p999,north,F,16,3,no,1,12,extra\n")
    with pytest.raises(InputDataError, match="could not be read as csv"):
        read_mapped_table(path)


def test_wrong_encoding_rejected(tmp_path):
    table = pupils()
    table["municipality"] = "Jyväskylä"
    path = write_case(tmp_path, table, encoding="latin-1")
    with pytest.raises(InputDataError, match="not valid 'utf-8' text"):
        read_mapped_table(path)


@pytest.mark.parametrize("value", ["inf", "-Infinity", "1e400"])
def test_infinite_numeric_located(tmp_path, value):
    table = pupils().astype({"absences": str})
    table.loc[3, "absences"] = value
    expected = (
        rf"column 'absences', row 5: value '{value}' is invalid; expected a finite"
    )
    with pytest.raises(InputDataError, match=expected):
        read_mapped_table(write_case(tmp_path, table))


def test_infinite_outcome_located(tmp_path):
    table = pupils().astype({"final_grade": str})
    table.loc[0, "final_grade"] = "-inf"
    with pytest.raises(
        InputDataError, match=r"column 'final_grade', row 2: value '-inf'"
    ):
        read_mapped_table(write_case(tmp_path, table))


def test_non_utf8_line_named(tmp_path):
    table = pupils()
    table["municipality"] = "Espoo"
    table.loc[7, "municipality"] = "Jyväskylä"
    path = write_case(tmp_path, table, encoding="latin-1")
    expected = (
        "row 9: the file is not valid 'utf-8' text: column 'municipality', byte "
        "0xe4 (invalid continuation byte); save it as CSV UTF-8"
    )
    with pytest.raises(InputDataError, match=re.escape(expected)):
        read_mapped_table(path)


def test_header_only_rejected(tmp_path):
    path = write_case(tmp_path, pupils().head(0))
    with pytest.raises(InputDataError, match="the file has no data rows"):
        read_mapped_table(path)


def test_wrong_separator_hint(tmp_path):
    path = write_case(tmp_path, sep=";")
    with pytest.raises(InputDataError) as excinfo:
        read_mapped_table(path)
    assert len(problems_of(excinfo)) == 1
    assert """set 'separator: ";"' under 'file'""" in str(excinfo.value)


def run_three_periods(tmp_path, monkeypatch, adverse: int):
    """Run the main job on three yearly periods whose latest has ``adverse``
    failing grades in 40 rows; return the summary and the command's output."""
    import json

    from typer.testing import CliRunner

    from ajoissa.cli import app

    earlier = pd.concat([pupils(seed=1), pupils(seed=2)], ignore_index=True)
    later = pupils(seed=3).assign(final_grade=12)
    later.iloc[:adverse, later.columns.get_loc("final_grade")] = 5
    later["pupil"] = [f"q{i:03d}" for i in range(len(later))]
    table = pd.concat([earlier, later], ignore_index=True)
    table["year"] = [2022] * 40 + [2023] * 40 + [2024] * 40
    mapping = base_mapping(period={"column": "year", "kind": "year"})
    path = write_case(tmp_path, table, mapping)
    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", "--source", "table", "--mapping", str(path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text()), result.output


def test_unvalidated_model_not_champion(tmp_path, monkeypatch):
    """A latest period without any adverse outcome leaves the model a challenger."""
    summary, output = run_three_periods(tmp_path, monkeypatch, adverse=0)
    assert summary["model_alias"] == "challenger"
    assert "have only one class" in summary["not_validated"]
    assert "not the served champion" in " ".join(output.split())


def test_few_test_dropouts_not_champion(tmp_path, monkeypatch):
    """A latest period with 3 adverse outcomes leaves the model a challenger."""
    summary, _ = run_three_periods(tmp_path, monkeypatch, adverse=3)
    assert summary["model_alias"] == "challenger"
    assert "have 3 dropout(s) in 40 rows" in summary["not_validated"]
    assert "each class needs at least 10" in summary["not_validated"]


def test_unvalidated_challenger_reason_given(tmp_path, monkeypatch):
    """In a fresh store, the output gives the real reason for a challenger."""
    from models.store import champion_version, resolve_model_name

    summary, output = run_three_periods(tmp_path, monkeypatch, adverse=3)
    output = " ".join(output.split())
    name = summary["model_name"]
    assert summary["challenger_reason"] == summary["not_validated"]
    assert "already has" not in output
    assert "because the latest fold did not validate it" in output
    assert f"`ajoissa promote --model-name {name}`" in output
    with pytest.raises(LookupError) as excinfo:
        champion_version(name)
    message = str(excinfo.value)
    assert "Version 1 is its 'challenger'" in message
    assert "have 3 dropout(s) in 40 rows" in message
    assert f"`ajoissa promote --model-name {name}`" in message
    assert "run `ajoissa run` first" not in message
    with pytest.raises(LookupError, match="have 3 dropout"):
        resolve_model_name(None)


def test_excel_format_on_csv_rejected(tmp_path):
    mapping = base_mapping(file={"path": "pupils.csv", "format": "excel"})
    with pytest.raises(InputDataError, match="could not be read as excel") as excinfo:
        read_mapped_table(write_case(tmp_path, mapping=mapping))
    problem = problems_of(excinfo)[0]
    assert problem.file == str(tmp_path / "pupils.csv")
    assert "not an .xlsx or .xlsm workbook" in problem.expected
    assert "'file.format'" in problem.expected


def test_zip_without_workbook_rejected(tmp_path):
    with zipfile.ZipFile(tmp_path / "pupils.xlsx", "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    mapping = base_mapping(file={"path": "pupils.xlsx"})
    with pytest.raises(InputDataError, match="not an .xlsx or .xlsm workbook"):
        read_mapped_table(write_case(tmp_path, mapping=mapping))
