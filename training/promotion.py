"""Retrain a challenger next to the champion, and promote it only when it is better.

The registry uses two aliases per registered model: ``champion`` (served) and
``challenger`` (the latest retrain). With temporal validation a retrain scores
the current champion on the challenger's own test rows, so the comparison at
promotion time is on the same rows. With stratified cross-validation (data
without a time axis) the champion was fitted on every row, so scoring it on the
challenger's out-of-fold rows would score it on its own training rows. There the
retrain takes the champion's cross-validated figures recorded in its own run:
the same protocol, on the data the champion was trained on, which need not be
the challenger's rows. Promotion requires, on the latest
temporal fold (or the pooled out-of-fold rows), a strictly higher ROC-AUC and
precision at k than the champion and every baseline, a passed fairness gate,
no reviewer's rejection of the challenger, artifact files that pass the
integrity check the server makes before it loads a version, and the
champion's label settings (:mod:`training.label_settings`), unless a named
reviewer accepts the change of label.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fairness.signoff import read_signoff, signoff_reasons
from models.risk import predict_risk
from models.store import (
    CHALLENGER,
    CHAMPION,
    ModelIntegrityError,
    configure_mlflow,
    load_registered,
    verify_version,
)
from sources.contract import InputTables
from training.label_settings import label_change_problem, read_label_settings
from training.metrics import Scored
from training.results import PROMOTION_METRICS
from training.run import RunConfig, StepCallback, run_main_job

logger = logging.getLogger(__name__)

FAIRNESS_GATE_MODULE = "fairness.gate"


class NothingToPromoteError(LookupError):
    """The registry has no model of that name, or the model has no challenger."""


def champion_scorer(model_name: str) -> tuple[Any, str | None]:
    """Return a scorer for the current champion and its version, or (None, None)."""
    try:
        champion = load_registered(model_name, CHAMPION)
    except LookupError:
        logger.info(
            "no champion of %s yet; the challenger is compared with baselines only",
            model_name,
        )
        return None, None
    except ModelIntegrityError as exc:
        # The retrain still registers a challenger, and promote reports why it
        # cannot replace this champion.
        logger.warning(
            "the champion of %s is not compared with the challenger: %s",
            model_name,
            exc,
        )
        return None, None

    def score(rows: pd.DataFrame) -> Scored | None:
        missing = [c for c in champion.spec.features if c not in rows.columns]
        if missing:
            logger.warning(
                "the champion %s needs features %s that the retrain does not build; "
                "it is not compared",
                champion.uri,
                missing,
            )
            return None
        raw = predict_risk(champion.model, champion.spec, rows)
        calibrated = (
            raw if champion.calibration is None else champion.calibration.apply(raw)
        )
        return Scored(calibrated, raw)

    return score, champion.version


def champion_recorded_figures(
    model_name: str, version: Any, folds: int
) -> tuple[dict[str, Any] | None, str | None]:
    """Return the champion's own cross-validated figures and its version.

    ``version`` is the champion's MLflow model version, or None without a
    champion (see :func:`_registered_champion`). The figures are the
    out-of-fold results that the champion's training run recorded for its
    model, in the form :func:`training.results.add_recorded_figures` takes.
    Returns (None, None) without a champion, and (None, None) with a warning
    when its run has no stratified cross-validation to compare with.
    """
    from mlflow.exceptions import MlflowException

    if version is None:
        logger.info(
            "no champion of %s yet; the challenger is compared with baselines only",
            model_name,
        )
        return None, None
    try:
        evaluation = _load_evaluation(version.run_id)
    except (MlflowException, OSError, ValueError) as exc:
        logger.warning(
            "the evaluation of champion %s version %s could not be read (%s); it "
            "is not compared",
            model_name,
            version.version,
            exc,
        )
        return None, None
    latest = evaluation["folds"][-1]
    if evaluation.get("kind") != "stratified" or "model" not in latest["overall"]:
        logger.warning(
            "champion %s version %s was not cross-validated by stratified folds "
            "(validation %s); it is not compared",
            model_name,
            version.version,
            evaluation.get("kind"),
        )
        return None, None
    champion_folds = latest["details"].get("folds")
    description = (
        f"the champion (version {version.version}) was fitted on every row, so "
        "its figures are its own out-of-fold figures recorded by its training "
        f"run {version.run_id}: the same protocol ({champion_folds}-fold "
        "stratified cross-validation) on the data it was trained on, which need "
        "not be the challenger's rows"
    )
    if champion_folds != folds:
        description += (
            f". NOTE: the challenger used {folds} folds, so the figures are less "
            "comparable"
        )
    recorded = {
        "overall": latest["overall"]["model"],
        "list_stability": latest["list_stability"]["model"],
        "lead_time": latest["lead_time"]["model"],
        "description": description,
    }
    return recorded, str(version.version)


def retrain(
    tables: InputTables,
    config: RunConfig,
    out_dir: Path,
    on_step: StepCallback | None = None,
) -> dict[str, Any]:
    """Rebuild features, train, evaluate and register a challenger version.

    Returns the summary of :func:`training.run.run_main_job`, with
    ``compared_champion_version`` (None when there was no comparable champion)
    and ``label_change``, the reason the champion's label may differ from the
    challenger's (None when there is no champion or both record the same
    label settings). Both keys are in ``summary.json`` too. With stratified validation the champion's figures are the
    ones its own run recorded (see :func:`champion_recorded_figures`), and the
    summary's ``evaluation.recorded_figures`` states this.
    """
    import mlflow

    model_name = config.model_name or f"ajoissa-{config.source}"
    config.model_name = model_name
    config.alias = CHALLENGER
    configure_mlflow()
    champion = _registered_champion(model_name)
    scorers: dict[str, Any] = {}
    recorded: dict[str, dict[str, Any]] = {}
    if config.validation == "stratified":
        figures, champion_version = champion_recorded_figures(
            model_name, champion, config.folds
        )
        if figures is not None:
            recorded["champion"] = figures
    else:
        scorer, champion_version = champion_scorer(model_name)
        if scorer is not None:
            scorers["champion"] = scorer

    def tag_version(summary: dict[str, Any]) -> None:
        compared = (
            champion_version
            if "champion" in summary["evaluation"]["promotion"]
            else None
        )
        summary["compared_champion_version"] = compared
        client = mlflow.MlflowClient()
        client.set_model_version_tag(
            model_name,
            summary["model_version"],
            "compared_champion_version",
            str(compared or ""),
        )
        summary["label_change"] = _label_change(champion, summary)

    summary = run_main_job(
        tables,
        config,
        out_dir,
        on_step=on_step or (lambda _: None),
        extra_scorers=scorers,
        recorded_figures=recorded,
        on_registered=tag_version,
    )
    return summary


def _label_change(champion: Any, summary: dict[str, Any]) -> str | None:
    """Return why the champion's label may differ from the challenger's, or None."""
    if champion is None:
        return None
    problem = label_change_problem(
        str(champion.version),
        read_label_settings(champion.tags),
        summary["label_settings"],
    )
    if problem is not None:
        # INFO, because `ajoissa retrain` prints the change as a warning itself.
        logger.info(
            "%s version %s: %s",
            summary["model_name"],
            summary["model_version"],
            problem,
        )
    return problem


def _registered_champion(model_name: str) -> Any:
    """Return the MLflow model version with the champion alias, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


@dataclass
class PromotionDecision:
    """Whether the challenger became champion, and every reason it did not."""

    model_name: str
    challenger_version: str | None
    champion_version: str | None
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparison: dict[str, dict[str, float | None]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Warnings that do not reject the challenger, such as the fairness gate's."""


def _load_evaluation(run_id: str) -> dict[str, Any]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="evaluation.json"
    )
    return json.loads(Path(path).read_text(encoding="utf-8"))


def compare(
    promotion: dict[str, dict[str, float | None]], role: str = "challenger"
) -> list[str]:
    """Return why the model does not beat every other entry; empty when it does.

    ``promotion`` is the summary's ``evaluation["promotion"]``. Each reason
    names the model by ``role``, such as "challenger" in ``ajoissa promote``.
    """
    reasons = []
    mine = promotion.get("model", {})
    for other, values in promotion.items():
        if other == "model":
            continue
        for metric in PROMOTION_METRICS:
            ours, theirs = mine.get(metric), values.get(metric)
            if ours is None:
                reasons.append(f"the {role} has no {metric} on the latest fold")
            elif theirs is not None and ours <= theirs:
                reasons.append(
                    f"{metric}: {role} {ours:.4f} does not beat {other} {theirs:.4f}"
                )
    return reasons


@dataclass
class GateCheck:
    """The fairness gate's outcome as promotion reports it."""

    reasons: list[str] = field(default_factory=list)
    """Reasons to reject the challenger."""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Gate warnings, which do not reject the challenger on their own."""


def _fairness_gate(
    model_name: str, version: str, skip_reviewer: str | None
) -> GateCheck:
    """Run the fairness gate and return its reasons to reject, notes and warnings.

    ``skip_reviewer`` (``--skip-fairness-gate``) skips the gate only when its
    module is not installed. An installed gate always runs and decides,
    because a breach is accepted only by a reviewer exception recorded for
    the version's audit (``ajoissa review-exception``).
    """
    if importlib.util.find_spec(FAIRNESS_GATE_MODULE) is None:
        if skip_reviewer:
            return GateCheck(
                notes=[
                    f"fairness gate skipped by reviewer {skip_reviewer}: module "
                    f"{FAIRNESS_GATE_MODULE} is not installed"
                ]
            )
        return GateCheck(
            reasons=[
                f"fairness gate not evaluated: module {FAIRNESS_GATE_MODULE} is not "
                "installed; install it, or pass --skip-fairness-gate with --reviewer "
                "NAME to promote on a named person's responsibility"
            ]
        )
    gate = importlib.import_module(FAIRNESS_GATE_MODULE)
    decision = gate.check_gate(model_name, version)
    warning_lines = {f"warning: {text}" for text in decision.warnings}
    warnings = [f"fairness gate: {text}" for text in decision.warnings]
    if decision.passed:
        notes = [_gate_passed_note(decision)]
        if skip_reviewer:
            notes.append(
                f"--skip-fairness-gate by {skip_reviewer} was not applied: module "
                f"{FAIRNESS_GATE_MODULE} is installed, so the gate ran"
            )
        return GateCheck(notes=notes, warnings=warnings)
    reasons = [
        f"fairness gate: {text}"
        for text in decision.reasons
        if text not in warning_lines
    ] or ["fairness gate failed without a reason"]
    if skip_reviewer:
        reasons.append(
            f"--skip-fairness-gate does not apply: module {FAIRNESS_GATE_MODULE} is "
            "installed, and the gate ran and rejected the version for the reasons "
            "above. The flag is only for an installation without the gate module"
        )
    if _exception_can_apply(decision):
        reasons.append(
            "To accept a breach, a reviewer records an exception for this audit "
            f"with `ajoissa review-exception --model {model_name}@{version} "
            '--reviewer "Full Name" --reason "Why the breach is acceptable"`. '
            "Then run promote again"
            + (" without --skip-fairness-gate" if skip_reviewer else "")
        )
    return GateCheck(reasons=reasons, warnings=warnings)


def _gate_passed_note(decision: Any) -> str:
    """Return the note of a passed gate, naming the reviewer exception it honoured."""
    exception = decision.exception
    if exception is None:
        return "fairness gate passed"
    count = len(decision.breaches)
    breaches = "1 breach" if count == 1 else f"{count} breaches"
    return (
        f"fairness gate passed through the exception recorded by reviewer "
        f"{exception.reviewer} on {exception.recorded_at}, which accepts the "
        f"audit's {breaches} of policy {exception.policy_version}"
    )


def _exception_can_apply(decision: Any) -> bool:
    """Return whether a reviewer exception could accept the gate's breaches.

    An exception needs a stored audit computed under the policy version in
    force, so without one the breaches name `ajoissa audit` as the next step.
    It never applies to an audit that assessed no comparison.
    """
    return (
        bool(decision.breaches)
        and not getattr(decision, "nothing_assessed", False)
        and decision.audit_sha256 is not None
        and decision.audit_policy_version == decision.policy_version
    )


ACCEPT_LABEL_CHANGE_REMEDY = (
    "Retrain with the champion's label options (--label-window-days, "
    "--transfer-gap-days, or the mapping's outcome). If the new label is "
    "intended, or the labels are known to match, promote with "
    "--accept-label-change --reviewer NAME"
)
"""Next step in the error of a challenger whose label differs from the champion's."""


@dataclass
class LabelCheck:
    """The outcome of comparing the challenger's label settings with the champion's."""

    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accepted_change: str | None = None
    """The label change a reviewer accepted, stored on the version at promotion."""


def _label_check(challenger: Any, champion: Any, reviewer: str | None) -> LabelCheck:
    """Compare the recorded label settings of the challenger and the champion.

    ``reviewer`` (``--accept-label-change``) accepts a difference, or settings
    that a version does not record. Without a reviewer, either rejects the
    challenger.
    """
    if champion is None:
        if reviewer:
            return LabelCheck(
                notes=["--accept-label-change was not needed: there is no champion"]
            )
        return LabelCheck()
    problem = label_change_problem(
        str(champion.version),
        read_label_settings(champion.tags),
        read_label_settings(challenger.tags),
    )
    if problem is None:
        notes = [f"label settings match champion version {champion.version}"]
        if reviewer:
            notes.append(
                "--accept-label-change was not needed: the label settings match"
            )
        return LabelCheck(notes=notes)
    if reviewer:
        return LabelCheck(
            notes=[f"label change accepted by reviewer {reviewer}: {problem}"],
            accepted_change=problem,
        )
    return LabelCheck(reasons=[f"{problem}. {ACCEPT_LABEL_CHANGE_REMEDY}"])


CHALLENGER_REMEDY = (
    "The challenger cannot be promoted. Register a new one with `ajoissa retrain`, "
    "or restore the version's files from a backup and promote again"
)
"""Next step in the error of a challenger whose files fail the integrity check."""


def _integrity_reasons(model_name: str, version: str) -> list[str]:
    """Check the challenger's files as the server does and return reasons to reject it."""
    try:
        verify_version(model_name, version, remedy=CHALLENGER_REMEDY)
    except (ModelIntegrityError, LookupError) as exc:
        return [str(exc)]
    return []


def _champion_integrity_reason(model_name: str, version: str) -> str | None:
    """Return why the champion's files fail the server's check, or None."""
    try:
        verify_version(model_name, version)
    except ModelIntegrityError as exc:
        return str(exc)
    except LookupError:
        pass
    return None


def _uncompared_reason(
    model_name: str, champion_version: str, compared: str | None
) -> str:
    """Return the reason the challenger was not compared with the current champion."""
    broken = _champion_integrity_reason(model_name, champion_version)
    if broken is not None:
        return (
            f"the challenger could not be compared with champion version "
            f"{champion_version}, whose files failed their integrity check "
            f"({broken}). Restore the champion's files and retrain, or, after "
            "a review of the challenger's figures, move the champion alias by "
            "hand"
        )
    return (
        f"the challenger was compared with champion version "
        f"{compared or 'none'}, but the champion is now version "
        f"{champion_version}; retrain to compare them"
    )


def promote(
    model_name: str,
    skip_fairness_reviewer: str | None = None,
    *,
    require_signoff: bool = False,
    accept_label_change_reviewer: str | None = None,
) -> PromotionDecision:
    """Make the challenger the champion if it beats the champion and every baseline.

    ``skip_fairness_reviewer`` names the person who takes responsibility for
    promoting without the fairness gate when its module is not installed. The
    name is stored as a version tag. An installed gate always decides (see
    :func:`_fairness_gate`). A reviewer's rejection of the challenger
    (:mod:`fairness.signoff`) always blocks promotion, and with
    ``require_signoff`` a missing approval blocks it too. The challenger's
    artifact files must match the digest recorded at registration
    (:func:`models.store.verify_version`), the check a server makes before it
    loads the champion. Label settings that differ from the champion's, or
    that either version does not record, block promotion unless
    ``accept_label_change_reviewer`` names the person who accepts the change.
    That name is stored in the version tag ``label_change_accepted_by``.

    Raises
    ------
    NothingToPromoteError
        If no model is registered as ``model_name``, or it has no challenger.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = mlflow.MlflowClient()
    try:
        challenger = client.get_model_version_by_alias(model_name, CHALLENGER)
    except MlflowException:
        try:
            client.get_registered_model(model_name)
        except MlflowException:
            names = sorted(m.name for m in client.search_registered_models())
            listed = ", ".join(names) if names else "none"
            raise NothingToPromoteError(
                f"no registered model is named {model_name!r}; registered "
                f"models: {listed}"
            ) from None
        raise NothingToPromoteError(
            f"no {CHALLENGER!r} version of {model_name}; run `ajoissa retrain` first"
        ) from None
    champion = _registered_champion(model_name)
    champion_version = None if champion is None else str(champion.version)
    version = str(challenger.version)

    reasons = _integrity_reasons(model_name, version)
    evaluation = _load_evaluation(challenger.run_id)
    promotion = evaluation["promotion"]
    reasons.extend(compare(promotion))
    compared = challenger.tags.get("compared_champion_version") or None
    if champion_version is not None and compared != champion_version:
        reasons.append(_uncompared_reason(model_name, champion_version, compared))
    comparison_notes = [
        f"{name} figures: {description}"
        for name, description in evaluation.get("recorded_figures", {}).items()
    ]
    gate = _fairness_gate(model_name, version, skip_fairness_reviewer)
    reasons.extend(gate.reasons)
    notes = gate.notes
    signoff = read_signoff(challenger.tags)
    reasons.extend(signoff_reasons(signoff, required=require_signoff))
    if signoff is not None and signoff.approved:
        notes.append(f"approved by reviewer {signoff.reviewer} on {signoff.time}")
    labels = _label_check(challenger, champion, accept_label_change_reviewer)
    reasons.extend(labels.reasons)
    decision = PromotionDecision(
        model_name,
        version,
        champion_version,
        not reasons,
        reasons,
        comparison_notes + notes + labels.notes,
        promotion,
        gate.warnings,
    )
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        client.delete_registered_model_alias(model_name, CHALLENGER)
        client.set_model_version_tag(
            model_name,
            version,
            "promoted_at",
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
        client.set_model_version_tag(
            model_name, version, "promoted_over_version", champion_version or ""
        )
        client.set_model_version_tag(
            model_name, version, "fairness_gate", "; ".join(notes)
        )
        if labels.accepted_change is not None:
            client.set_model_version_tag(
                model_name,
                version,
                "label_change_accepted_by",
                str(accept_label_change_reviewer),
            )
            client.set_model_version_tag(
                model_name, version, "label_change_accepted", labels.accepted_change
            )
        logger.info("promoted %s version %s to champion", model_name, version)
    else:
        logger.info(
            "did not promote %s version %s: %d reasons",
            model_name,
            version,
            len(reasons),
        )
    return decision
