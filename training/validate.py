"""Temporal folds (or stratified cross-validation) with the model and every baseline.

Temporal validation
    Each fold has a cutoff date. Units starting in the ``history_days`` before
    the cutoff train; units starting on or after it (within ``test_window_days``
    when set) test. Test rows of learners who also have training rows are
    dropped, so no learner is on both sides. Inside the training side the
    latest cohort is the validation period: boosters fitted on the earlier
    cohorts are scored on it to choose hyperparameters and boosting rounds.
    With a single training cohort a random 20 % of its learners is the
    validation set instead. The booster is then refitted on every training
    row with the chosen settings. Its calibration is fitted on a later
    held-out period: the latest training cohort, scored by a booster with the
    same settings fitted on the earlier cohorts. This maps what a booster
    trained on the past predicts for the next cohort to what happened, which
    is how the registered model is used. With one training cohort, or with
    ``calibration="cross_fitted"``, the calibration is fitted on cross-fitted
    predictions instead (see :func:`cross_fitted_risk`).
Stratified cross-validation
    For data without a time axis: folds are stratified by label and grouped by
    learner; hyperparameters are chosen once, on the first fold.

The registered model is the latest fold's model (or, for stratified data, a model
trained the same way on all rows), so the figures reported for the latest fold
are figures of the registered model itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from features.build import LABEL, WITHDRAWAL_DATE, FeatureFrame
from models.baselines import (
    RULE_BASELINES,
    ContextBaseline,
    LogisticBaseline,
    RuleBaseline,
)
from models.calibration import Calibration, fit_calibration
from models.risk import fit_risk_model, predict_risk
from models.spec import FeatureSpec
from training.metrics import Scored
from training.tuning import Tuned, tune

logger = logging.getLogger(__name__)

VALIDATION_SHARE = 0.2
"""Share of training learners held out for tuning and calibration when the
training side has a single cohort."""

CALIBRATION_FOLDS = 5
"""Folds of the cross-fitted predictions that the calibration is fitted on."""

CROSS_FITTED = (
    f"cross-fitted booster predictions on every training row ({CALIBRATION_FOLDS} "
    "folds stratified by label and grouped by learner)"
)

CalibrationPeriod = Literal["later_period", "cross_fitted"]
"""Rows the calibration is fitted on. ``later_period`` is the latest training
cohort, scored by a booster fitted on the earlier cohorts. ``cross_fitted`` is
every training row, scored out of fold."""


class NoTemporalFoldError(ValueError):
    """Raised when no temporal cutoff leaves both training and test rows."""


ExtraScorer = Callable[[pd.DataFrame], Scored | None]
"""Scores test rows with an already trained model, for example the champion."""


@dataclass
class Fold:
    """One fold's evaluation rows, every model's scores and the fold's own model."""

    name: str
    rows: np.ndarray
    """Positions of the evaluation rows in the feature frame."""
    scores: dict[str, Scored]
    model: lgb.LGBMClassifier
    spec: FeatureSpec
    calibration: Calibration
    tuned: Tuned
    details: dict[str, Any] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)


@dataclass
class Validation:
    """All folds, the model to register and what was skipped."""

    kind: str
    folds: list[Fold]
    final: Fold
    """The fold whose model is registered (the latest temporal fold)."""
    skipped: list[str] = field(default_factory=list)


def with_label_window(
    frame: FeatureFrame, enrolments: pd.DataFrame, window_days: int | None
) -> FeatureFrame:
    """Return ``frame`` labelled by withdrawal within ``window_days`` of the as-of date.

    With ``window_days`` None the label is any later withdrawal from the unit.
    Adds ``withdrawal_date`` (missing unless the label is 1), used for lead time.
    A frame labelled from study-right histories already has ``withdrawal_date``
    and its label follows the :class:`~features.labels.LabelRule`; it is
    returned unchanged.
    """
    if WITHDRAWAL_DATE in frame.data.columns:
        return frame
    indexed = enrolments.set_index("enrolment_id")
    data = frame.data
    end = data["enrolment_id"].map(indexed["end_date"])
    withdrawn = (data["enrolment_id"].map(indexed["end_reason"]) == "withdrawn") & (
        end > data["asof_date"]
    )
    if window_days is not None:
        horizon = data["asof_date"] + pd.Timedelta(days=int(window_days))
        withdrawn &= end <= horizon
    withdrawn = withdrawn.to_numpy(dtype=bool)
    data = data.assign(
        **{LABEL: withdrawn.astype(int), WITHDRAWAL_DATE: end.where(withdrawn)}
    )
    return replace(frame, data=data)


def _random_validation(
    data: pd.DataFrame, train: np.ndarray, y: np.ndarray, seed: int
) -> np.ndarray:
    positions = np.flatnonzero(train)
    splitter = StratifiedGroupKFold(
        n_splits=round(1 / VALIDATION_SHARE), shuffle=True, random_state=seed
    )
    _, valid_rows = next(
        splitter.split(
            positions, y[positions], data["learner_id"].to_numpy()[positions]
        )
    )
    valid = np.zeros(len(data), dtype=bool)
    valid[positions[valid_rows]] = True
    return valid


@dataclass
class FoldFit:
    """Booster, calibration, baselines and test scores of one fold."""

    scores: dict[str, Scored]
    model: lgb.LGBMClassifier
    spec: FeatureSpec
    calibration: Calibration
    calibrated_on: str
    tuned: Tuned
    not_applicable: dict[str, str]
    """Baselines that could not be fitted, with the reason."""
    constant_on_test: dict[str, str] = field(default_factory=dict)
    """Fitted baselines that give every test row the same score, with the reason."""


def fit_fold(
    frame: FeatureFrame,
    fit: np.ndarray,
    valid: np.ndarray,
    test: np.ndarray,
    trials: int,
    seed: int,
    tuned: Tuned | None = None,
    calibration_rows: CalibrationPeriod = "cross_fitted",
    valid_name: str = "",
) -> FoldFit:
    """Fit the model and every applicable baseline on one fold; score the test rows.

    ``valid`` rows choose the booster's hyperparameters (unless ``tuned`` is
    given); the booster and the baselines are then fitted on ``fit | valid``.
    With ``calibration_rows`` ``later_period`` the calibration is fitted on
    the ``valid`` rows (``valid_name`` describes them), scored by a booster
    fitted on the ``fit`` rows. It falls back to cross-fitted predictions
    when the ``valid`` rows have only one class.
    """
    X, y, data = frame.X, frame.y, frame.data
    train = fit | valid
    if tuned is None:
        tuned = tune(X[fit], y[fit], X[valid], y[valid], trials, seed)
    params = tuned.params | {"n_estimators": tuned.rounds, "random_state": seed}
    # The validation rows only choose the hyperparameters and fit the
    # calibration. The booster then learns from every training row, including
    # the latest cohort, and the calibration never changes it.
    model, spec = fit_risk_model(X[train], y[train], params)
    calibration, calibrated_on = _fit_fold_calibration(
        frame, fit, valid, params, seed, calibration_rows, valid_name
    )

    X_test = X[test]
    raw = predict_risk(model, spec, X_test)
    scores = {"model": Scored(calibration.apply(raw), raw)}

    not_applicable = {}
    rule = RuleBaseline()
    reason = rule.applicability(X[train])
    if reason:
        not_applicable[rule.name] = reason
    else:
        rule_p = rule.fit(X[train], y[train]).predict_proba(X_test)[:, 1]
        scores[rule.name] = Scored(rule_p, rule.rule_score(X_test))
    logistic = LogisticBaseline(frame.categorical).fit(X[train], y[train])
    logistic_p = logistic.predict_proba(X_test)[:, 1]
    scores["logistic"] = Scored(logistic_p, logistic_p)

    for rule_class in RULE_BASELINES:
        baseline = rule_class()
        reason = baseline.applicability(data[train], data)
        if reason:
            not_applicable[baseline.name] = reason
            continue
        baseline.fit(data[train], y[train])
        scores[baseline.name] = Scored(
            baseline.predict_proba(data[test])[:, 1], baseline.tiebreak(data[test])
        )
    context = ContextBaseline().fit(data[train], y[train])
    context_p = context.predict_proba(data[test])[:, 1]
    scores[context.name] = Scored(context_p, context_p)
    return FoldFit(
        scores,
        model,
        spec,
        calibration,
        calibrated_on,
        tuned,
        not_applicable,
        _constant_on_test(scores, data[test]),
    )


def _constant_on_test(scores: dict[str, Scored], test: pd.DataFrame) -> dict[str, str]:
    """Return the baselines whose scores do not vary over the ``test`` rows.

    A baseline is applicable when its inputs vary on the training rows, but
    the test period can still lack them, for example grades when every test
    row precedes the first grade. Such a baseline ranks no one there: its
    ROC-AUC is 0.5 by construction, and beating it shows little.
    """
    constant = {}
    rules = {rule.name: rule for rule in RULE_BASELINES}
    for name, scored in scores.items():
        if name == "model" or len(scored.probability) < 2:
            continue
        if (
            pd.Series(scored.probability).nunique(dropna=False) > 1
            or pd.Series(scored.tiebreak).nunique(dropna=False) > 1
        ):
            continue
        reason = "gives every test row the same score, so it ranks no one there"
        inputs = rules[name]().inputs(test) if name in rules else ()
        for column, data_kind in inputs:
            if column not in test.columns or test[column].isna().all():
                reason += f". No test row has {data_kind} data in {column}"
        constant[name] = reason
    return constant


def _fit_fold_calibration(
    frame: FeatureFrame,
    fit: np.ndarray,
    valid: np.ndarray,
    params: dict[str, Any],
    seed: int,
    calibration_rows: CalibrationPeriod,
    valid_name: str,
) -> tuple[Calibration, str]:
    """Fit the fold's calibration; return it with a description of its rows."""
    X, y = frame.X, frame.y
    if calibration_rows == "later_period":
        if len(np.unique(y[valid])) == 2:
            earlier, spec = fit_risk_model(X[fit], y[fit], params)
            raw = predict_risk(earlier, spec, X[valid])
            return fit_calibration(raw, y[valid]), (
                f"{valid_name}: {int(valid.sum())} rows scored by a booster with "
                "the same settings fitted on the earlier training cohorts"
            )
        logger.warning(
            "the later period %s has one class; calibrating on cross-fitted "
            "predictions instead",
            valid_name,
        )
    train = fit | valid
    calibration = fit_calibration(
        cross_fitted_risk(frame, train, params, seed), y[train]
    )
    return calibration, CROSS_FITTED


def cross_fitted_risk(
    frame: FeatureFrame,
    rows: np.ndarray,
    params: dict[str, Any],
    seed: int,
    folds: int = CALIBRATION_FOLDS,
) -> np.ndarray:
    """Return out-of-fold booster probabilities for the ``rows`` mask, in row order.

    Folds are stratified by label and grouped by learner, and each fold's booster
    is fitted with ``params`` on the other folds. Calibrating on these
    probabilities lets the final booster train on every row, as scikit-learn's
    ``CalibratedClassifierCV(ensemble=False)`` does.
    """
    positions = np.flatnonzero(rows)
    X = frame.X.iloc[positions]
    y = frame.y[positions]
    groups = frame.data["learner_id"].to_numpy()[positions]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out_of_fold = np.empty(len(positions))
    for fit_rows, score_rows in splitter.split(X, y, groups):
        model, spec = fit_risk_model(X.iloc[fit_rows], y[fit_rows], params)
        out_of_fold[score_rows] = predict_risk(model, spec, X.iloc[score_rows])
    return out_of_fold


@dataclass
class TemporalSplit:
    """Row masks of one temporal fold.

    ``overlap`` marks the rows dropped from the test side because their learner
    has training rows, ``purged`` the training rows dropped because their
    label window reaches the cutoff.
    """

    train: np.ndarray
    test: np.ndarray
    overlap: np.ndarray
    purged: np.ndarray


def temporal_split(
    data: pd.DataFrame,
    unit_start: pd.Series,
    cutoff: pd.Timestamp,
    *,
    history_days: int | None = None,
    test_window_days: int | None = None,
    disjoint_learners: bool = True,
    purge_label_days: int | None = None,
) -> TemporalSplit:
    """Split ``data`` at ``cutoff`` by each row's unit start (``unit_start``).

    The settings are those of :func:`validate_temporal`, which documents them.
    """
    train = (unit_start < cutoff).to_numpy().copy()
    if history_days is not None:
        train &= (unit_start >= cutoff - pd.Timedelta(days=history_days)).to_numpy()
    purged = np.zeros(len(data), dtype=bool)
    if purge_label_days is not None:
        window_end = data["asof_date"] + pd.Timedelta(days=purge_label_days)
        purged = train & (window_end >= cutoff).to_numpy()
        train &= ~purged
    test = (unit_start >= cutoff).to_numpy().copy()
    if test_window_days is not None:
        test &= (unit_start < cutoff + pd.Timedelta(days=test_window_days)).to_numpy()
    overlap = test & data["learner_id"].isin(data.loc[train, "learner_id"]).to_numpy()
    if not disjoint_learners:
        overlap[:] = False
    return TemporalSplit(train, test & ~overlap, overlap, purged)


def validate_temporal(
    frame: FeatureFrame,
    units: pd.DataFrame,
    cutoffs: list[str],
    history_days: int | None = None,
    test_window_days: int | None = None,
    trials: int = 15,
    seed: int = 0,
    on_fold: Callable[[str], None] | None = None,
    disjoint_learners: bool = True,
    purge_label_days: int | None = None,
    calibration: CalibrationPeriod = "later_period",
) -> Validation:
    """Run one temporal fold per cutoff; folds without train or test rows are skipped.

    With ``disjoint_learners``, test rows of learners who also have training
    rows are dropped. School records follow the same pupils from year to year
    and the model scores them again the next year, so their source turns it
    off. With ``purge_label_days``, training rows whose label is judged on
    events up to that many days after the as-of date reaching the cutoff are
    dropped, so no training label looks into the test period. For labels from
    study-right histories that is the label window plus the transfer gap. ``calibration`` chooses the
    rows the calibration is fitted on (see :data:`CalibrationPeriod`); a fold
    with one training cohort has no later period and is always cross-fitted.

    Raises
    ------
    NoTemporalFoldError
        If no cutoff leaves both training and test rows.
    """
    data = frame.data
    unit_start = data["unit_id"].map(units.set_index("unit_id")["start_date"])
    folds, skipped = [], []
    for cutoff_text in sorted(cutoffs):
        cutoff = pd.Timestamp(cutoff_text)
        split = temporal_split(
            data,
            unit_start,
            cutoff,
            history_days=history_days,
            test_window_days=test_window_days,
            disjoint_learners=disjoint_learners,
            purge_label_days=purge_label_days,
        )
        train, test, overlap, purged = (
            split.train,
            split.test,
            split.overlap,
            split.purged,
        )
        if not train.any() or not test.any():
            message = (
                f"cutoff {cutoff.date()}: {int(train.sum())} training rows and "
                f"{int(test.sum())} test rows, so the fold was skipped"
            )
            logger.warning(message)
            skipped.append(message)
            continue

        cohort_start = unit_start[train].groupby(data.loc[train, "cohort"]).min()
        if len(cohort_start) > 1:
            latest = cohort_start.idxmax()
            valid = train & (data["cohort"] == latest).to_numpy()
            held_out = f"the latest training cohort {latest}"
            calibration_rows = calibration
        else:
            valid = _random_validation(data, train, frame.y, seed)
            held_out = "a random 20 % of training learners (one training cohort)"
            calibration_rows = "cross_fitted"
        fit = train & ~valid

        name = f"cutoff_{cutoff.date()}"
        if on_fold:
            on_fold(name)
        fitted = fit_fold(
            frame,
            fit,
            valid,
            test,
            trials,
            seed,
            calibration_rows=calibration_rows,
            valid_name=held_out,
        )
        tuned = fitted.tuned
        rows = np.flatnonzero(test)
        details = {
            "cutoff": str(cutoff.date()),
            "train_cohorts": sorted(cohort_start.index.tolist()),
            "test_cohorts": sorted(data.loc[test, "cohort"].unique().tolist()),
            "train_rows": int(train.sum()),
            "test_rows": len(rows),
            "test_rows_dropped_learner_in_training": int(overlap.sum()),
            "training_rows_dropped_label_after_cutoff": int(purged.sum()),
            "label_known_after_days": purge_label_days,
            "validation_period": held_out,
            "boosting_rounds": tuned.rounds,
            "hyperparameters": tuned.params,
            "optuna_trials": tuned.trials,
            "calibration": fitted.calibration.method,
            "calibrated_on": fitted.calibrated_on,
            "baselines_constant_on_test": fitted.constant_on_test,
        }
        logger.info(
            "fold %s: %d training rows, %d test rows, %d dropped",
            name,
            int(train.sum()),
            len(rows),
            int(overlap.sum()),
        )
        folds.append(
            Fold(
                name,
                rows,
                fitted.scores,
                fitted.model,
                fitted.spec,
                fitted.calibration,
                tuned,
                details,
                fitted.not_applicable,
            )
        )
    if not folds:
        raise NoTemporalFoldError(
            f"no temporal cutoff in {cutoffs} leaves both training and test rows "
            f"with known labels ({'; '.join(skipped)}). The units with labelled "
            f"rows start from {unit_start.min():%Y-%m-%d} to "
            f"{unit_start.max():%Y-%m-%d}, and a cutoff needs units on both sides "
            "(--cutoff). Otherwise the data may span too few school years for "
            "the label window: shorten the window (--label-window-days) or add "
            "years"
        )
    return Validation("temporal", folds, folds[-1], skipped)


def validate_stratified(
    frame: FeatureFrame,
    folds: int = 5,
    trials: int = 15,
    seed: int = 0,
    on_fold: Callable[[str], None] | None = None,
) -> Validation:
    """Cross-validate with folds stratified by label and grouped by learner.

    Each fold chooses its hyperparameters on a random 20 % of its own training
    learners, so no fold's test rows take part in choosing its model. The last
    entry of ``folds`` pools the out-of-fold scores of all folds. Its model is
    trained on every row and calibrated on cross-fitted predictions. Its
    hyperparameters are chosen the same way, on a random 20 % of all learners.
    """
    data, y = frame.data, frame.y
    groups = data["learner_id"].to_numpy()
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    results: list[Fold] = []
    for index, (train_rows, test_rows) in enumerate(splitter.split(data, y, groups)):
        train = np.zeros(len(data), dtype=bool)
        train[train_rows] = True
        test = np.zeros(len(data), dtype=bool)
        test[test_rows] = True
        valid = _random_validation(data, train, y, seed)
        name = f"fold_{index + 1}"
        if on_fold:
            on_fold(name)
        fitted = fit_fold(frame, train & ~valid, valid, test, trials, seed)
        results.append(
            Fold(
                name,
                np.flatnonzero(test),
                fitted.scores,
                fitted.model,
                fitted.spec,
                fitted.calibration,
                fitted.tuned,
                {
                    "test_rows": int(test.sum()),
                    "boosting_rounds": fitted.tuned.rounds,
                    "hyperparameters": fitted.tuned.params,
                    "baselines_constant_on_test": fitted.constant_on_test,
                },
                fitted.not_applicable,
            )
        )

    everything = np.ones(len(data), dtype=bool)
    valid = _random_validation(data, everything, y, seed)
    final = fit_fold(frame, everything & ~valid, valid, valid, trials, seed)
    rows = np.concatenate([fold.rows for fold in results])
    # A baseline that could not run on one fold's training rows is left out of
    # the pooled scores, with the first fold's reason.
    not_applicable_anywhere: dict[str, str] = {}
    for fold in results:
        not_applicable_anywhere = fold.not_applicable | not_applicable_anywhere
    pooled_scores = {
        name: Scored(
            np.concatenate([f.scores[name].probability for f in results]),
            np.concatenate([f.scores[name].tiebreak for f in results]),
        )
        for name in results[0].scores
        if all(name in f.scores for f in results)
    }
    pooled = Fold(
        "out_of_fold",
        rows,
        pooled_scores,
        final.model,
        final.spec,
        final.calibration,
        final.tuned,
        {
            "folds": folds,
            "test_rows": len(rows),
            "boosting_rounds": final.tuned.rounds,
            "hyperparameters": final.tuned.params,
            "optuna_trials": final.tuned.trials,
            "hyperparameters_chosen_on": (
                "each fold: a random 20 % of its own training learners; "
                "the registered model: a random 20 % of all learners"
            ),
            "calibration": final.calibration.method,
            "calibrated_on": f"{final.calibrated_on} (no time axis)",
            "baselines_constant_on_test": {
                name: f"{fold.name}: {reason}"
                for fold in results
                for name, reason in fold.details["baselines_constant_on_test"].items()
            },
        },
        not_applicable_anywhere,
    )
    return Validation("stratified", [*results, pooled], pooled)


def add_scores(
    validation: Validation, frame: FeatureFrame, scorers: dict[str, ExtraScorer]
) -> None:
    """Score each fold's test rows with already trained models, such as the champion."""
    for fold in validation.folds:
        X = frame.data.iloc[fold.rows]
        for name, scorer in scorers.items():
            scored = scorer(X)
            if scored is not None:
                fold.scores[name] = scored
