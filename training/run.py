"""The main job: features, training, evaluation, registration, audit, reason codes.

:func:`run_main_job` takes validated contract tables and a :class:`RunConfig`;
it never learns which source the tables came from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fairness.attributes import point_in_time_attributes
from fairness.policy import load_policy
from fairness.registry import store_audit
from fairness.report import write_report
from features.build import FeatureFrame, asof_points_by_offset, build_features
from features.labels import LabelRule, label_horizon
from models.reason_text import top_reasons
from models.reasons import contributions, shap_contributions
from models.risk import predict_risk
from models.store import (
    ASOF_ORDER_PARAM,
    CHALLENGER,
    CHALLENGER_REASON_TAG,
    CHAMPION,
    MODEL_NAME_PREFIX,
    TRAINING_DATA_TAG,
    champion_version,
)
from sources.contract import InputTables
from training.label_coverage import (
    censoring_explanation,
    latest_labelled_cohort_start,
)
from training.label_settings import (
    LABEL_SETTINGS_TAG,
    label_settings,
    label_settings_tag,
)
from training.model_card import group_metrics, write_model_card
from training.registry import ensure_experiment, log_and_register
from training.results import (
    add_recorded_figures,
    evaluate_validation,
    legacy_metrics,
)
from training.tracking import frame_fingerprint, log_run_details
from training.validate import (
    CalibrationPeriod,
    ExtraScorer,
    Fold,
    NoTemporalFoldError,
    Validation,
    add_scores,
    validate_stratified,
    validate_temporal,
    with_label_window,
)
from training.version_audit import (
    LABEL_RULE_PARAM_PREFIX,
    EvaluationRows,
    audit_input,
    audit_payload,
    data_description,
    derived_notes,
    group_audit,
    label_definition,
    left_out_note,
)

logger = logging.getLogger(__name__)

StepCallback = Callable[[str], None]

LATEST_COHORT = "latest-cohort"


@dataclass
class RunConfig:
    """Settings of one main-job run."""

    source: str
    asof_offsets_days: list[int]
    """As-of dates, as days after each unit's start."""
    asof_labels: dict[int, str]
    """Name of each as-of offset in the summary, for example ``{30: "day_30"}``."""
    validation: Literal["temporal", "stratified"]
    temporal_cutoff: str | None = None
    """Cutoff of the latest temporal fold: units starting before this ISO date
    train the registered model, later ones test it. ``LATEST_COHORT`` means the
    start of the latest cohort in the data."""
    earlier_cutoffs: list[str] = field(default_factory=list)
    """Cutoffs (ISO dates) of further, earlier temporal folds."""
    history_days: int | None = None
    """Training history length: only units starting this many days before a
    cutoff train; None uses all earlier units."""
    test_window_days: int | None = None
    """Units starting this many days after a cutoff test; None tests all later units."""
    label_window_days: int | None = None
    """The label is a withdrawal within this many days after the as-of date;
    None counts any later withdrawal from the unit."""
    undated_outcome: str | None = None
    """Reason the source's outcome has no date, or None when it has one. Such a
    source places every withdrawal one day after the as-of date, so a label
    window of one day or more gives the same label and is rejected."""
    learner_features: bool = False
    """Add the declarative learner features (features.definitions)."""
    disjoint_learners: bool = True
    """Drop test rows of learners who also have training rows."""
    label_rule: LabelRule | None = None
    """Label settings for sources with study-right histories. When set, training
    rows whose label window reaches the temporal cutoff are dropped."""
    calibration: CalibrationPeriod = "later_period"
    """Rows the calibration is fitted on in temporal folds with more than one
    training cohort (see :data:`training.validate.CalibrationPeriod`)."""
    folds: int = 5
    top_share: float = 0.10
    k_per_unit: int | None = 10
    """Capacity: learners a welfare team can review per unit and as-of date."""
    tuning_trials: int = 15
    """Optuna trials per temporal fold (stratified: once, on the first fold)."""
    bootstrap_resamples: int = 200
    model_name: str | None = None
    """Registered model name; ``ajoissa-<source>`` when not set."""
    alias: str = CHAMPION
    sensitive_features: list[str] | None = None
    """Learner columns to audit; the fairness policy's list when not set."""
    min_group_size: int | None = None
    """Minimum distinct learners per shown group; the policy's when not set."""
    reason_count: int = 3
    seed: int = 0
    reference_groups: dict[str, str] = field(default_factory=dict)
    """Reference group per sensitive attribute, set by the reviewers. The summary
    then compares every shown group's rates with the reference group's."""
    source_details: dict[str, Any] = field(default_factory=dict)
    """Facts about the input (such as a mapping file) copied into the summary."""


def _noop(_: str) -> None:
    pass


def run_main_job(
    tables: InputTables,
    config: RunConfig,
    out_dir: Path,
    on_step: StepCallback = _noop,
    extra_scorers: dict[str, ExtraScorer] | None = None,
    on_registered: Callable[[dict[str, Any]], None] | None = None,
    recorded_figures: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the main job and write ``out_dir/summary.json``; return the summary.

    Outputs in ``out_dir``: ``summary.json``, ``fairness_report.html`` and
    ``reason_codes.jsonl`` (one line per evaluated row). The model is logged to
    MLflow, registered and given ``config.alias``. ``extra_scorers`` score each
    fold's test rows with already trained models (for example the champion) so
    that they appear next to the baselines; ``recorded_figures`` adds models'
    figures from their own runs instead (see
    :func:`training.results.add_recorded_figures`). ``on_registered`` runs
    inside the MLflow run after registration, with the summary, before
    ``summary.json`` is written, so the keys it adds are written too.
    """
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)

    on_step("validating input tables")
    tables = tables.validated()

    on_step("building point-in-time features")
    points = asof_points_by_offset(tables.units, config.asof_offsets_days)
    frame = build_features(
        tables, points, config.label_rule, with_learner_features=config.learner_features
    )
    if frame.data.empty and frame.rows_past_data_end:
        raise ValueError(
            "no feature row has a known label. "
            + _censoring_explanation(frame, tables, config)
        )
    if frame.data.empty:
        raise ValueError(
            "no enrolment is active at any as-of date; check the as-of offsets "
            f"{config.asof_offsets_days} against the units' start and end dates"
        )

    frame = with_label_window(frame, tables.enrolments, config.label_window_days)

    on_step(f"training and evaluating ({config.validation} validation)")
    validation = _validate(frame, tables, config)
    add_scores(validation, frame, extra_scorers or {})
    fold = validation.final

    on_step("computing fold metrics with bootstrap intervals")
    evaluation = evaluate_validation(
        frame,
        validation,
        config.asof_labels,
        config.top_share,
        config.k_per_unit,
        config.bootstrap_resamples,
        config.seed,
    )
    if recorded_figures:
        add_recorded_figures(evaluation, recorded_figures)
    metrics = legacy_metrics(frame, fold, config.asof_labels, config.top_share)

    on_step("registering the model in MLflow")
    import mlflow

    experiment_id = ensure_experiment()
    model_name = config.model_name or f"{MODEL_NAME_PREFIX}{config.source}"
    has_history = len(tables.study_right_states) > 0
    settings = _label_settings(config, has_history)
    alias, challenger_reason = _alias_to_set(model_name, config.alias)
    unvalidated = _unvalidated_reason(evaluation)
    if unvalidated and alias == CHAMPION:
        # A model whose test rows show no or only a few dropouts was not
        # measured, so it must not go live unreviewed.
        logger.warning("registering a challenger, not a champion: %s", unvalidated)
        alias, challenger_reason = CHALLENGER, unvalidated
    tags = {
        "source": config.source,
        "validation": config.validation,
        TRAINING_DATA_TAG: frame_fingerprint(frame.data),
        LABEL_SETTINGS_TAG: label_settings_tag(settings),
    }
    if challenger_reason is not None:
        tags[CHALLENGER_REASON_TAG] = challenger_reason
    with mlflow.start_run(experiment_id=experiment_id, run_name=config.source) as run:
        mlflow.log_params(_run_params(config, frame, fold))
        mlflow.log_metrics(_flat_metrics(metrics))
        log_run_details(tables, frame, evaluation, out_dir)
        registered = log_and_register(
            fold.model,
            fold.spec,
            frame.X.head(50),
            model_name=model_name,
            # The alias is set last, so a run that fails later never replaces
            # the served model.
            alias=None,
            tags=tags,
            calibration=fold.calibration,
        )

        try:
            on_step("auditing fairness")
            report_path, audit = _write_fairness_report(
                frame, tables, fold, config, out_dir, registered.uri
            )
            store_audit(registered.name, registered.version, audit, report_path)

            on_step("computing reason codes from SHAP values")
            reasons_path, shap_check = _write_reason_codes(frame, fold, config, out_dir)
            example_path = _write_example_request(frame, fold, out_dir)

            summary = {
                "source": config.source,
                "validation": _validation_description(config, fold),
                "model_uri": registered.uri,
                "model_name": registered.name,
                "model_version": registered.version,
                "model_alias": alias,
                "challenger_reason": challenger_reason,
                "mlflow_run_id": run.info.run_id,
                "tracking_uri": mlflow.get_tracking_uri(),
                "fairness_report": str(report_path.resolve()),
                "reason_codes": str(reasons_path.resolve()),
                "example_request": str(example_path.resolve()),
                "operating_point": _operating_point(config),
                "rows": _row_counts(frame, fold, config),
                "metrics": metrics,
                "baselines_not_applicable": fold.not_applicable,
                "evaluation": evaluation,
                "shap_additivity_max_error": shap_check,
                "features": fold.spec.features,
                "label_definition": _label_definition(config, has_history),
                "label_settings": settings,
                "absent_tables": {
                    table: list(features)
                    for table, features in tables.absent_tables.items()
                },
            }
            if unvalidated:
                summary["not_validated"] = unvalidated
            if config.source_details:
                summary["source_details"] = config.source_details
            if config.reference_groups:
                summary["fairness_against_reference"] = _against_reference(
                    audit, config.reference_groups
                )
            on_step("writing the model card")
            card_md, card_html = write_model_card(
                summary, _card_groups(frame, tables, fold, config), out_dir
            )
            mlflow.log_artifact(str(card_md), "model_card")
            mlflow.log_artifact(str(card_html), "model_card")
            mlflow.MlflowClient().set_model_version_tag(
                registered.name,
                registered.version,
                "model_card",
                "model_card/model_card.md",
            )
            summary["model_card"] = str(card_md.resolve())
            summary["model_card_html"] = str(card_html.resolve())
            if on_registered is not None:
                on_registered(summary)
            summary["wall_time_seconds"] = round(time.perf_counter() - started, 1)
            summary_path = out_dir / "summary.json"
            _write_json_atomically(summary_path, summary)
            mlflow.log_artifact(str(summary_path))
            mlflow.log_artifact(str(report_path))
            mlflow.MlflowClient().set_registered_model_alias(
                registered.name, alias, registered.version
            )
        except BaseException:
            # Without its audit, card and alias the version is unusable, and the
            # reviewer screens would still list it.
            _delete_version(registered)
            raise
        logger.info(
            "set alias %s on %s version %s",
            alias,
            registered.name,
            registered.version,
        )
    logger.info(
        "main job for %s finished in %.1f s",
        config.source,
        summary["wall_time_seconds"],
    )
    return summary


def _delete_version(registered: Any) -> None:
    """Delete a model version that a failed or interrupted run registered."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().delete_model_version(registered.name, registered.version)
    except MlflowException:
        logger.exception(
            "failed to delete %s version %s after the run failed; delete it by hand",
            registered.name,
            registered.version,
        )
        return
    logger.warning(
        "deleted %s version %s because the run failed before it finished",
        registered.name,
        registered.version,
    )


MIN_TEST_ROWS_PER_CLASS = 10
"""Test rows of each class (dropout or not) that the latest fold needs before
its figures validate a model for the champion alias."""


def _unvalidated_reason(evaluation: dict[str, Any]) -> str | None:
    """Return why the latest fold did not validate the model, or None."""
    latest = evaluation["folds"][-1]
    model = latest["overall"].get("model", {})
    if model.get("roc_auc") is None:
        return (
            f"the test rows of fold {latest['name']} have only one class (no "
            "dropout or no pupil who stayed), so ROC-AUC and precision at k are "
            "undefined and the model was not validated. Test on a period with "
            "dropouts: add data or change the cutoff"
        )
    positives = model["positives"]
    fewer = min(positives, model["rows"] - positives)
    if fewer >= MIN_TEST_ROWS_PER_CLASS:
        return None
    return (
        f"the test rows of fold {latest['name']} have {positives} dropout(s) in "
        f"{model['rows']} rows, and each class needs at least "
        f"{MIN_TEST_ROWS_PER_CLASS}. With so few, ROC-AUC and its interval "
        "depend on a handful of pupils, so the model was not validated. Test on "
        "a longer period: add data, lengthen the label window or change the cutoff"
    )


def _alias_to_set(model_name: str, requested: str) -> tuple[str, str | None]:
    """Return the alias for the new version, which is never a second champion.

    Only ``ajoissa promote`` replaces a champion, after it checks the new
    version against the champion, the baselines and the fairness gate. So a
    run that requests the champion alias for a model that already has one
    gets the challenger alias. The second item is the reason for a challenger
    alias, None for the champion alias.
    """
    if requested == CHALLENGER:
        return requested, "a retrain registers every new version as the challenger"
    if requested != CHAMPION:
        return requested, None
    try:
        current = champion_version(model_name, CHAMPION)
    except LookupError:
        return CHAMPION, None
    logger.info(
        "%s already has champion version %s; registering a challenger",
        model_name,
        current,
    )
    return CHALLENGER, (
        f"{model_name} already has champion version {current}, and only "
        "`ajoissa promote` replaces a champion, after `ajoissa retrain` has "
        "compared the two"
    )


def _label_settings(config: RunConfig, has_history: bool) -> dict[str, Any]:
    return label_settings(
        config.source,
        config.label_rule,
        config.label_window_days,
        has_history=has_history,
        outcome=config.source_details.get("outcome"),
    )


def _label_definition(config: RunConfig, has_history: bool) -> str:
    return label_definition(
        config.label_rule, config.label_window_days, has_history=has_history
    )


def _card_groups(
    frame: FeatureFrame, tables: InputTables, fold: Fold, config: RunConfig
) -> dict[str, list[dict[str, Any]]]:
    data = frame.data.iloc[fold.rows].reset_index(drop=True)
    policy = load_policy()
    attributes = config.sensitive_features or policy.sensitive_attributes
    static = [c for c in attributes if c in tables.learners.columns]
    derived = point_in_time_attributes(
        data, tables.learners, [c for c in attributes if c not in static]
    )
    rows = data[["learner_id", "asof_date"]].merge(
        tables.learners[["learner_id", *static]], on="learner_id", how="left"
    )
    for name, values in derived.items():
        rows[name] = values.to_numpy()
    present = [c for c in attributes if c in static or c in derived]
    return group_metrics(
        rows,
        frame.y[fold.rows],
        fold.scores["model"],
        present,
        config.top_share,
        config.min_group_size or policy.min_group_learners,
        min(config.bootstrap_resamples, 100),
        config.seed,
    )


def _validate(
    frame: FeatureFrame, tables: InputTables, config: RunConfig
) -> Validation:
    if config.validation == "temporal":
        if config.temporal_cutoff is None:
            raise ValueError("temporal validation needs temporal_cutoff (an ISO date)")
        if config.temporal_cutoff == LATEST_COHORT:
            # The latest cohort with labelled rows, because later ones have
            # label windows that run past the data end.
            cutoff = latest_labelled_cohort_start(frame, tables.units)
            config.temporal_cutoff = str(cutoff.date())
        has_history = len(tables.study_right_states) > 0
        try:
            return validate_temporal(
                frame,
                tables.units,
                [*config.earlier_cutoffs, config.temporal_cutoff],
                history_days=config.history_days,
                test_window_days=config.test_window_days,
                trials=config.tuning_trials,
                seed=config.seed,
                disjoint_learners=config.disjoint_learners,
                calibration=config.calibration,
                # A training row's label is known only once the transfer gap
                # after its window has passed, so both must end before the cutoff.
                purge_label_days=(
                    label_horizon(config.label_rule).days
                    if config.label_rule is not None and has_history
                    else None
                ),
            )
        except NoTemporalFoldError as error:
            if frame.data_end is None:
                raise
            cutoffs = [*config.earlier_cutoffs, config.temporal_cutoff]
            raise NoTemporalFoldError(
                f"no temporal cutoff in {cutoffs} leaves both training and test "
                "rows with known labels. "
                + _censoring_explanation(frame, tables, config)
            ) from error
    return validate_stratified(
        frame, folds=config.folds, trials=config.tuning_trials, seed=config.seed
    )


def _censoring_explanation(
    frame: FeatureFrame, tables: InputTables, config: RunConfig
) -> str:
    return censoring_explanation(
        frame,
        tables.units,
        min(config.asof_offsets_days),
        config.label_rule or LabelRule(),
    )


def _write_fairness_report(
    frame: FeatureFrame,
    tables: InputTables,
    fold: Fold,
    config: RunConfig,
    out_dir: Path,
    model_uri: str,
) -> tuple[Path, dict[str, Any]]:
    """Audit the evaluation rows; return the report path and the audit payload.

    The payload is what ``ajoissa audit`` stores too, without the mitigation
    comparison and explanation overview, which that command adds.
    """
    policy = load_policy()
    if config.reference_groups:
        # A mapping file's reference groups take precedence over the policy's rule.
        policy = dataclasses.replace(
            policy,
            reference_overrides=policy.reference_overrides | config.reference_groups,
        )
    data = frame.data.iloc[fold.rows].reset_index(drop=True)
    description = _validation_description(config, fold)["description"]
    rows = EvaluationRows(
        data, frame.y[fold.rows], fold.scores["model"].probability, description
    )
    prepared = audit_input(
        rows,
        tables.learners,
        policy,
        top_share=config.top_share,
        attributes=config.sensitive_features,
    )
    audit = group_audit(prepared, policy, config.min_group_size)
    notes = [
        f"Rows: {len(data)} evaluation rows (learner and as-of date) from "
        f"{description}.",
        *left_out_note(frame),
        *derived_notes(prepared),
        "The mitigation comparison and explanation overview are added by "
        "`ajoissa audit` for a registered version.",
    ]
    if prepared.skipped_intersections:
        skipped = "; ".join(" x ".join(m) for m in prepared.skipped_intersections)
        notes.append(
            f"Intersections skipped because the source lacks a member: {skipped}."
        )
    described = data_description(
        rows, _label_definition(config, len(tables.study_right_states) > 0)
    )
    path = write_report(
        audit,
        out_dir / "fairness_report.html",
        model_uri=model_uri,
        source=config.source,
        operating_point=_operating_point(config),
        notes=notes,
        policy=policy,
        data=described,
    )
    payload = audit_payload(
        audit,
        policy,
        model_uri=model_uri,
        source=config.source,
        operating_point=_operating_point(config),
        rows_description=description,
        extra={
            "skipped_intersections": prepared.skipped_intersections,
            "derived_attributes": prepared.derived,
            "data": described,
        },
    )
    return path, payload


def _against_reference(
    payload: dict[str, Any], reference_groups: dict[str, str]
) -> dict[str, Any]:
    """Return, per attribute with a requested reference group, the audit's comparisons.

    Each shown group maps to its metrics' difference and ratio against the
    reference, with bootstrap intervals, as the audit computed them.
    """
    attributes = payload["audit"]["attributes"]
    out: dict[str, Any] = {}
    for attribute, requested in reference_groups.items():
        entry = attributes.get(attribute)
        if entry is None:
            out[attribute] = {
                "reference": requested,
                "groups": {},
                "reason": "the attribute is not in the audit",
            }
            continue
        groups: dict[str, Any] = {}
        for row in entry["comparisons"]:
            groups.setdefault(str(row["group"]), {})[str(row["metric"])] = {
                key: row.get(key)
                for key in (
                    "value",
                    "reference_value",
                    "difference",
                    "difference_low",
                    "difference_high",
                    "ratio",
                    "ratio_low",
                    "ratio_high",
                )
            }
        out[attribute] = {
            "reference": entry["reference"],
            "groups": groups,
        }
        if entry["reference"] != requested:
            out[attribute]["reason"] = entry.get("reference_reason")
    return out


def _write_reason_codes(
    frame: FeatureFrame, fold: Fold, config: RunConfig, out_dir: Path
) -> tuple[Path, float]:
    """Write reason codes for the evaluation rows; return the path and SHAP check.

    The check is the largest difference between the SHAP values plus base value
    and LightGBM's raw score, in log-odds, over the rows.
    """
    model, spec = fold.model, fold.spec
    data = frame.data.iloc[fold.rows].reset_index(drop=True)
    X = data[spec.features]
    values, base = shap_contributions(model, spec, X)
    raw = model.booster_.predict(spec.conform(X), raw_score=True)
    additivity_error = float(np.max(np.abs(values.sum(axis=1) + base - raw)))
    fast_values, _ = contributions(model, spec, X.head(200))
    if not np.allclose(fast_values, values[: len(fast_values)], atol=1e-6):
        raise RuntimeError("LightGBM pred_contrib and shap.TreeExplainer disagree")
    # Sensitive attributes and their proxies are never reasons; each reason
    # carries a sentence in Finnish, Swedish and English.
    hidden = tuple(config.sensitive_features or load_policy().sensitive_attributes)
    reasons = [
        top_reasons(
            values[i],
            X.iloc[i],
            spec.features,
            top_n=config.reason_count,
            exclude=hidden,
        )
        for i in range(len(X))
    ]
    probabilities = predict_risk(model, spec, X, fold.calibration)

    path = out_dir / "reason_codes.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.unlink(missing_ok=True)
    # Pupil-level scores and reasons: readable by the owner only, as the
    # fairness report is.
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for i, row in enumerate(data.itertuples(index=False)):
            record = {
                "enrolment_id": row.enrolment_id,
                "learner_id": row.learner_id,
                "asof_date": row.asof_date.date().isoformat(),
                "probability": round(float(probabilities[i]), 6),
                "base_value_log_odds": round(base, 6),
                "reasons": reasons[i],
            }
            handle.write(json.dumps(record, default=str) + "\n")
    os.replace(tmp, path)
    logger.info("wrote reason codes for %d rows", len(data))
    return path, additivity_error


def _write_example_request(
    frame: FeatureFrame, fold: Fold, out_dir: Path, count: int = 3
) -> Path:
    """Write a ``POST /v1/score`` body with the features of a few evaluation rows."""
    X = frame.data.iloc[fold.rows[:count]][fold.spec.features]
    records = json.loads(X.to_json(orient="records"))
    path = out_dir / "example_request.json"
    _write_json_atomically(path, {"records": records})
    return path


def _operating_point(config: RunConfig) -> str:
    return (
        f"top {config.top_share:.0%} of learners by risk score within each as-of date"
    )


def _validation_description(config: RunConfig, fold: Fold) -> dict[str, Any]:
    if config.validation == "temporal":
        description = (
            f"temporal folds at cutoffs {[*config.earlier_cutoffs, config.temporal_cutoff]}"
            f"; the registered model is the latest fold's: units starting before "
            f"{config.temporal_cutoff} train it, later units test it"
        )
    else:
        description = (
            f"stratified {config.folds}-fold cross-validation grouped by learner "
            "(the data has no time axis); metrics are on out-of-fold predictions"
        )
    return {"kind": config.validation, "description": description} | fold.details


def _row_counts(frame: FeatureFrame, fold: Fold, config: RunConfig) -> dict[str, Any]:
    """Row counts, and label rates per as-of date over all feature rows
    (``label_rate_by_asof``) and over the evaluation rows only."""
    data = frame.data
    evaluated = set(data["asof_offset_days"].iloc[fold.rows])

    def rates(rows: pd.DataFrame) -> dict[str, float]:
        return {
            config.asof_labels.get(int(k), f"day_{k}"): round(float(v), 4)
            for k, v in rows.groupby("asof_offset_days")["withdraws_after"]
            .mean()
            .items()
        }

    return {
        "asof_without_evaluation_rows": [
            name
            for offset, name in config.asof_labels.items()
            if offset not in evaluated
        ],
        "feature_rows": int(len(data)),
        "evaluation_rows": int(len(fold.rows)),
        "left_out_label_window_past_data_end": frame.rows_past_data_end,
        "data_end": None if frame.data_end is None else str(frame.data_end.date()),
        "label_rate_by_asof": rates(data),
        "evaluation_label_rate_by_asof": rates(data.iloc[fold.rows]),
    }


def asof_order(offsets: list[int], labels: dict[int, str]) -> str:
    """Return the labels of ``offsets`` in date order, comma-separated.

    The metric names carry only the label (``oct_1.model.roc_auc``), so a
    reader of the run needs this to list the as-of dates by date.
    """
    return ",".join(labels.get(offset, f"day_{offset}") for offset in sorted(offsets))


def _run_params(config: RunConfig, frame: FeatureFrame, fold: Fold) -> dict:
    params = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("asof_labels", "label_rule", "undated_outcome")
    } | {
        "n_features": len(frame.feature_names),
        ASOF_ORDER_PARAM: asof_order(config.asof_offsets_days, config.asof_labels),
    }
    if config.label_rule is not None:
        params |= {
            f"{LABEL_RULE_PARAM_PREFIX}{k}": v
            for k, v in asdict(config.label_rule).items()
        }
    params |= {
        f"lgbm_{k}": v
        for k, v in fold.model.get_params().items()
        if k
        in (
            "n_estimators",
            "learning_rate",
            "num_leaves",
            "min_child_samples",
            "colsample_bytree",
            "reg_lambda",
            "random_state",
        )
    }
    params["calibration"] = fold.calibration.method
    return {k: str(v)[:500] for k, v in params.items()}


def _flat_metrics(metrics: dict[str, dict[str, dict[str, float | None]]]) -> dict:
    return {
        f"{asof}.{model}.{name}": value
        for asof, by_model in metrics.items()
        for model, values in by_model.items()
        for name, value in values.items()
        if value is not None
    }


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
