"""Baselines that the risk model must beat.

``RuleBaseline`` is the rule many schools already use: count the assessments a
learner has missed or failed so far. ``LogisticBaseline`` is a logistic
regression on the same features as the risk model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

RULE_COLUMNS = ("assessments_missed", "assessments_failed")


class RuleBaseline:
    """Score = missed + failed assessments so far, turned into a probability.

    ``fit`` stores the withdrawal rate observed in training for each count, so
    the score can be compared with probabilistic models on the Brier score too;
    counts above the largest seen in training take the rate of the largest.
    """

    name = "rule"

    def applicability(self, X: pd.DataFrame) -> str | None:
        """Return why the rule cannot rank ``X``, or None when it can.

        A source without assessment events gives every row the same count, and
        a rule that scores every row alike ranks no one.
        """
        missing = [c for c in RULE_COLUMNS if c not in X.columns]
        if missing:
            return f"not applicable: the source has no assessment data ({missing})"
        counts = self.rule_score(X)
        if len(counts) and np.all(counts == counts[0]):
            return (
                "not applicable: every training row has the same number of missed "
                "and failed assessments, so the rule ranks no one"
            )
        return None

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RuleBaseline:
        counts = self.rule_score(X)
        frame = pd.DataFrame({"count": counts, "y": np.asarray(y, dtype=float)})
        # Add-one smoothing keeps rare counts from getting rates of exactly 0 or 1.
        grouped = frame.groupby("count")["y"].agg(["sum", "size"])
        self.rates_ = ((grouped["sum"] + 1) / (grouped["size"] + 2)).sort_index()
        return self

    @staticmethod
    def rule_score(X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in RULE_COLUMNS if c not in X.columns]
        if missing:
            raise KeyError(f"the rule baseline needs columns {missing}")
        return X[list(RULE_COLUMNS)].fillna(0).sum(axis=1).to_numpy(dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        counts = np.minimum(self.rule_score(X), self.rates_.index.max())
        # The rate of the nearest count seen in training at or below each count.
        positions = np.searchsorted(self.rates_.index.to_numpy(), counts, side="right")
        rates = self.rates_.to_numpy()[np.maximum(positions - 1, 0)]
        return np.column_stack([1 - rates, rates])


class LogisticBaseline:
    """Logistic regression on the risk model's features.

    Numeric features are median-imputed with missing-value indicators and
    standardised; categorical features are one-hot encoded, ignoring categories
    not seen in training.
    """

    def __init__(self, categorical: list[str], max_iter: int = 2000) -> None:
        self.categorical = categorical
        self.max_iter = max_iter

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for column in self.categorical:
            values = out[column].astype(object)
            out[column] = values.where(values.notna(), "missing").astype(str)
        return out

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        numeric = [c for c in X.columns if c not in self.categorical]
        prepare = ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        SimpleImputer(
                            strategy="median",
                            add_indicator=True,
                            keep_empty_features=True,
                        ),
                        StandardScaler(),
                    ),
                    numeric,
                ),
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore"),
                    self.categorical,
                ),
            ]
        )
        self.pipeline_ = Pipeline(
            [
                ("prepare", prepare),
                ("model", LogisticRegression(max_iter=self.max_iter)),
            ]
        )
        self.pipeline_.fit(self._prepare(X), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._prepare(X))


ABSENCE_SHARE_COLUMN = "absence_share"
"""Share of attendance marks that are absences; attendance under 90 % is a share
above 0.10."""
FAILED_COLUMN = "assessments_failed"
LEARNER_FAILED_COLUMN = "grades_failed_365d"
"""Failed grades in the 365 days before the as-of date. It is a learner feature,
so it follows a pupil across enrolments, where ``assessments_failed`` starts
again at 0 with each enrolment (with each school year in school records)."""
BEHAVIOUR_COLUMN = "attr_behaviour_notes"
"""Behaviour notes so far, an attribute that school-record sources provide."""
ABSENCE_HOURS_COLUMN = "absence_hours_year"
"""Absence hours in the school year so far, from the learner features."""
LAST_GRADE_COLUMN = "last_score"
TERM_GRADE_COLUMNS = ("grade_mean_term", "grade_mean_previous_term")
"""Mean grade of the current term and of the previous term, learner features on
the 4 to 10 scale of school records. A report gives many subjects' grades on
one date, so the last-grade rule uses the term's mean, not one subject's grade."""
TERM_GRADE_SCALE = (4.0, 10.0)
"""Grade range of the learner features, as ``sources.school.mapping.GRADE_SCALE``."""
ABSENCE_HOUR_THRESHOLDS = (30.0, 50.0, 70.0)
"""Absence-hour alert levels used by Finnish schools: each threshold passed raises
the alert by one step."""
SCHOOL_COLUMN = "school_id"


class NotApplicableError(ValueError):
    """The data lacks the columns a baseline needs; the message names the data."""


def _has_data(X: pd.DataFrame, column: str) -> bool:
    return column in X.columns and bool(X[column].notna().any())


def _not_applicable(
    columns: tuple[str, ...], data_kind: str, all_rows: pd.DataFrame | None
) -> str:
    """Return the message for ``columns`` that are missing or empty on the
    training rows, naming the training rows when ``all_rows`` have the data."""
    named = ", ".join(columns)
    if all_rows is not None and any(_has_data(all_rows, c) for c in columns):
        return (
            f"not applicable: no training row has {data_kind} data ({named}), "
            "though other rows of the source do"
        )
    return f"not applicable: the source has no {data_kind} data ({named})"


class ScoreRule:
    """A rule that scores each row from named feature columns.

    Ranking follows the rule's own score. ``fit`` maps scores to withdrawal rates
    with isotonic regression, so the probabilities keep the rule's order and can
    be compared with the model's on the Brier score. ``tiebreak`` returns the
    rule score, which orders rows that get the same rate.
    """

    name = "rule"
    required: tuple[tuple[str, str], ...] = ()
    """Pairs of (column, what the data is called in a not-applicable message)."""

    def inputs(self, X: pd.DataFrame) -> tuple[tuple[str, str], ...]:
        """Return the (column, data kind) pairs that the rule reads from ``X``."""
        return self.required

    def applicability(
        self, X: pd.DataFrame, all_rows: pd.DataFrame | None = None
    ) -> str | None:
        """Return why the rule cannot run on the training rows ``X``, or None.

        ``all_rows`` are every row of the source. When they have data that
        ``X`` lacks, the message names the training rows as lacking it.
        """
        for column, data_kind in self.inputs(X):
            if not _has_data(X, column):
                return _not_applicable((column,), data_kind, all_rows)
        return None

    def rule_score(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ScoreRule:
        from sklearn.isotonic import IsotonicRegression

        reason = self.applicability(X)
        if reason:
            raise NotApplicableError(f"{self.name}: {reason}")
        self.isotonic_ = IsotonicRegression(
            y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip"
        ).fit(self.rule_score(X), np.asarray(y, dtype=float))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        rates = self.isotonic_.predict(self.rule_score(X))
        return np.column_stack([1 - rates, rates])

    def tiebreak(self, X: pd.DataFrame) -> np.ndarray:
        return self.rule_score(X)


class AbcRule(ScoreRule):
    """The ABC indicator rule: attendance under 90 %, failing grades, behaviour notes.

    The score counts the indicators that are on. Attendance and grades are
    required; a source without behaviour notes gets the A and C indicators only,
    and ``components`` lists the indicators used. Failing grades are those of
    the last 365 days (``LEARNER_FAILED_COLUMN``) when the rows have learner
    features, and otherwise the enrolment's failed assessments so far.
    """

    name = "abc"
    required = (
        (ABSENCE_SHARE_COLUMN, "attendance"),
        (FAILED_COLUMN, "grade"),
    )

    @staticmethod
    def failed_column(X: pd.DataFrame) -> str:
        """Return the column of failing grades that the rule reads from ``X``."""
        if LEARNER_FAILED_COLUMN in X.columns:
            return LEARNER_FAILED_COLUMN
        return FAILED_COLUMN

    def inputs(self, X: pd.DataFrame) -> tuple[tuple[str, str], ...]:
        return (
            (ABSENCE_SHARE_COLUMN, "attendance"),
            (self.failed_column(X), "grade"),
        )

    def components(self, X: pd.DataFrame) -> list[str]:
        used = ["attendance under 90 %", "failing grades"]
        if _has_data(X, BEHAVIOUR_COLUMN):
            used.append("behaviour notes")
        return used

    def rule_score(self, X: pd.DataFrame) -> np.ndarray:
        score = (X[ABSENCE_SHARE_COLUMN].fillna(0) > 0.10).astype(float)
        score += (X[self.failed_column(X)].fillna(0) > 0).astype(float)
        if _has_data(X, BEHAVIOUR_COLUMN):
            score += (X[BEHAVIOUR_COLUMN].fillna(0) > 0).astype(float)
        return score.to_numpy(dtype=float)


class AbsenceHoursRule(ScoreRule):
    """Absence-hour alerts: the score is the number of thresholds (30, 50, 70 h) passed.

    Rows are ordered by the hours themselves within an alert level.
    """

    name = "absence_hours"
    required = ((ABSENCE_HOURS_COLUMN, "absence-hour"),)

    def rule_score(self, X: pd.DataFrame) -> np.ndarray:
        hours = X[ABSENCE_HOURS_COLUMN].fillna(0).to_numpy(dtype=float)
        return sum((hours >= t).astype(float) for t in ABSENCE_HOUR_THRESHOLDS)

    def tiebreak(self, X: pd.DataFrame) -> np.ndarray:
        return X[ABSENCE_HOURS_COLUMN].fillna(0).to_numpy(dtype=float)


class LastGradeRule(ScoreRule):
    """The last-grade rule: the lower the last grade (0-100), the higher the risk.

    A learner with no grade yet ranks above every graded learner, as a teacher
    following up missing work would. When the rows have the learner features
    ``TERM_GRADE_COLUMNS``, the last grade is the mean grade of the current
    term, or of the previous term before the current term's first grade,
    rescaled to 0-100. Otherwise it is the enrolment's ``last_score``.
    """

    name = "last_grade"
    required = ((LAST_GRADE_COLUMN, "grade"),)

    def inputs(self, X: pd.DataFrame) -> tuple[tuple[str, str], ...]:
        if all(column in X.columns for column in TERM_GRADE_COLUMNS):
            return tuple((column, "grade") for column in TERM_GRADE_COLUMNS)
        return self.required

    def applicability(
        self, X: pd.DataFrame, all_rows: pd.DataFrame | None = None
    ) -> str | None:
        columns = tuple(column for column, _ in self.inputs(X))
        if any(_has_data(X, column) for column in columns):
            return None
        return _not_applicable(columns, "grade", all_rows)

    def last_grade(self, X: pd.DataFrame) -> np.ndarray:
        """Return each row's last grade on the 0-100 scale, NaN when ungraded."""
        if self.inputs(X) == self.required:
            return X[LAST_GRADE_COLUMN].to_numpy(dtype=float)
        current, previous = (X[column].astype(float) for column in TERM_GRADE_COLUMNS)
        low, high = TERM_GRADE_SCALE
        return ((current.fillna(previous) - low) / (high - low) * 100).to_numpy()

    def rule_score(self, X: pd.DataFrame) -> np.ndarray:
        grade = self.last_grade(X)
        return np.where(np.isnan(grade), 101.0, 100.0 - grade)


class ContextBaseline:
    """A model that uses only where the learner studies: school and cohort.

    It predicts the training withdrawal rate of the learner's school and cohort,
    shrunk towards the school's rate and then the overall rate by
    ``prior_rows`` pseudo-rows (empirical Bayes), so small or unseen groups fall
    back to the larger group. The school is the ``school_id`` column when the
    rows have one, and otherwise the unit id with the cohort text removed (a
    course or school whose units repeat each cohort).
    """

    name = "school_cohort"

    def __init__(self, prior_rows: float = 20.0) -> None:
        self.prior_rows = prior_rows

    @staticmethod
    def keys(rows: pd.DataFrame) -> pd.DataFrame:
        """Return the ``school`` and ``cohort`` of each row of a feature frame."""
        missing = [c for c in ("unit_id", "cohort") if c not in rows.columns]
        if missing:
            raise KeyError(f"the school-and-cohort baseline needs columns {missing}")
        cohort = rows["cohort"].astype(str)
        if SCHOOL_COLUMN in rows.columns:
            school = rows[SCHOOL_COLUMN].astype(str)
        else:
            unit = rows["unit_id"].astype(str)
            school = pd.Series(
                [u.replace(c, "") for u, c in zip(unit, cohort, strict=True)],
                index=rows.index,
            )
        return pd.DataFrame({"school": school, "cohort": cohort}, index=rows.index)

    def fit(self, rows: pd.DataFrame, y: np.ndarray) -> ContextBaseline:
        keys = self.keys(rows).assign(y=np.asarray(y, dtype=float))
        self.overall_ = float(keys["y"].mean())
        m = self.prior_rows
        school = keys.groupby("school")["y"].agg(["sum", "size"])
        self.school_ = (school["sum"] + m * self.overall_) / (school["size"] + m)
        pair = keys.groupby(["school", "cohort"])["y"].agg(["sum", "size"])
        prior = self.school_.reindex(pair.index.get_level_values("school")).to_numpy()
        self.pair_ = (pair["sum"] + m * prior) / (pair["size"] + m)
        return self

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        keys = self.keys(rows)
        school = keys["school"].map(self.school_).fillna(self.overall_)
        index = pd.MultiIndex.from_frame(keys[["school", "cohort"]])
        pair = pd.Series(self.pair_.reindex(index).to_numpy(), index=rows.index)
        rates = pair.fillna(school).to_numpy(dtype=float)
        return np.column_stack([1 - rates, rates])


RULE_BASELINES: tuple[type[ScoreRule], ...] = (AbcRule, AbsenceHoursRule, LastGradeRule)
"""Rule baselines that run only when the data has their columns."""
