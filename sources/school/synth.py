"""Generate synthetic school records in the export format, chunk by chunk.

Pupils are simulated in fixed-size chunks, and each chunk is appended to the
output files before the next one starts, so memory use depends on the chunk
size, not on the number of pupils. Each chunk draws from its own random stream
derived from the seed, so the output depends only on the seed and the settings.

Causal structure: a pupil may start to disengage on some day. From then on
the pupil's unexcused absences, lateness, illness days and behaviour notes
rise and grades fall, over about two months. Only disengaged pupils drop out
(resign or are considered resigned, some months after the onset) or finish
basic education without going on, apart from a small share of sudden exits
with no warning signs. Changes of school happen independently of disengagement.
docs/synthetic-data.md lists every rate; all are assumed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sources.school.marks import DEFAULT_MARK_CODES
from sources.school.records import (
    CSV_OPTIONS,
    PROBLEM_REPORT_NAME,
    TIME_ZONE,
    check_replaceable,
    load_day,
)
from sources.school.tables import TABLES

logger = logging.getLogger(__name__)

MAX_AGE_IN_FIRST_YEAR = 19
"""Largest age, in calendar years, that a pupil reaches in the year the first
school year starts: one starting upper secondary's third year (13 + 5) who
was held back once."""

FIRST_YEAR_MIN = (
    next(c.low for c in TABLES["pupils"].columns if c.name == "birth_year")
    + MAX_AGE_IN_FIRST_YEAR
)
"""Earliest first school year whose pupils all have a birth year that
load-records accepts."""

CHUNK_PUPILS = 5_000
"""Pupils simulated per chunk; fixed so that output depends only on the seed."""

SUBJECTS = ("AI", "MA", "EN", "RU", "BI", "HI", "KE", "LI")
"""Subjects graded at each term end (Koski subject codes); ``LI`` is graded S or H."""


@dataclass(frozen=True)
class Rates:
    """Assumed rates of the simulation; docs/synthetic-data.md explains each one."""

    onset_basic: float = 0.03
    onset_upper: float = 0.07
    dropout_given_onset: float = 0.55
    considered_resigned_share: float = 0.3
    sudden_exit_upper: float = 0.005
    continue_after_basic: float = 0.985
    continue_after_basic_disengaged: float = 0.75
    general_upper_share: float = 0.55
    transfer: float = 0.03
    held_back: float = 0.02
    intensified_support: float = 0.12
    special_support: float = 0.06
    office_correction: float = 0.05
    """Share of unexcused marks that the office later corrects to excused."""


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic export."""

    pupils: int
    years: int
    seed: int
    first_year: int = 2022
    """School year (its starting calendar year) in which the records begin."""
    lessons_per_day: int = 5
    file_format: str = "parquet"
    rates: Rates = Rates()


def teaching_days(year: int) -> np.ndarray:
    """Return the teaching days of school year ``year`` as ``datetime64[D]``.

    Assumed calendar: weekdays from the second Wednesday of August to the last
    Friday of May, without the autumn break (ISO week 42), the Christmas break
    (22 December to 6 January) and the winter break (ISO week 8).
    """
    start = date(year, 8, 8)
    while start.weekday() != 2:
        start += timedelta(days=1)
    end = date(year + 1, 5, 31)
    while end.weekday() != 4:
        end -= timedelta(days=1)
    days = pd.bdate_range(start, end)
    week = days.isocalendar().week.to_numpy()
    christmas = (days >= pd.Timestamp(year, 12, 22)) & (
        days <= pd.Timestamp(year + 1, 1, 6)
    )
    keep = (week != 42) & (week != 8) & ~christmas
    return days[keep].to_numpy().astype("datetime64[D]")


MARK_CODES = ("P", "SA", "LU", "LV", "MY")
"""Generated mark codes: present, ill, permitted absence, unexcused, late. They are
the codes of ``sources/school/mark_codes.csv``, which is written beside them."""


def _grade_token(quarter: int) -> str:
    """Return the grade token for ``quarter`` quarter-grades (32 is 8, 33 is 8+)."""
    base, rest = divmod(quarter, 4)
    return {0: str(base), 1: f"{base}+", 2: f"{base}½", 3: f"{base + 1}-"}[rest]


GRADE_TOKENS = np.array([_grade_token(q) for q in range(16, 41)], dtype=object)
"""Tokens for 4, 4+, 4½, 5-, 5, ... 10, indexed by quarters above 4."""


class _TableWriter:
    """Appends chunks of one table to a CSV or Parquet file."""

    def __init__(self, path: Path, file_format: str) -> None:
        self.path = path
        self.file_format = file_format
        self.writer: pq.ParquetWriter | None = None
        self.started = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.file_format == "csv":
            text = frame.copy()
            for column in text.columns:
                if pd.api.types.is_datetime64_any_dtype(text[column]):
                    fmt = (
                        "%d.%m.%Y %H:%M"
                        if column in ("lesson_start", "recorded_at")
                        else "%d.%m.%Y"
                    )
                    if isinstance(text[column].dtype, pd.DatetimeTZDtype):
                        text[column] = text[column].dt.tz_convert(TIME_ZONE)
                    text[column] = text[column].dt.strftime(fmt)
            text.to_csv(
                self.path,
                mode="a" if self.started else "w",
                header=not self.started,
                index=False,
                lineterminator="\r\n",
                sep=CSV_OPTIONS["sep"],
                encoding="utf-8" if self.started else CSV_OPTIONS["encoding"],
            )
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table.cast(self.writer.schema))
        self.started = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _Chunk:
    """Simulates one chunk of pupils and collects their rows."""

    def __init__(
        self,
        config: SynthConfig,
        first_pupil: int,
        count: int,
        rng: np.random.Generator,
        schools: pd.DataFrame,
    ) -> None:
        self.config = config
        self.rates = config.rates
        self.rng = rng
        self.first_pupil = first_pupil
        self.count = count
        by_level = schools.groupby("level")["school_id"].apply(list)
        self.schools = {level: np.array(ids) for level, ids in by_level.items()}
        self.rows: dict[str, list[dict]] = {name: [] for name in TABLES}
        self.segments: list[tuple] = []
        self.right_counts: dict[str, int] = {}
        self.days = {
            y: teaching_days(config.first_year + y) for y in range(config.years)
        }

    def school(self, level: str, leaving: str | None = None) -> str:
        """Draw a school of ``level``, other than ``leaving`` when there is another."""
        schools = self.schools[level]
        if leaving is not None and len(schools) > 1:
            schools = [school for school in schools if school != leaving]
        return str(self.rng.choice(schools))

    def open_right(self, pupil: str, school: str, start: np.datetime64) -> str:
        number = self.right_counts.get(pupil, 0)
        self.right_counts[pupil] = number + 1
        right_id = f"{pupil}-r{number}"
        self.rows["study_rights"].append(
            {
                "study_right_id": right_id,
                "pupil_id": pupil,
                "school_id": school,
                "start_date": pd.Timestamp(start),
            }
        )
        self.state(right_id, start, "present")
        return right_id

    def state(self, right_id: str, day: np.datetime64, state: str) -> None:
        self.rows["study_right_states"].append(
            {
                "study_right_id": right_id,
                "state_from": pd.Timestamp(day),
                "state": state,
            }
        )

    def grade_level(self, right_id: str, start: np.datetime64, grade: int) -> None:
        """Record ``grade`` (10 and up in upper secondary) from ``start`` on."""
        self.rows["grade_levels"].append(
            {
                "study_right_id": right_id,
                "start_date": pd.Timestamp(start),
                "grade_level": grade if grade <= 9 else grade - 9,
            }
        )

    def simulate(self) -> None:
        for offset in range(self.count):
            self.pupil(f"P{self.first_pupil + offset:07d}")

    def add_pupil_row(self, pupil: str, grade0: int) -> None:
        rng = self.rng
        held_back = rng.random() < self.rates.held_back
        self.rows["pupils"].append(
            {
                "pupil_id": pupil,
                "birth_year": self.config.first_year
                - 13
                - (grade0 - 7)
                - int(held_back),
                "birth_month": int(rng.integers(1, 13)),
                "gender": str(rng.choice(["female", "male"], p=[0.49, 0.51])),
                "mother_tongue": str(
                    rng.choice(
                        ["finnish", "swedish", "sami", "other"],
                        p=[0.85, 0.05, 0.003, 0.097],
                    )
                ),
                "home_municipality": f"M{int(rng.integers(0, 50)):02d}",
            }
        )

    def add_support(self, pupil: str) -> None:
        rates = self.rates
        support = self.rng.choice(
            3,
            p=[
                1 - rates.intensified_support - rates.special_support,
                rates.intensified_support,
                rates.special_support,
            ],
        )
        if support:
            self.rows["support_decisions"].append(
                {
                    "pupil_id": pupil,
                    "start_date": pd.Timestamp(self.days[0][0]),
                    "end_date": pd.NaT,
                    "level": ("general", "intensified", "special")[support],
                }
            )

    def upper_level(self) -> str:
        if self.rng.random() < self.rates.general_upper_share:
            return "general_upper_secondary"
        return "vocational"

    def pupil(self, pupil: str) -> None:
        """Simulate one pupil's study rights, and queue their school days."""
        rng, rates, config = self.rng, self.rates, self.config
        grade0 = int(rng.integers(7, 13))
        self.add_pupil_row(pupil, grade0)
        self.add_support(pupil)
        habits = {
            "ill": rng.beta(2, 40),
            "unexcused": rng.beta(1, 150),
            "late": rng.beta(1.5, 80),
            "grade": rng.normal(7.8, 0.9),
            "notes": rng.gamma(1.0, 0.01),
        }
        level = "basic" if grade0 <= 9 else self.upper_level()
        entered = config.first_year - (grade0 - 1 if grade0 <= 9 else grade0 - 10)
        school = self.school(level)
        right = self.open_right(pupil, school, np.datetime64(f"{entered}-08-01"))
        onset: np.datetime64 | None = None
        severity = rng.uniform(0.5, 1.0)
        pending_exit: np.datetime64 | None = None
        exit_decided = False

        for year in range(config.years):
            grade = grade0 + year
            if grade > 12:
                return
            days = self.days[year]
            self.grade_level(right, days[0], grade)
            upper = grade >= 10
            onset_rate = rates.onset_upper if upper else rates.onset_basic
            if onset is None and rng.random() < onset_rate:
                onset = days[int(rng.integers(0, len(days)))]
            if upper and onset is not None and not exit_decided:
                exit_decided = True
                if rng.random() < rates.dropout_given_onset:
                    # An onset in basic education counts from the first day of
                    # upper secondary, so the signs show there before the exit.
                    pending_exit = max(onset, days[0]) + np.timedelta64(
                        int(rng.integers(60, 200)), "D"
                    )
            if (
                upper
                and pending_exit is None
                and rng.random() < rates.sudden_exit_upper
            ):
                pending_exit = days[int(rng.integers(0, len(days)))]

            if pending_exit is not None and pending_exit <= days[-1]:
                exit_day = (
                    days[days >= pending_exit][0]
                    if pending_exit >= days[0]
                    else days[0]
                )
                state = (
                    "considered_resigned"
                    if rng.random() < rates.considered_resigned_share
                    else "resigned"
                )
                self.segments.append(
                    (pupil, school, days[days < exit_day], onset, severity, habits)
                )
                self.state(right, exit_day, state)
                return

            if rng.random() < rates.transfer:
                moved = days[int(rng.integers(10, len(days) - 10))]
                self.segments.append(
                    (pupil, school, days[days <= moved], onset, severity, habits)
                )
                self.state(right, moved, "resigned")
                start = moved + np.timedelta64(int(rng.integers(1, 15)), "D")
                school = self.school(level, leaving=school)
                right = self.open_right(pupil, school, start)
                self.grade_level(right, start, grade)
                self.segments.append(
                    (pupil, school, days[days >= start], onset, severity, habits)
                )
            else:
                self.segments.append((pupil, school, days, onset, severity, habits))

            if grade in (9, 12):
                self.state(right, days[-1] + np.timedelta64(1, "D"), "graduated")
            if grade == 12 or year == config.years - 1:
                return
            if grade == 9:
                keep_on = (
                    rates.continue_after_basic_disengaged
                    if onset is not None
                    else rates.continue_after_basic
                )
                if rng.random() >= keep_on:
                    return
                level = self.upper_level()
                school = self.school(level)
                right = self.open_right(
                    pupil, school, self.days[year + 1][0] - np.timedelta64(2, "D")
                )

    def marks_and_grades(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Draw lesson marks, term grades and behaviour notes for every queued segment.

        All segments of the chunk are drawn at once: one row per school day, then
        one per lesson.
        """
        rng, lessons, rates = self.rng, self.config.lessons_per_day, self.rates
        segments = [s for s in self.segments if len(s[2])]
        if not segments:
            empty = {
                n: _frame(n, [])
                for n in ("attendance_marks", "grades", "behaviour_notes")
            }
            return empty["attendance_marks"], empty["grades"], empty["behaviour_notes"]
        pupils = pd.Index(sorted({s[0] for s in segments}))
        schools = pd.Index(sorted({s[1] for s in segments}))
        lengths = np.array([len(s[2]) for s in segments])
        day = np.concatenate([s[2] for s in segments])
        pupil = np.repeat(pupils.get_indexer([s[0] for s in segments]), lengths)
        school = np.repeat(schools.get_indexer([s[1] for s in segments]), lengths)
        no_onset = np.datetime64("2999-01-01")
        onset = np.repeat(
            np.array(
                [s[3] if s[3] is not None else no_onset for s in segments],
                dtype="datetime64[D]",
            ),
            lengths,
        )
        severity = np.repeat([s[4] for s in segments], lengths)
        habit = {
            key: np.repeat([s[5][key] for s in segments], lengths)
            for key in ("ill", "unexcused", "late", "grade", "notes")
        }
        elapsed = (day - onset).astype(float)
        drift = severity * np.clip(elapsed / 60.0, 0.0, 1.0)

        ill_day = rng.random(len(day)) < habit["ill"] + 0.05 * drift
        p_unexcused = np.repeat(habit["unexcused"] + 0.25 * drift, lessons)
        p_late = np.repeat(habit["late"] + 0.08 * drift, lessons)
        draw = rng.random(len(day) * lessons)
        code = np.where(
            draw < p_unexcused, 3, np.where(draw < p_unexcused + p_late, 4, 0)
        )
        code[np.repeat(ill_day, lessons)] = 1
        hours = np.array(
            [8, 9, 10, 12, 13, 14, 15, 16][:lessons], dtype="timedelta64[h]"
        )
        start = (
            np.repeat(day.astype("datetime64[m]"), lessons)
            + np.tile(hours, len(day)).astype("timedelta64[m]")
            + np.timedelta64(15, "m")
        )
        marks = pd.DataFrame(
            {
                "pupil_id": pd.Categorical.from_codes(
                    np.repeat(pupil, lessons), pupils
                ),
                "school_id": pd.Categorical.from_codes(
                    np.repeat(school, lessons), schools
                ),
                "lesson_start": start.astype("datetime64[ms]"),
                "lesson": pd.Categorical.from_codes(
                    np.tile(np.arange(lessons), len(day)),
                    [str(i) for i in range(1, lessons + 1)],
                ),
                "subject": pd.Categorical.from_codes(
                    rng.integers(0, len(SUBJECTS), len(code)), SUBJECTS
                ),
                "mark_code": pd.Categorical.from_codes(code, MARK_CODES),
                "recorded_by": pd.Categorical.from_codes(
                    np.zeros(len(code), dtype=int), ["teacher", "office"]
                ),
                "recorded_at": (start + np.timedelta64(50, "m")).astype(
                    "datetime64[ms]"
                ),
            }
        )
        corrected = np.flatnonzero(
            (code == 3) & (rng.random(len(code)) < rates.office_correction)
        )
        if len(corrected):
            fixes = marks.iloc[corrected].copy()
            fixes["mark_code"] = pd.Categorical.from_codes(
                np.full(len(fixes), 2), MARK_CODES
            )
            fixes["recorded_by"] = pd.Categorical.from_codes(
                np.ones(len(fixes), dtype=int), ["teacher", "office"]
            )
            fixes["recorded_at"] = fixes["lesson_start"] + pd.Timedelta(days=2)
            marks = pd.concat([marks, fixes], ignore_index=True)

        grades = self._grades(
            day, pupil, school, drift, habit["grade"], pupils, schools
        )
        noted = rng.random(len(day)) < habit["notes"] + 0.03 * drift
        notes = pd.DataFrame(
            {
                "pupil_id": pupils[pupil[noted]],
                "date": day[noted].astype("datetime64[ms]"),
                "note_type": "disruption",
            }
        )
        return marks, grades, notes

    def _grades(
        self,
        day: np.ndarray,
        pupil: np.ndarray,
        school: np.ndarray,
        drift: np.ndarray,
        level: np.ndarray,
        pupils: pd.Index,
        schools: pd.Index,
    ) -> pd.DataFrame:
        """Draw a grade per subject on each term's last teaching day.

        A disengaged pupil's grades fall by up to 1.8 and up to 30 % are missing.
        """
        rng = self.rng
        term_ends = np.concatenate(
            [self._term_ends(self.days[y]) for y in range(self.config.years)]
        ).astype("datetime64[D]")
        graded = np.flatnonzero(np.isin(day, term_ends))
        count = len(graded) * len(SUBJECTS)
        rows = np.repeat(graded, len(SUBJECTS))
        subject = np.tile(np.arange(len(SUBJECTS)), len(graded))
        slip = drift[rows]
        value = level[rows] - 1.8 * slip + rng.normal(0, 0.6, count)
        quarters = np.clip(np.round(value * 4), 16, 40).astype(int) - 16
        token = GRADE_TOKENS[quarters]
        is_pe = subject == SUBJECTS.index("LI")
        token[is_pe] = np.where(
            rng.random(int(is_pe.sum())) < 0.4 * slip[is_pe], "H", "S"
        )
        given = rng.random(count) >= 0.3 * slip
        return pd.DataFrame(
            {
                "pupil_id": pupils[pupil[rows[given]]],
                "school_id": schools[school[rows[given]]],
                "date": day[rows[given]].astype("datetime64[ms]"),
                "subject": np.array(SUBJECTS)[subject[given]],
                "grade": token[given],
            }
        )

    @staticmethod
    def _term_ends(days: np.ndarray) -> list[np.datetime64]:
        """Return the last teaching days of the autumn term and of the year."""
        months = days.astype("datetime64[M]").astype(int) % 12 + 1
        autumn = days[months >= 8]
        return [autumn[-1], days[-1]]


def _schools(pupils: int) -> pd.DataFrame:
    """Return the schools: one basic school per 300 pupils, one upper secondary
    school of each kind per 600, and at least two of each."""
    counts = {
        "basic": max(2, pupils // 300),
        "general_upper_secondary": max(2, pupils // 600),
        "vocational": max(2, pupils // 600),
    }
    rows = [
        {
            "school_id": f"{level[:3].upper()}{i:05d}",
            "name": f"{level} school {i}",
            "municipality": f"M{i % 50:02d}",
            "level": level,
        }
        for level, count in counts.items()
        for i in range(count)
    ]
    return pd.DataFrame(rows)


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    columns = [c.name for c in TABLES[name].columns]
    frame = pd.DataFrame(rows, columns=columns)
    for column in TABLES[name].columns:
        if column.kind == "date":
            frame[column.name] = pd.to_datetime(frame[column.name]).astype(
                "datetime64[ms]"
            )
        elif column.kind == "int":
            frame[column.name] = frame[column.name].astype("int64")
        elif column.kind == "text":
            frame[column.name] = frame[column.name].astype("str")
    return frame


def expected_outputs() -> set[str]:
    """Return the names of the files that :func:`generate` may replace.

    Besides its own files, that is the problem report that a failed
    ``load-records --data`` of the output writes into the folder.
    """
    tables = {f"{name}{suffix}" for name in TABLES for suffix in (".csv", ".parquet")}
    return tables | {"mark_codes.csv", PROBLEM_REPORT_NAME}


def check_config(config: SynthConfig) -> None:
    """Raise ``ValueError`` for settings that :func:`generate` cannot write.

    The last school year must have ended (on 31 July) by today. Its marks run
    until late May and its states until early June, and load-records rejects
    marks, grades and states dated after the day of the load.
    """
    if config.pupils < 1 or config.years < 1:
        raise ValueError("pupils and years must be at least 1")
    if config.file_format not in ("csv", "parquet"):
        raise ValueError(f"file format {config.file_format!r} is not csv or parquet")
    if config.first_year < FIRST_YEAR_MIN:
        birth_year_min = FIRST_YEAR_MIN - MAX_AGE_IN_FIRST_YEAR
        oldest_born = config.first_year - MAX_AGE_IN_FIRST_YEAR
        raise ValueError(
            f"the first year, {config.first_year}, is before {FIRST_YEAR_MIN}. Its "
            f"oldest pupils would be born in {oldest_born}, "
            f"and load-records rejects birth years before {birth_year_min}. Choose "
            f"a first year of {FIRST_YEAR_MIN} or later."
        )
    today = load_day()
    last_year = config.first_year + config.years - 1
    last_day = pd.Timestamp(last_year + 1, 7, 31)
    if last_day > today:
        ended_in = (
            today.year if today >= pd.Timestamp(today.year, 7, 31) else today.year - 1
        )
        latest = ended_in - 1  # the latest school year that has ended by today
        fewer = ", or fewer years" if config.years > 1 else ""
        raise ValueError(
            f"the last school year, {last_year}, ends on {last_day:%d.%m.%Y}, after "
            f"today ({today:%d.%m.%Y}), so the records would have dates that have "
            "not happened yet, which load-records rejects. Choose a first year of "
            f"{latest - config.years + 1} or earlier{fewer}."
        )


def generate(
    config: SynthConfig,
    out_dir: Path,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write synthetic records for ``config.pupils`` pupils to ``out_dir``.

    The files are written to a new folder beside ``out_dir`` that then replaces
    it. ``out_dir`` also gets ``mark_codes.csv``, the table that maps the
    generated mark codes. Returns the number of rows written per table.

    Raises
    ------
    ValueError
        If :func:`check_config` rejects ``config`` or ``out_dir`` may not be
        replaced.

    Parameters
    ----------
    on_chunk
        Called with the number of pupils done after each chunk.
    """
    check_config(config)
    out_dir = out_dir.resolve()
    check_replaceable(out_dir, expected_outputs(), "synth")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    suffix = ".csv" if config.file_format == "csv" else ".parquet"
    writers = {
        name: _TableWriter(staging / f"{name}{suffix}", config.file_format)
        for name in TABLES
    }
    counts = dict.fromkeys(TABLES, 0)
    schools = _schools(config.pupils)
    streams = np.random.SeedSequence(config.seed).spawn(
        (config.pupils + CHUNK_PUPILS - 1) // CHUNK_PUPILS
    )
    try:
        writers["schools"].write(_frame("schools", schools.to_dict("records")))
        counts["schools"] = len(schools)
        for index, stream in enumerate(streams):
            first = index * CHUNK_PUPILS
            size = min(CHUNK_PUPILS, config.pupils - first)
            chunk = _Chunk(config, first, size, np.random.default_rng(stream), schools)
            chunk.simulate()
            marks, grades, notes = chunk.marks_and_grades()
            tables = {
                name: _frame(name, chunk.rows[name])
                for name in (
                    "pupils",
                    "study_rights",
                    "study_right_states",
                    "support_decisions",
                    "grade_levels",
                )
            }
            tables["grades"] = grades
            tables["behaviour_notes"] = notes
            tables["attendance_marks"] = marks
            for name, frame in tables.items():
                if len(frame):
                    writers[name].write(frame)
                    counts[name] += len(frame)
            if on_chunk is not None:
                on_chunk(first + size)
            logger.debug("synthetic chunk %d done", index)
        for writer in writers.values():
            writer.close()
        shutil.copyfile(DEFAULT_MARK_CODES, staging / "mark_codes.csv")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote synthetic records to %s: %s", out_dir, counts)
    return counts
