"""Fairness audit of a registered model version, from its recorded run settings.

The main job audits the model it has just trained; :func:`audit_version` audits
any registered version later. It rebuilds and scores the evaluation rows from
the source tables and the settings recorded in the version's run (as-of offsets,
validation scheme, temporal cutoff, folds, seed, operating point). It then
computes the group audit, the mitigation comparison and the explanation overview
and writes the HTML report. The audit JSON and the report are stored with the
version, where :func:`fairness.gate.check_gate` reads them, when the data is
the data the version was trained and evaluated on.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from fairness.attributes import DERIVATIONS, point_in_time_attributes
from fairness.audit import FairnessAudit, audit_groups
from fairness.policy import FairnessPolicy, load_policy
from features.build import (
    FeatureFrame,
    asof_points_by_offset,
    build_features,
    uses_learner_features,
)
from features.labels import LabelRule, label_horizon
from models.calibration import Calibration
from models.spec import FeatureSpec
from models.store import TRAINING_DATA_TAG
from sources.contract import InputTables
from training.evaluate import top_share_mask
from training.tracking import (
    INPUT_FINGERPRINT_TAG,
    frame_fingerprint,
    table_fingerprints,
)
from training.validate import temporal_split, with_label_window

logger = logging.getLogger(__name__)

LABEL_RULE_PARAM_PREFIX = "label_rule_"
"""Run parameters that record the :class:`~features.labels.LabelRule`."""

StepCallback = Callable[[str], None]


@dataclass
class EvaluationRows:
    """The rows a version is audited on, with their scores.

    ``data`` contains the evaluation rows of the feature frame (keys, features and
    label), ``scores`` the predicted probabilities aligned with it, and
    ``description`` how the rows were chosen and scored.
    """

    data: pd.DataFrame
    y: np.ndarray
    scores: np.ndarray
    description: str
    notes: tuple[str, ...] = ()
    """Report notes on rows left out of ``data``."""
    frame_sha256: str | None = None
    """Fingerprint of the rebuilt feature frame (see
    :func:`training.tracking.frame_fingerprint`), for comparison with the
    version's ``training_data_sha256`` tag."""


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version with its model, feature spec and run settings."""

    name: str
    version: str
    model: lgb.LGBMClassifier
    spec: FeatureSpec
    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    calibration: Calibration | None = None
    run_tags: dict[str, str] = field(default_factory=dict)
    """Tags of the run that trained the version, such as ``input_fingerprint``."""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def load_version(name: str, version: str) -> RegisteredModel:
    """Load a registered version, its feature spec and its run's parameters.

    Raises
    ------
    LookupError
        If the version does not exist.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.store import configure_mlflow

    configure_mlflow()
    client = mlflow.MlflowClient()
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as exc:
        raise LookupError(f"model {name!r} has no version {version!r}") from exc
    uri = f"models:/{name}/{version}"
    info = mlflow.models.get_model_info(uri)
    run = client.get_run(model_version.run_id)
    return RegisteredModel(
        name=name,
        version=str(version),
        model=mlflow.lightgbm.load_model(uri),
        spec=FeatureSpec.from_dict(info.metadata["feature_spec"]),
        run_id=model_version.run_id,
        params=dict(run.data.params),
        tags=dict(model_version.tags),
        calibration=Calibration.from_dict(info.metadata.get("calibration")),
        run_tags=dict(run.data.tags),
    )


def recorded_setting(params: dict[str, str], key: str, default: Any) -> Any:
    """Return a run parameter parsed as a Python literal, or ``default`` if absent."""
    if key not in params:
        return default
    text = params[key]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def recorded_label_settings(
    params: dict[str, str],
) -> tuple[LabelRule | None, int | None]:
    """Return the label rule and the label window that a run recorded.

    The rule applies to sources with study-right histories and the window,
    in days, to the others. Runs from before the rule had its own parameter
    names recorded its settings as ``label_window_days`` and
    ``label_transfer_gap_days``.
    """
    fields = LabelRule.__dataclass_fields__
    rule_settings = {
        name: int(recorded_setting(params, LABEL_RULE_PARAM_PREFIX + name, None))
        for name in fields
        if LABEL_RULE_PARAM_PREFIX + name in params
    }
    if not rule_settings and "label_transfer_gap_days" in params:
        rule_settings = {
            name: int(recorded_setting(params, "label_" + name, None))
            for name in fields
            if "label_" + name in params
        }
        return LabelRule(**rule_settings), None
    window = recorded_setting(params, "label_window_days", None)
    window = None if window in (None, "None") else int(window)
    return (LabelRule(**rule_settings) if rule_settings else None), window


def evaluation_rows(
    tables: InputTables, registered: RegisteredModel, *, folds_default: int = 5
) -> EvaluationRows:
    """Rebuild the evaluation rows of a version and score them.

    Temporal validation: the rows of units starting on or after the recorded
    cutoff, without learners who also appear before it, scored by the registered
    model (the same rule as :func:`training.split.predict_temporal`).
    Stratified validation: every row, scored out of fold by rerunning the
    recorded cross-validation, because the registered model was refitted on all
    rows and would score them in-sample.

    Raises
    ------
    ValueError
        If the run lacks the recorded settings or they select no rows.
    """
    params = registered.params
    offsets = recorded_setting(params, "asof_offsets_days", None)
    validation = recorded_setting(params, "validation", None)
    if offsets is None or validation is None:
        raise ValueError(
            f"run {registered.run_id} of {registered.uri} does not record "
            "asof_offsets_days and validation; audit it with the run that trained it"
        )
    tables = tables.validated()
    label_rule, label_window = recorded_label_settings(params)
    frame = build_features(
        tables,
        asof_points_by_offset(tables.units, list(offsets)),
        label_rule,
        with_learner_features=uses_learner_features(registered.spec.features),
    )
    frame = with_label_window(frame, tables.enrolments, label_window)
    missing = [name for name in registered.spec.features if name not in frame.data]
    if missing:
        raise ValueError(
            f"the source yields no feature columns {missing} that {registered.uri} "
            "expects; audit it with the source it was trained on"
        )
    seed = int(recorded_setting(params, "seed", 0))
    if validation == "temporal":
        cutoff = pd.Timestamp(str(recorded_setting(params, "temporal_cutoff", "")))
        has_history = len(tables.study_right_states) > 0
        split = temporal_split(
            frame.data,
            frame.data["unit_id"].map(tables.units.set_index("unit_id")["start_date"]),
            cutoff,
            history_days=_optional_days(params, "history_days"),
            test_window_days=_optional_days(params, "test_window_days"),
            disjoint_learners=bool(recorded_setting(params, "disjoint_learners", True)),
            purge_label_days=(
                label_horizon(label_rule).days
                if label_rule is not None and has_history
                else None
            ),
        )
        rows = _temporal_rows(
            frame, split.test, cutoff, registered, disjoint=bool(split.overlap.any())
        )
    else:
        folds = int(recorded_setting(params, "folds", folds_default))
        rows = _stratified_rows(frame, folds, seed)
    return dataclasses.replace(
        rows,
        notes=tuple(left_out_note(frame)),
        frame_sha256=frame_fingerprint(frame.data),
    )


def _optional_days(params: dict[str, str], key: str) -> int | None:
    value = recorded_setting(params, key, None)
    return None if value in (None, "None") else int(value)


def _temporal_rows(
    frame: FeatureFrame,
    test: np.ndarray,
    cutoff: pd.Timestamp,
    registered: RegisteredModel,
    *,
    disjoint: bool,
) -> EvaluationRows:
    from models.risk import predict_risk

    data = frame.data
    if not test.any():
        raise ValueError(f"no evaluation rows start on or after {cutoff.date()}")
    rows = data[test].reset_index(drop=True)
    scores = predict_risk(
        registered.model,
        registered.spec,
        rows[registered.spec.features],
        registered.calibration,
    )
    learners = ", without learners seen in training" if disjoint else ""
    description = (
        f"temporal split: units starting on or after {cutoff.date()}{learners}, "
        "scored by the registered model and its calibration"
    )
    return EvaluationRows(rows, frame.y[test], scores, description)


def _stratified_rows(frame: FeatureFrame, folds: int, seed: int) -> EvaluationRows:
    # NOTE: these fold models are not calibrated, unlike the main job's folds, so
    # probability-based group figures (Brier, calibration) differ from the
    # training report. Rankings and selections are unaffected.
    from training.split import predict_stratified

    prediction = predict_stratified(frame, folds=folds, seed=seed)
    rows = frame.data.iloc[prediction.rows].reset_index(drop=True)
    description = (
        f"stratified {folds}-fold cross-validation grouped by learner, rerun with "
        f"seed {seed}; scores are out of fold, from the fold models"
    )
    return EvaluationRows(
        rows, frame.y[prediction.rows], prediction.scores["model"], description
    )


def selected_within_asof(
    data: pd.DataFrame, scores: np.ndarray, share: float
) -> np.ndarray:
    """Select the top ``share`` of rows by score within each as-of offset."""
    selected = np.zeros(len(data), dtype=bool)
    for positions in data.groupby("asof_offset_days").indices.values():
        selected[positions] = top_share_mask(scores[positions], share)
    return selected


@dataclass
class AuditInput:
    """Rows to audit with their sensitive attributes, and which attributes apply."""

    frame: pd.DataFrame
    present: list[str]
    absent: list[str]
    intersections: list[list[str]]
    skipped_intersections: list[list[str]]
    derived: dict[str, str] = field(default_factory=dict)
    """Attributes taken at each row's as-of date, with how they were derived."""


def audit_input(
    rows: EvaluationRows,
    learners: pd.DataFrame,
    policy: FairnessPolicy,
    *,
    top_share: float,
    attributes: list[str] | None = None,
) -> AuditInput:
    """Join the evaluation rows to the learners' sensitive attributes.

    ``attributes`` overrides the policy's list. Attributes the source lacks
    are listed as absent, the policy's ones included when ``attributes``
    leaves them out, and intersections that need one are skipped.
    """
    wanted = list(attributes) if attributes is not None else policy.sensitive_attributes
    # The promotion gate checks the audit against the policy's list, so a policy
    # attribute that the source lacks is recorded as absent, not as left out.
    checked = wanted + [n for n in policy.sensitive_attributes if n not in wanted]
    available = point_in_time_attributes(
        rows.data, learners, [name for name in checked if name not in learners.columns]
    )
    static = [name for name in wanted if name in learners.columns]
    derived = {name: available[name] for name in wanted if name in available}
    present = [name for name in wanted if name in static or name in derived]
    absent = [
        name
        for name in checked
        if name not in learners.columns and name not in available
    ]
    intersections = [m for m in policy.intersections if set(m) <= set(present)]
    skipped = [m for m in policy.intersections if not set(m) <= set(present)]
    frame = rows.data[["learner_id", "asof_offset_days"]].merge(
        learners[["learner_id", *static]],
        on="learner_id",
        how="left",
        validate="many_to_one",
    )
    for name, values in derived.items():
        frame[name] = values.to_numpy()
    frame["y_true"] = rows.y
    frame["score"] = rows.scores
    frame["selected"] = selected_within_asof(rows.data, rows.scores, top_share)
    return AuditInput(
        frame,
        present,
        absent,
        intersections,
        skipped,
        {name: DERIVATIONS[name] for name in derived},
    )


def left_out_note(frame: FeatureFrame) -> list[str]:
    """Return a note on the rows left out because their label is not known yet."""
    if not frame.rows_past_data_end or frame.data_end is None:
        return []
    return [
        f"{frame.rows_past_data_end} feature rows were left out because their "
        "label window, plus the transfer gap in which a new study right can still "
        f"start, runs past the data end {frame.data_end.date()}, so their labels "
        "are not known yet."
    ]


def derived_notes(prepared: AuditInput) -> list[str]:
    """Return one report note per attribute taken at each row's as-of date."""
    return [
        f"The {name} groups are not a learner column: they are the {derivation}."
        for name, derivation in prepared.derived.items()
    ]


def group_audit(
    prepared: AuditInput, policy: FairnessPolicy, min_group_size: int | None = None
) -> FairnessAudit:
    """Run :func:`fairness.audit.audit_groups` with the policy's settings."""
    names = prepared.present + [" x ".join(m) for m in prepared.intersections]
    return audit_groups(
        prepared.frame,
        sensitive_features=prepared.present,
        learner="learner_id",
        min_group_size=min_group_size or policy.min_group_learners,
        intersections=prepared.intersections,
        reference_groups={name: policy.reference_for(name) for name in names},
        bootstrap=policy.bootstrap,
        absent_attributes=prepared.absent,
    )


def audit_payload(
    audit: FairnessAudit,
    policy: FairnessPolicy,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    rows_description: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON stored with a version, which the gate reads."""
    return {
        "policy_version": policy.version,
        "policy": policy.to_dict(),
        "model_uri": model_uri,
        "source": source,
        "operating_point": operating_point,
        "rows": rows_description,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "audit": audit.to_dict(),
    } | (extra or {})


def operating_point(top_share: float) -> str:
    """Describe the operating point in words."""
    return f"top {top_share:.0%} of learners by risk score within each as-of date"


@dataclass(frozen=True)
class DataCheck:
    """Whether the audited data is the data a version was trained and evaluated on."""

    matches: bool | None
    """True when a fingerprint recorded with the version matches, False when
    none does, None when the version records no fingerprint."""
    audited_sha256: str | None
    recorded_sha256: str | None

    def notice(self) -> str | None:
        """Return the report's warning when the data is not known to match."""
        if self.matches:
            return None
        if self.matches is None:
            return (
                "The model version records no fingerprint of the data it was "
                "trained and evaluated on, so these rows may not be its evaluation "
                "data."
            )
        return (
            "These rows are not the data the model version was trained and "
            f"evaluated on: the rebuilt feature rows have SHA-256 "
            f"{self.audited_sha256}, but the version's {TRAINING_DATA_TAG} is "
            f"{self.recorded_sha256}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "matches_training_data": self.matches,
            "audited_sha256": self.audited_sha256,
            TRAINING_DATA_TAG: self.recorded_sha256,
        }


def check_audited_data(
    tables: InputTables, rows: EvaluationRows, registered: RegisteredModel
) -> DataCheck:
    """Compare the audited data with the fingerprints recorded with the version.

    The data matches when the rebuilt feature frame has the version's
    ``training_data_sha256``, or when the input tables have its run's
    ``input_fingerprint``. The second test still recognises the training data
    after a code change that alters the feature frame.
    """
    recorded = registered.tags.get(TRAINING_DATA_TAG)
    recorded_inputs = registered.run_tags.get(INPUT_FINGERPRINT_TAG)
    if recorded is None and recorded_inputs is None:
        return DataCheck(None, rows.frame_sha256, None)
    matches = (recorded is not None and rows.frame_sha256 == recorded) or (
        recorded_inputs is not None
        and table_fingerprints(tables.validated())["all"] == recorded_inputs
    )
    return DataCheck(matches, rows.frame_sha256, recorded)


@dataclass(frozen=True)
class VersionAudit:
    """The outcome of :func:`audit_version`."""

    payload: dict[str, Any]
    report: Path
    data_check: DataCheck
    stored: bool
    """Whether the audit was stored with the version, where the gate reads it."""


def audit_version(
    tables: InputTables,
    registered: RegisteredModel,
    out: Path,
    *,
    source: str,
    on_step: StepCallback = lambda _: None,
    policy: FairnessPolicy | None = None,
    mitigation_sample: int = 20000,
    store_other_data: bool = False,
) -> VersionAudit:
    """Audit a registered version, write the report to ``out`` and store both.

    The audit is stored with the version, replacing the audit that the
    promotion gate reads, only when ``tables`` are the data the version was
    trained and evaluated on (:func:`check_audited_data`), or when
    ``store_other_data`` is true. On other data the report opens with a
    warning that the rows are not the model's evaluation data.
    """
    from fairness.explain import explanation_overview
    from fairness.mitigation import compare_mitigations
    from fairness.registry import store_audit
    from fairness.report import write_report

    policy = policy or load_policy()
    top_share = float(recorded_setting(registered.params, "top_share", 0.10))
    seed = int(recorded_setting(registered.params, "seed", 0))

    on_step("rebuilding and scoring the evaluation rows")
    rows = evaluation_rows(tables, registered)
    data_check = check_audited_data(tables, rows, registered)
    store = bool(data_check.matches) or store_other_data

    on_step("computing group metrics and bootstrap intervals")
    prepared = audit_input(
        rows, tables.validated().learners, policy, top_share=top_share
    )
    audit = group_audit(prepared, policy)

    on_step("comparing mitigation methods")
    target = mitigation_attribute(policy, prepared.present)
    mitigation = compare_mitigations(
        rows.data[registered.spec.features],
        rows.y,
        rows.scores,
        prepared.frame[target] if target else None,
        attribute=target,
        learners=rows.data["learner_id"].to_numpy(),
        top_share=top_share,
        seed=seed,
        max_rows=mitigation_sample,
    )

    on_step("explaining the model's scores")
    explanations = explanation_overview(
        registered.model,
        registered.spec,
        rows.data[registered.spec.features],
        seed=seed,
    )

    on_step("writing and storing the report")
    point = operating_point(top_share)
    payload = audit_payload(
        audit,
        policy,
        model_uri=registered.uri,
        source=source,
        operating_point=point,
        rows_description=rows.description,
        extra={
            "skipped_intersections": prepared.skipped_intersections,
            "derived_attributes": prepared.derived,
            "mitigation": mitigation.to_dict(),
            "explanations": explanations.to_dict(),
            "data": data_description(
                rows,
                label_definition(
                    *recorded_label_settings(registered.params),
                    has_history=len(tables.study_right_states) > 0,
                ),
            ),
            "evaluation_data": data_check.to_dict(),
        },
    )
    notice = data_check.notice()
    if notice is not None:
        notice += (
            " The audit is stored with the version on request, so the promotion "
            "gate reads it."
            if store
            else " The audit is not stored with the version, and the promotion "
            "gate still reads the version's stored audit."
        )
    report = write_report(
        audit,
        out,
        model_uri=registered.uri,
        source=source,
        operating_point=point,
        notes=[
            f"Rows: {rows.description}.",
            *rows.notes,
            *derived_notes(prepared),
        ],
        policy=policy,
        mitigation=mitigation,
        explanations=explanations,
        data=payload["data"],
        data_notice=notice,
    )
    if store:
        store_audit(registered.name, registered.version, payload, report)
    else:
        logger.info(
            "fairness audit of %s not stored: the data is not known to be its "
            "evaluation data",
            registered.uri,
        )
    return VersionAudit(payload, report, data_check, store)


def mitigation_attribute(policy: FairnessPolicy, present: list[str]) -> str | None:
    """Return the policy's mitigation attribute, else the first audited one."""
    if policy.mitigation_attribute in present:
        return policy.mitigation_attribute
    return present[0] if present else None


def label_definition(
    rule: LabelRule | None, window_days: int | None, *, has_history: bool
) -> str:
    """Describe the label in words, for the model card and the reports.

    Sources with study-right histories follow ``rule``, or the rule's defaults
    when it is None. Other sources label a withdrawal from the enrolment,
    within ``window_days`` when it is set.
    """
    if has_history:
        rule = rule or LabelRule()
        return (
            f"1 when the learner drops out within {rule.window_days} days after the "
            "as-of date: a study right ends as resigned or considered resigned "
            f"with no new study right within {rule.transfer_gap_days} days, or "
            "basic education ends before age "
            f"{rule.compulsory_education_until_age} with no study right beyond "
            f"basic education starting within {rule.transfer_gap_days} days; 0 "
            "otherwise. A school change "
            "is not a dropout. Enrolments not active at an as-of date get no row."
        )
    window = (
        f"within {window_days} days after the as-of date"
        if window_days is not None
        else "at any time after the as-of date, before the unit ends"
    )
    return (
        f"1 when the enrolment ends with the learner withdrawing {window}; 0 "
        "otherwise. Enrolments not active at an as-of date get no row."
    )


def data_description(rows: EvaluationRows, label: str) -> dict[str, Any]:
    """Summarise the audited rows and the label (in words) for the report."""
    data = rows.data
    by_asof = (
        pd.DataFrame({"asof": data["asof_offset_days"], "y": rows.y})
        .groupby("asof")["y"]
        .agg(["size", "mean"])
    )
    return {
        "rows": int(len(data)),
        "learners": int(data["learner_id"].nunique()),
        "units": int(data["unit_id"].nunique()),
        "cohorts": sorted(str(c) for c in data["cohort"].unique()),
        "label": label,
        "label_rate": float(np.mean(rows.y)),
        "by_asof": [
            {
                "asof_offset_days": int(k),
                "rows": int(v["size"]),
                "label_rate": float(v["mean"]),
            }
            for k, v in by_asof.iterrows()
        ],
        "selection": rows.description,
    }
