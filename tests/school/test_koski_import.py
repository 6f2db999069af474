"""Koski import tests on the bundled example documents and edited copies.

The examples have no considered-resigned or temporarily-interrupted state and
no learner with two study rights, so the tests write edited copies of them.
"""

import copy
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from features.labels import LabelRule, dropout_events, label_dropouts
from sources.school.koski import import_koski
from sources.school.mapping import to_input_tables

KOSKI = Path(__file__).parents[2] / "ajoissa" / "data" / "koski-examples"
EXAMPLES = KOSKI / "examples"
CODE_LISTS = KOSKI / "koodisto"
RESIGNED = "ammatillinen-ops_2022-07-14.json"
ASOF = pd.Timestamp("2015-10-01")


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def write(folder: Path, name: str, document: dict) -> Path:
    path = folder / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def periods(document: dict) -> list:
    return document["opiskeluoikeudet"][0]["tila"]["opiskeluoikeusjaksot"]


def state(code: str, day: str) -> dict:
    return {
        "alku": day,
        "tila": {"koodiarvo": code, "koodistoUri": "koskiopiskeluoikeudentila"},
    }


def dropout_label(files: list[Path], asof: pd.Timestamp = ASOF) -> int:
    result = import_koski(files, CODE_LISTS)
    tables = to_input_tables(result.records, strict=False).validated()
    rule = LabelRule(window_days=365, transfer_gap_days=120)
    events = dropout_events(tables.study_right_states, tables.learners, rule)
    keys = pd.DataFrame(
        {"learner_id": ["1.2.246.562.24.00000000001"], "asof_date": [asof]}
    )
    return int(label_dropouts(keys, events, rule).iloc[0])


@pytest.fixture(scope="module")
def examples():
    return import_koski(sorted(EXAMPLES.glob("*.json")), CODE_LISTS)


def test_examples_have_no_problems(examples):
    assert examples.problems == []


def test_examples_study_rights(examples):
    assert len(examples.records.study_rights) == 13


def test_excluded_rights_counted(examples):
    assert examples.skipped["contained in another study right"] == 2
    assert examples.skipped["single-subject study right"] == 1
    assert examples.skipped["not school education (ylioppilastutkinto)"] == 1


def test_leave_then_return_mapped(examples):
    states = examples.records.study_right_states
    history = states[
        states["study_right_id"].str.startswith("perusopetukseenvalmistava")
    ]
    assert history["state"].tolist() == ["present", "on_leave", "present", "graduated"]


def test_grades_keep_token(examples):
    grades = examples.records.grades
    assert set(grades["grade"]) >= {"4", "H", "S", "10"}
    assert not grades.loc[grades["grade"] == "H", "passed"].any()


def test_examples_map_to_contract(examples):
    tables = to_input_tables(examples.records, strict=False).validated()
    assert len(tables.learners) == 11


def test_resigned_is_dropout():
    assert dropout_label([EXAMPLES / RESIGNED]) == 1


def test_considered_resigned(tmp_path):
    document = load(RESIGNED)
    periods(document)[-1]["tila"]["koodiarvo"] = "katsotaaneronneeksi"
    path = write(tmp_path, "considered.json", document)
    states = import_koski([path], CODE_LISTS).records.study_right_states
    assert states["state"].tolist() == ["present", "considered_resigned"]
    assert dropout_label([path]) == 1


def test_temporarily_interrupted(tmp_path):
    document = load(RESIGNED)
    periods(document)[-1:] = [
        state("valiaikaisestikeskeytynyt", "2016-01-09"),
        state("lasna", "2016-08-01"),
    ]
    path = write(tmp_path, "interrupted.json", document)
    states = import_koski([path], CODE_LISTS).records.study_right_states
    assert states["state"].tolist() == ["present", "temporarily_interrupted", "present"]
    assert dropout_label([path]) == 0


def test_school_change(tmp_path):
    old = load(RESIGNED)
    new = copy.deepcopy(old)
    right = new["opiskeluoikeudet"][0]
    right["oppilaitos"] = {
        "oid": "1.2.246.562.10.00000000099",
        "nimi": {"fi": "Toinen opisto"},
    }
    right["alkamispäivä"] = "2016-01-25"
    right["tila"]["opiskeluoikeusjaksot"] = [state("lasna", "2016-01-25")]
    files = [EXAMPLES / RESIGNED, write(tmp_path, "new-school.json", new)]
    result = import_koski(files, CODE_LISTS)
    assert result.records.study_rights["school_id"].nunique() == 2
    assert dropout_label(files) == 0


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("keskeytynyt", "a state with a mapping"),
        ("poissa", "a code in koskiopiskeluoikeudentila"),
    ],
)
def test_unmappable_state_reported(tmp_path, code, expected):
    document = load(RESIGNED)
    periods(document)[-1]["tila"]["koodiarvo"] = code
    result = import_koski([write(tmp_path, "odd.json", document)], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].value == code
    assert result.problems[0].expected.startswith(expected)


def test_unknown_type_reported(tmp_path):
    document = load(RESIGNED)
    document["opiskeluoikeudet"][0]["tyyppi"]["koodiarvo"] = "internationalschool"
    result = import_koski([write(tmp_path, "intl.json", document)], CODE_LISTS)
    assert result.problems[0].column == "opiskeluoikeudet[0].tyyppi"
    assert "known school level" in result.problems[0].expected


def test_grade_years_read(examples):
    levels = examples.records.grade_levels
    final = levels[levels["study_right_id"].str.startswith("perusopetuksenoppimaara-p")]
    assert final["grade_level"].tolist() == [7, 8, 9]
    starts = final["start_date"].dt.strftime("%Y-%m-%d").tolist()
    assert starts == ["2013-08-16", "2014-08-15", "2015-08-15"]


def grade_years(document: dict) -> list[dict]:
    return [
        c
        for c in document["opiskeluoikeudet"][0]["suoritukset"]
        if c["tyyppi"]["koodiarvo"] == "perusopetuksenvuosiluokka"
    ]


def test_grade_year_without_start_counted(tmp_path):
    document = load("perusopetuksenoppimaara-paattotodistus_2025-03-20.json")
    del grade_years(document)[0]["alkamispäivä"]
    result = import_koski([write(tmp_path, "nostart.json", document)], CODE_LISTS)
    assert result.skipped["grade year without a start date"] == 1
    assert result.records.grade_levels["grade_level"].tolist() == [8, 9]


def test_unknown_grade_level_reported(tmp_path):
    document = load("perusopetuksenoppimaara-paattotodistus_2025-03-20.json")
    grade_years(document)[0]["koulutusmoduuli"]["tunniste"]["koodiarvo"] = "10"
    result = import_koski([write(tmp_path, "tenth.json", document)], CODE_LISTS)
    assert result.problems[0].value == "10"
    assert result.problems[0].expected == "a code in perusopetuksenluokkaaste"


def test_truncated_json_reported(tmp_path):
    text = (EXAMPLES / RESIGNED).read_text(encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(text[:500], encoding="utf-8")
    result = import_koski([cut, EXAMPLES / RESIGNED], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].file == str(cut)
    assert result.problems[0].column == "*"
    assert "invalid JSON" in str(result.problems[0])
    assert "line 21" in str(result.problems[0])
    assert len(result.records.study_rights) == 1


def test_missing_file_reported(tmp_path):
    missing = tmp_path / "missing.json"
    result = import_koski([missing, EXAMPLES / RESIGNED], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].file == str(missing)
    assert "file not found" in str(result.problems[0])
    assert len(result.records.study_rights) == 1


@pytest.mark.parametrize(("text", "kind"), [("[{}]", "list"), ("null", "null")])
def test_top_level_not_object_reported(tmp_path, text, kind):
    path = tmp_path / "top.json"
    path.write_text(text, encoding="utf-8")
    result = import_koski([path, EXAMPLES / RESIGNED], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].file == str(path)
    assert f"top level is a JSON {kind}" in str(result.problems[0])
    assert len(result.records.study_rights) == 1


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("state", "opiskeluoikeudet[0].tila.opiskeluoikeusjaksot[1].alku"),
        ("start", "opiskeluoikeudet[0].alkamispäivä"),
    ],
)
def test_invalid_date_reported(tmp_path, field, column):
    document = load(RESIGNED)
    if field == "state":
        periods(document)[1]["alku"] = "2008-13-45"
    else:
        document["opiskeluoikeudet"][0]["alkamispäivä"] = "2008-13-45"
    path = write(tmp_path, "bad-date.json", document)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = import_koski([path], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].column == column
    assert result.problems[0].value == "2008-13-45"
    assert result.problems[0].expected == "a date as yyyy-mm-dd"


def test_invalid_date_keeps_other_states(tmp_path):
    document = load(RESIGNED)
    periods(document)[1]["alku"] = "2008-13-45"
    path = write(tmp_path, "bad-date.json", document)
    states = import_koski([path], CODE_LISTS).records.study_right_states
    assert states["state"].tolist() == ["present"]


def test_invalid_grade_date_reported(tmp_path):
    document = load("perusopetuksenoppimaara-paattotodistus_2025-03-20.json")
    grade_years(document)[0]["alkamispäivä"] = "15.8.2013"
    result = import_koski([write(tmp_path, "year.json", document)], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].column.endswith(".alkamispäivä")
    assert result.problems[0].value == "15.8.2013"
    assert result.records.grade_levels["grade_level"].tolist() == [8, 9]


def test_right_without_states_reported(tmp_path):
    document = load(RESIGNED)
    del document["opiskeluoikeudet"][0]["tila"]
    result = import_koski([write(tmp_path, "no-states.json", document)], CODE_LISTS)
    assert len(result.problems) == 1
    assert result.problems[0].column == "opiskeluoikeudet[0].tila.opiskeluoikeusjaksot"
    assert len(result.records.study_rights) == 0


def _without_oid(tmp_path: Path) -> Path:
    document = load(RESIGNED)
    document["henkilö"] = {"hetu": "010106A9012"}
    return write(tmp_path, "hetu.json", document)


def test_empty_pseudonym_key_warned(tmp_path, caplog):
    path = _without_oid(tmp_path)
    with caplog.at_level("WARNING", logger="sources.school.koski"):
        result = import_koski([path, path], CODE_LISTS)
    warned = [r for r in caplog.records if "empty pseudonym key" in r.getMessage()]
    assert len(warned) == 1
    assert result.records.pupils["pupil_id"].str.startswith("hetu:").all()


def test_secret_pseudonym_key_not_warned(tmp_path, caplog):
    path = _without_oid(tmp_path)
    with caplog.at_level("WARNING", logger="sources.school.koski"):
        import_koski([path], CODE_LISTS, pseudonym_key=b"secret")
    assert not [r for r in caplog.records if "pseudonym key" in r.getMessage()]


def test_invalid_identity_code_reported(tmp_path):
    document = load(RESIGNED)
    document["henkilö"] = {"hetu": "010106A9016"}
    path = write(tmp_path, "bad-hetu.json", document)
    result = import_koski([path], CODE_LISTS, pseudonym_key=b"secret")
    assert len(result.problems) == 1
    text = str(result.problems[0])
    assert "henkilö.hetu" in text
    assert "check character does not match" in text
    assert "010106A9016" not in text
    assert len(result.records.pupils) == 0
