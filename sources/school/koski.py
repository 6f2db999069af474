"""Import study rights and grades from documents of the national register Koski.

Koski, kept by the Finnish National Agency for Education, publishes one JSON
document per learner (``{"henkilö": …, "opiskeluoikeudet": […]}``). Each study
right has a type (code list ``opiskeluoikeudentyyppi``), a school
(``oppilaitos``), a dated state history (``tila.opiskeluoikeusjaksot``, code list
``koskiopiskeluoikeudentila``) and completions (``suoritukset``) with grades.
In basic education each school year is a completion of type
``perusopetuksenvuosiluokka`` whose module code (code list
``perusopetuksenluokkaaste``) is the grade level and whose ``alkamispäivä`` is
the day the pupil started that grade.

:func:`import_koski` maps the documents into :class:`SchoolRecords`, checks
every state and grade code against the code lists, and reports each code or
required field it cannot map instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sources.errors import Problem
from sources.identifiers import is_personal_identity_code
from sources.school.grades import parse_grade
from sources.school.records import SchoolRecords
from sources.school.tables import KOSKI_STATE_CODES, TABLES

logger = logging.getLogger(__name__)

ANNULLED_STATE = "mitatoity"
"""State of a study right recorded in error; such a right is left out."""

TYPE_LEVELS = {
    "perusopetus": "basic",
    "ahvenanmaanperusopetus": "basic",
    "perusopetukseenvalmistavaopetus": "preparatory",
    "perusopetuksenlisaopetus": "preparatory",
    "tuva": "preparatory",
    "luva": "preparatory",
    "lukiokoulutus": "general_upper_secondary",
    "ibtutkinto": "general_upper_secondary",
    "diatutkinto": "general_upper_secondary",
    "ebtutkinto": "general_upper_secondary",
    "ammatillinenkoulutus": "vocational",
}
"""Study-right types that are school education, and their level."""

NOT_SCHOOL_TYPES = (
    "esiopetus",
    "aikuistenperusopetus",
    "taiteenperusopetus",
    "vapaansivistystyonkoulutus",
    "kielitutkinto",
    "korkeakoulutus",
    "muukuinsaanneltykoulutus",
    "ylioppilastutkinto",
)
"""Types left out on purpose: pre-primary, adult, hobby and higher education,
and the matriculation examination, which is an exam record, not an enrolment."""

SINGLE_SUBJECT_COMPLETIONS = ("nuortenperusopetuksenoppiaineenoppimaara",)
"""Completion types of a study right for one subject only. Such a right is not
the pupil's main enrolment, so its graduation is not leaving basic education."""

GRADE_YEAR_COMPLETION = "perusopetuksenvuosiluokka"
GRADE_LEVEL_LIST = "perusopetuksenluokkaaste"
GRADE_SCALE = "arviointiasteikkoyleissivistava"
STATE_LIST = "koskiopiskeluoikeudentila"
TYPE_LIST = "opiskeluoikeudentyyppi"

DATE_EXPECTED = "a date as yyyy-mm-dd"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_UNREADABLE = object()
"""Marker for a file that could not be read as JSON, because JSON null is None."""

_HETU_CENTURY = {
    "+": 1800,
    "-": 1900,
    "Y": 1900,
    "X": 1900,
    "W": 1900,
    "V": 1900,
    "U": 1900,
    "A": 2000,
    "B": 2000,
    "C": 2000,
    "D": 2000,
    "E": 2000,
    "F": 2000,
}


def read_code_list(folder: Path, uri: str) -> set[str]:
    """Return the codes of code list ``uri`` from ``folder/koodit/<uri>.json``."""
    entries = json.loads(
        (folder / "koodit" / f"{uri}.json").read_text(encoding="utf-8")
    )
    return {entry["koodiArvo"] for entry in entries}


@dataclass
class KoskiImport:
    """Records read from Koski documents, and what could not be mapped."""

    records: SchoolRecords
    problems: list[Problem]
    skipped: Counter = field(default_factory=Counter)
    """Items left out on purpose, by reason (for example ``not school education``)."""


def pseudonym(hetu: str, key: bytes) -> str:
    """Return a pseudonymous learner id for a personal identity code (hetu).

    NOTE: with an empty ``key`` the id is a plain hash, and the small space of
    identity codes makes it reversible by trying them all. Pass a secret key.
    """
    digest = hmac.new(key, hetu.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"hetu:{digest[:20]}"


def _birth_from_hetu(hetu: str) -> tuple[int | None, int | None, str | None]:
    """Return birth year, month and gender encoded in a Finnish identity code.

    The individual number (characters 8 to 10) is odd for men and even for women.
    """
    if len(hetu) != 11 or hetu[6] not in _HETU_CENTURY or not hetu[:6].isdigit():
        return None, None, None
    year = _HETU_CENTURY[hetu[6]] + int(hetu[4:6])
    individual = hetu[7:10]
    gender = None
    if individual.isdigit():
        gender = "male" if int(individual) % 2 else "female"
    return year, int(hetu[2:4]), gender


def _json_type(value: object) -> str:
    """Return the JSON name of the type of a parsed JSON value."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _is_date(value: object) -> bool:
    """Return whether ``value`` is a calendar date written as ``yyyy-mm-dd``."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _walk_completions(
    completions: list[dict[str, Any]], inherited_date: str | None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    for completion in completions:
        confirmed = (completion.get("vahvistus") or {}).get("päivä") or inherited_date
        yield completion, confirmed
        yield from _walk_completions(completion.get("osasuoritukset") or [], confirmed)


class _Importer:
    def __init__(self, code_lists: Path, key: bytes) -> None:
        self.states = read_code_list(code_lists, STATE_LIST)
        self.types = read_code_list(code_lists, TYPE_LIST)
        self.grades = read_code_list(code_lists, GRADE_SCALE)
        self.grade_levels = read_code_list(code_lists, GRADE_LEVEL_LIST)
        self.key = key
        self.warned_empty_key = False
        self.problems: list[Problem] = []
        self.skipped: Counter = Counter()
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        self.pupils: set[str] = set()
        self.schools: set[str] = set()

    def problem(self, file: Path, path: str, value: object, expected: str) -> None:
        self.problems.append(Problem(str(file), "koski", path, None, value, expected))

    def file_problem(self, file: Path, message: str) -> None:
        """Add a problem with the whole document, such as one that is not JSON."""
        self.problems.append(Problem(str(file), "koski", "*", None, None, message))

    def load(self, file: Path) -> Any:
        """Parse ``file`` as JSON, or add a problem and return ``_UNREADABLE``."""
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.file_problem(file, "file not found; check the path of the document")
            return _UNREADABLE
        except UnicodeDecodeError as exc:
            self.file_problem(
                file,
                f"the file is not valid UTF-8 text ({exc}); export the document "
                "from Koski again as UTF-8 JSON",
            )
            return _UNREADABLE
        except OSError as exc:
            self.file_problem(
                file, f"the file could not be read ({exc.strerror}); check the path"
            )
            return _UNREADABLE
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.file_problem(
                file,
                f"invalid JSON ({exc}); "
                "if the file is cut short, export the document from Koski again",
            )
            return _UNREADABLE

    def read(self, file: Path) -> None:
        document = self.load(file)
        if document is _UNREADABLE:
            return
        if not isinstance(document, dict):
            self.file_problem(
                file,
                f"the top level is a JSON {_json_type(document)}; expected one "
                "learner's document, a JSON object with 'henkilö' and "
                "'opiskeluoikeudet'",
            )
            return
        person = document.get("henkilö") or {}
        if not isinstance(person, dict):
            self.problem(file, "henkilö", _json_type(person), "a JSON object")
            return
        rights = document.get("opiskeluoikeudet") or []
        if not isinstance(rights, list):
            self.problem(file, "opiskeluoikeudet", _json_type(rights), "a JSON list")
            return
        pupil_id = self.pupil(file, person)
        if pupil_id is None:
            return
        for index, right in enumerate(rights):
            path = f"opiskeluoikeudet[{index}]"
            if not isinstance(right, dict):
                self.problem(file, path, _json_type(right), "a JSON object")
                continue
            self.study_right(file, path, pupil_id, index, right)

    def pupil(self, file: Path, person: dict[str, Any]) -> str | None:
        hetu, oid = person.get("hetu"), person.get("oid")
        if not hetu and not oid:
            self.problem(
                file, "henkilö", None, "an oid or hetu identifying the learner"
            )
            return None
        if hetu and not oid and not is_personal_identity_code(str(hetu)):
            self.file_problem(
                file,
                "henkilö.hetu is not a valid Finnish personal identity code (the "
                "date, century sign, individual number or check character does "
                "not match); the value is not shown because it identifies a "
                "person; correct it in Koski",
            )
            return None
        if not oid and not self.key and not self.warned_empty_key:
            # Once per import: the ids would be reversible (see pseudonym).
            self.warned_empty_key = True
            logger.warning(
                "learners without an oid get ids from their identity codes with "
                "an empty pseudonym key, so anyone can reverse the ids by trying "
                "every identity code; pass a secret pseudonym_key"
            )
        pupil_id = oid or pseudonym(hetu, self.key)
        if pupil_id not in self.pupils:
            self.pupils.add(pupil_id)
            year, month, gender = _birth_from_hetu(hetu) if hetu else (None, None, None)
            self.rows["pupils"].append(
                {
                    "pupil_id": pupil_id,
                    "birth_year": year,
                    "birth_month": month,
                    "gender": gender,
                    "mother_tongue": None,
                    "home_municipality": None,
                }
            )
        return pupil_id

    def study_right(
        self, file: Path, path: str, pupil_id: str, index: int, right: dict[str, Any]
    ) -> None:
        kind = (right.get("tyyppi") or {}).get("koodiarvo")
        if kind not in self.types:
            self.problem(file, f"{path}.tyyppi", kind, f"a code in {TYPE_LIST}")
            return
        if kind in NOT_SCHOOL_TYPES:
            self.skipped[f"not school education ({kind})"] += 1
            return
        if kind not in TYPE_LEVELS:
            self.problem(
                file,
                f"{path}.tyyppi",
                kind,
                "a type with a known school level; add it to TYPE_LEVELS",
            )
            return
        if right.get("sisältyyOpiskeluoikeuteen"):
            self.skipped["contained in another study right"] += 1
            return
        completions = right.get("suoritukset") or []
        kinds = {(c.get("tyyppi") or {}).get("koodiarvo") for c in completions}
        if kinds and kinds <= set(SINGLE_SUBJECT_COMPLETIONS):
            self.skipped["single-subject study right"] += 1
            return

        periods = (right.get("tila") or {}).get("opiskeluoikeusjaksot") or []
        codes = [(p.get("tila") or {}).get("koodiarvo") for p in periods]
        if ANNULLED_STATE in codes:
            self.skipped["annulled study right"] += 1
            return
        if not periods:
            # A right without states cannot be labelled, so importing it would
            # hide a gap in the data.
            self.problem(
                file,
                f"{path}.tila.opiskeluoikeusjaksot",
                None,
                "at least one state in the study right's state history",
            )
            return
        school = right.get("oppilaitos") or {}
        if not school.get("oid"):
            self.problem(file, f"{path}.oppilaitos", None, "a school with an oid")
            return
        if right.get("alkamispäivä"):
            start, start_path = right["alkamispäivä"], f"{path}.alkamispäivä"
        else:
            start = periods[0].get("alku")
            start_path = f"{path}.tila.opiskeluoikeusjaksot[0].alku"
        if start is None:
            self.problem(
                file,
                f"{path}.alkamispäivä",
                None,
                "a start date, or a date (alku) on the first state",
            )
            return
        if not _is_date(start):
            self.problem(file, start_path, start, DATE_EXPECTED)
            return

        right_id = right.get("oid") or f"{file.stem}#{index}"
        level = TYPE_LEVELS[kind]
        if school["oid"] not in self.schools:
            self.schools.add(school["oid"])
            self.rows["schools"].append(
                {
                    "school_id": school["oid"],
                    "name": (school.get("nimi") or {}).get("fi") or school["oid"],
                    "municipality": None,
                    "level": level,
                }
            )
        self.rows["study_rights"].append(
            {
                "study_right_id": right_id,
                "pupil_id": pupil_id,
                "school_id": school["oid"],
                "start_date": start,
                "level": level,
            }
        )
        for number, (period, code) in enumerate(zip(periods, codes, strict=True)):
            where = f"{path}.tila.opiskeluoikeusjaksot[{number}]"
            if code not in self.states:
                self.problem(file, where, code, f"a code in {STATE_LIST}")
            elif code not in KOSKI_STATE_CODES:
                self.problem(
                    file,
                    where,
                    code,
                    f"a state with a mapping ({', '.join(KOSKI_STATE_CODES)})",
                )
            elif not period.get("alku"):
                self.problem(file, f"{where}.alku", None, "the date the state began")
            elif not _is_date(period["alku"]):
                self.problem(file, f"{where}.alku", period["alku"], DATE_EXPECTED)
            else:
                self.rows["study_right_states"].append(
                    {
                        "study_right_id": right_id,
                        "state_from": period["alku"],
                        "state": KOSKI_STATE_CODES[code],
                    }
                )
        self.completions(file, path, pupil_id, school["oid"], completions)
        self.grade_years(file, path, right_id, completions)

    def grade_years(
        self, file: Path, path: str, right_id: str, completions: list[dict[str, Any]]
    ) -> None:
        """Add a grade-level row for each grade-year completion."""
        for number, completion in enumerate(completions):
            if (completion.get("tyyppi") or {}).get(
                "koodiarvo"
            ) != GRADE_YEAR_COMPLETION:
                continue
            where = f"{path}.suoritukset[{number}]"
            code = (
                (completion.get("koulutusmoduuli") or {}).get("tunniste") or {}
            ).get("koodiarvo")
            if code not in self.grade_levels:
                self.problem(
                    file,
                    f"{where}.koulutusmoduuli.tunniste",
                    code,
                    f"a code in {GRADE_LEVEL_LIST}",
                )
                continue
            start = completion.get("alkamispäivä")
            if not start:
                self.skipped["grade year without a start date"] += 1
                continue
            if not _is_date(start):
                self.problem(file, f"{where}.alkamispäivä", start, DATE_EXPECTED)
                continue
            self.rows["grade_levels"].append(
                {
                    "study_right_id": right_id,
                    "start_date": start,
                    "grade_level": int(code),
                }
            )

    def completions(
        self,
        file: Path,
        path: str,
        pupil_id: str,
        school_id: str,
        completions: list[dict[str, Any]],
    ) -> None:
        for completion, confirmed in _walk_completions(completions, None):
            subject = (
                (completion.get("koulutusmoduuli") or {}).get("tunniste") or {}
            ).get("koodiarvo")
            for assessment in completion.get("arviointi") or []:
                grade = assessment.get("arvosana") or {}
                scale, code = grade.get("koodistoUri"), grade.get("koodiarvo")
                if scale != GRADE_SCALE:
                    self.skipped[f"grade on another scale ({scale})"] += 1
                    continue
                if code not in self.grades or parse_grade(str(code)) is None:
                    self.problem(
                        file,
                        f"{path}.suoritukset…arvosana",
                        code,
                        f"a code in {GRADE_SCALE}",
                    )
                    continue
                day = assessment.get("päivä") or confirmed
                if day is None:
                    self.skipped["grade without a date"] += 1
                    continue
                if not _is_date(day):
                    source = "arviointi" if assessment.get("päivä") else "vahvistus"
                    self.problem(
                        file, f"{path}.suoritukset…{source}.päivä", day, DATE_EXPECTED
                    )
                    continue
                self.rows["grades"].append(
                    {
                        "pupil_id": pupil_id,
                        "school_id": school_id,
                        "date": day,
                        "subject": subject,
                        "grade": str(code),
                    }
                )

    def records(self) -> SchoolRecords:
        frames = {}
        for name, spec in TABLES.items():
            columns = [c.name for c in spec.columns]
            if name == "study_rights":
                columns.append("level")
            frame = pd.DataFrame(self.rows[name], columns=columns)
            for column in spec.columns:
                if column.kind in ("date", "timestamp"):
                    frame[column.name] = pd.to_datetime(frame[column.name]).astype(
                        "datetime64[ns]"
                    )
                elif column.kind == "int":
                    frame[column.name] = frame[column.name].astype("Int64")
            frames[name] = frame
        grades = frames["grades"]
        parsed = [parse_grade(token) for token in grades["grade"]]
        grades["value"] = pd.array([p.value for p in parsed], dtype="Float64")
        grades["passed"] = pd.array([p.passed for p in parsed], dtype="boolean")
        marks = frames["attendance_marks"]
        marks["date"] = marks["lesson_start"]
        marks["mark"] = pd.Series(dtype="str")
        return SchoolRecords(**frames, counts={n: len(f) for n, f in frames.items()})


def import_koski(
    files: Iterable[Path], code_lists: Path, pseudonym_key: bytes = b""
) -> KoskiImport:
    """Read Koski learner documents into school records.

    Parameters
    ----------
    files
        JSON documents, one learner each.
    code_lists
        Folder with ``koodit/<code list>.json`` for the state, type and grade
        code lists.
    pseudonym_key
        Secret key for pseudonymising identity codes of learners without an oid.

    Problems are returned, not raised, so that one run lists all of them; the
    caller decides whether to go on without the affected items. A file that is
    missing, not UTF-8 JSON or not a JSON object is one problem, and the other
    files are still read.
    """
    importer = _Importer(code_lists, pseudonym_key)
    count = 0
    for file in files:
        importer.read(file)
        count += 1
    result = KoskiImport(importer.records(), importer.problems, importer.skipped)
    logger.info(
        "read %d Koski documents: %d study rights, %d grades, %d problems, skipped %s",
        count,
        len(result.records.study_rights),
        len(result.records.grades),
        len(result.problems),
        dict(result.skipped),
    )
    return result
