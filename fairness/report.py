"""Render a :class:`~fairness.audit.FairnessAudit` as one self-contained HTML file.

The report is meant for an ethics reviewer who reads it before a model goes live.
It has no external stylesheet, script, font or image: the style is inline and
each chart is a PNG embedded as a base64 data URI, drawn with matplotlib's Agg
canvas, so the file can be archived and opened offline.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fairness.audit import (
    DEFINED_METRICS,
    DISPARITY_METRICS,
    METRIC_LABELS,
    FairnessAudit,
)
from fairness.comparison import COMPARED_METRICS

if TYPE_CHECKING:
    from fairness.explain import ExplanationOverview
    from fairness.mitigation import MitigationResult
    from fairness.policy import FairnessPolicy

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "report.html.j2"

_CHART_COLOURS = ("#0072B2", "#56B4E9", "#595959")
"""Blue, sky blue and grey from the Okabe-Ito palette. The bars also differ by
hatching, so they can be distinguished without colour."""
_CHART_HATCHES = ("", "//", "..")


@dataclass
class _Footnotes:
    """Numbered reasons for undefined values, each reason listed once."""

    reasons: list[str] = field(default_factory=list)

    def number(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1


def _cell(value: float, reason: Any, text: str, notes: _Footnotes) -> dict[str, Any]:
    """Return a table cell: the formatted value, or "undefined" with its reason."""
    if math.isnan(value):
        reason = str(reason) if isinstance(reason, str) else "no value"
        return {"text": "undefined", "reason": reason, "note": notes.number(reason)}
    return {"text": text, "reason": None, "note": None}


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def _metric_text(metric: str, value: float) -> str:
    if metric == "roc_auc":
        return f"{value:.3f}"
    if metric == "calibration_gap":
        return f"{value * 100:+.1f} pp"
    return _percent(value)


def _group_rows(table: pd.DataFrame, notes: _Footnotes) -> list[dict[str, Any]]:
    rows = []
    for record in table.to_dict("records"):
        cells = [
            _cell(
                float(record[metric]),
                record[f"{metric}_reason"],
                _metric_text(metric, float(record[metric])),
                notes,
            )
            for metric in DEFINED_METRICS
        ]
        rows.append(
            {
                "group": record["group"],
                "n": f"{record['n']:,}",
                "learners": f"{int(record['learners']):,}",
                "cells": cells,
            }
        )
    return rows


def _interval_text(low: float, high: float, ratio: bool) -> str:
    if ratio:
        return f"{low:.2f} to {high:.2f}"
    return f"{low * 100:+.1f} to {high * 100:+.1f}"


def _comparison_rows(
    comparisons: pd.DataFrame, notes: _Footnotes
) -> list[dict[str, Any]]:
    rows = []
    if comparisons.empty:
        return rows
    for record in comparisons.to_dict("records"):
        metric = record["metric"]
        difference = float(record["difference"])
        ratio = float(record["ratio"])
        cells = {
            "difference": _cell(
                difference,
                record["difference_reason"],
                f"{difference * 100:+.1f}",
                notes,
            ),
            "ratio": _cell(ratio, record["ratio_reason"], f"{ratio:.2f}", notes),
        }
        for kind, is_ratio in (("difference", False), ("ratio", True)):
            low, high = float(record[f"{kind}_low"]), float(record[f"{kind}_high"])
            point_defined = not math.isnan(float(record[kind]))
            if math.isnan(low) and point_defined:
                cells[f"{kind}_interval"] = _cell(
                    low, record[f"{kind}_reason"], "", notes
                )
            elif math.isnan(low):
                cells[f"{kind}_interval"] = {"text": "-", "reason": None, "note": None}
            else:
                cells[f"{kind}_interval"] = {
                    "text": _interval_text(low, high, is_ratio),
                    "reason": None,
                    "note": None,
                }
        rows.append(
            {
                "group": record["group"],
                "metric": METRIC_LABELS[metric],
                "value": _metric_text(metric, float(record["value"]))
                if not math.isnan(float(record["value"]))
                else "undefined",
                "reference_value": _metric_text(
                    metric, float(record["reference_value"])
                )
                if not math.isnan(float(record["reference_value"]))
                else "undefined",
                **cells,
            }
        )
    return rows


def _disparity_rows(
    disparity: pd.DataFrame, shown_groups: int, notes: _Footnotes
) -> list[dict[str, Any]]:
    rows = []
    for metric in DISPARITY_METRICS:
        record = disparity.loc[metric]
        difference = float(record["difference"])
        ratio = float(record["ratio"])
        rows.append(
            {
                "metric": METRIC_LABELS[metric],
                "difference": _cell(
                    difference,
                    record["difference_reason"],
                    f"{difference * 100:.1f}",
                    notes,
                ),
                "ratio": _cell(ratio, record["ratio_reason"], f"{ratio:.2f}", notes),
                "compared": f"{int(record['groups_compared'])} of {shown_groups}",
            }
        )
    return rows


def _suppression_sentence(groups: int, min_group_size: int) -> str:
    if groups == 0:
        return (
            "No group was suppressed: every group has at least "
            f"{min_group_size} learners."
        )
    # The counts of a suppressed group are left out too: a group of 3 learners
    # next to its attribute value can be enough to recognise them.
    # NOTE: the "all rows" figures still allow differencing when exactly one
    # group is suppressed; no complementary suppression is done.
    if groups == 1:
        subject = "1 group was suppressed because it has"
        pronoun = "Its size and metrics are"
    else:
        subject = f"{groups} groups were suppressed because each has"
        pronoun = "Their sizes and metrics are"
    return (
        f"{subject} fewer than {min_group_size} learners. {pronoun} not shown, "
        "and they are left out of the comparisons and the disparity summary. This "
        "keeps estimates from very small groups out of the report and also "
        "protects the privacy of the learners in them."
    )


def _chart_png(table: pd.DataFrame) -> str | None:
    """Draw the compared rates per shown group and return the PNG as base64.

    Returns ``None`` when no group is shown. An undefined rate gets no bar and
    the word "undefined" in its place.
    """
    if len(table) == 0:
        return None
    groups = list(table["group"])
    bar_height = 0.8 / len(DISPARITY_METRICS)
    figure = Figure(figsize=(7.0, 1.0 + 0.6 * len(groups)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for position, metric in enumerate(DISPARITY_METRICS):
        offsets = [index + (position - 1) * bar_height for index in range(len(groups))]
        values = table[metric].astype(float)
        axes.barh(
            offsets,
            values.fillna(0.0),
            height=bar_height,
            color=_CHART_COLOURS[position],
            hatch=_CHART_HATCHES[position],
            edgecolor="#1b1b1b",
            linewidth=0.5,
            label=METRIC_LABELS[metric],
        )
        for offset, value in zip(offsets, values, strict=True):
            if math.isnan(value):
                axes.text(0.005, offset, "undefined", va="center", fontsize=8)
    # parse_math=False keeps a "$" in a group name from being read as mathtext.
    axes.set_yticks(range(len(groups)), labels=groups, parse_math=False)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.xaxis.set_major_formatter(lambda value, _: f"{value * 100:.0f} %")
    axes.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.02),
        ncols=len(DISPARITY_METRICS),
        fontsize=8,
        frameon=False,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _ratio_chart_png(
    comparisons: pd.DataFrame, metric: str, band: tuple[float, float] | None
) -> str | None:
    """Draw each group's ratio to the reference with its interval and the band.

    Returns ``None`` when no group has a defined ratio with an interval.
    """
    if comparisons.empty:
        return None
    rows = comparisons[comparisons["metric"] == metric]
    rows = rows[rows["ratio_low"].notna()]
    if rows.empty:
        return None
    figure = Figure(figsize=(7.0, 1.0 + 0.45 * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(rows)))
    if band is not None:
        axes.axvspan(*band, color="#e6ecf2", label="policy tolerance")
    axes.axvline(1.0, color="#595959", linewidth=0.8)
    axes.errorbar(
        rows["ratio"],
        positions,
        xerr=[rows["ratio"] - rows["ratio_low"], rows["ratio_high"] - rows["ratio"]],
        fmt="o",
        color=_CHART_COLOURS[0],
        capsize=3,
        label="ratio with interval",
    )
    axes.set_yticks(positions, labels=list(rows["group"]), parse_math=False)
    axes.invert_yaxis()
    axes.set_xlabel(f"{METRIC_LABELS[metric]} ratio to the reference group")
    axes.legend(
        loc="lower left", bbox_to_anchor=(0.0, 1.02), ncols=2, fontsize=8, frameon=False
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _verdict(
    audit: FairnessAudit, policy: FairnessPolicy | None
) -> dict[str, Any] | None:
    if policy is None:
        return None
    from fairness.policy import evaluate_policy, meets_policy_sentence

    findings = evaluate_policy(audit.to_dict(), policy)
    return {
        "version": policy.version,
        "passed": findings.passed,
        "nothing_assessed": findings.nothing_assessed,
        "breaches": findings.breaches,
        "warnings": findings.warnings,
        "checked": findings.checked,
        "not_assessed": findings.not_assessed,
        "outside_band": findings.outside_band,
        "summary": meets_policy_sentence(policy.version, findings)
        if findings.passed
        else None,
        "rules": [rule.describe() for rule in policy.rules],
        "interval_rule": policy.interval_rule,
        "undefined": policy.undefined,
    }


def _limitations(
    audit: FairnessAudit,
    mitigation: MitigationResult | None,
    data: dict[str, Any] | None,
) -> list[str]:
    items = [
        "Intervals are learner-level bootstrap percentile intervals with the "
        "selections held fixed: they show sampling uncertainty of the rates, not "
        "the uncertainty of the threshold or of the model's training.",
        "ROC-AUC is reported per group but has no interval and is not compared "
        "with the reference group.",
        "The label counts withdrawal only; completing, failing and transferring "
        "all count as not dropping out, so a transfer that hides a dropout is "
        "counted as a success.",
        "Groups are the categories the source records. A missing value is its own "
        "group, unknown, which can mix very different learners.",
        "A learner contributes one row per as-of date, so rows are not independent; "
        "the bootstrap resamples learners for that reason.",
        "Meeting the policy is not proof of fairness: metrics here compare error "
        "rates, not the consequences of being flagged or of being missed.",
    ]
    if audit.absent_attributes:
        items.append(
            "The source has no data for: " + ", ".join(audit.absent_attributes) + "."
        )
    if mitigation is not None and mitigation.skipped_reason is None:
        items.append(
            "The mitigation comparison selects the top share over the whole "
            "evaluation half, not within each as-of date as the audit does, and "
            "is measured on one seeded learner split."
        )
    if data and "stratified" in str(data.get("selection", "")):
        items.append(
            "Scores are out of fold from the cross-validation fold models; the "
            "registered model was refitted on all rows, so its own scores on these "
            "rows would be in-sample."
        )
    return items


def _mitigation_context(mitigation: MitigationResult | None) -> dict[str, Any] | None:
    if mitigation is None:
        return None
    groups = sorted(
        {group for method in mitigation.methods for group in method.recall_by_group}
    )

    def share(value: float | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "undefined"
        return _percent(value)

    methods = []
    for method in mitigation.methods:
        methods.append(
            {
                "name": method.name,
                "description": method.description,
                "selection_rate": share(method.selection_rate),
                "precision": share(method.precision),
                "precision_at_k": share(method.precision_at_k)
                if method.precision_at_k is not None
                else "not at k",
                "recall": share(method.recall),
                "recall_ratio": f"{method.recall_ratio:.2f}"
                if method.recall_ratio is not None
                else f"undefined ({method.recall_ratio_reason})",
                "by_group": [share(method.recall_by_group.get(g)) for g in groups],
            }
        )
    return {
        "attribute": mitigation.attribute,
        "skipped": mitigation.skipped_reason,
        "groups": groups,
        "methods": methods,
        "worse": _further_from_parity(mitigation),
        "fallbacks": mitigation.fallbacks,
        "fit_rows": f"{mitigation.fit_rows:,}",
        "eval_rows": f"{mitigation.eval_rows:,}",
        "seed": mitigation.seed,
        "top_share": f"{mitigation.top_share:.0%}",
    }


def _further_from_parity(mitigation: MitigationResult) -> list[str]:
    """Return a sentence for each method whose recall ratio is further from 1
    than the unmitigated model's on the held-out learners."""
    if not mitigation.methods:
        return []
    unmitigated, *others = mitigation.methods
    base = unmitigated.recall_ratio
    if base is None or base <= 0:
        return []
    sentences = []
    for method in others:
        ratio = method.recall_ratio
        if ratio is None or ratio <= 0:
            continue
        if abs(math.log(ratio)) > abs(math.log(base)):
            sentences.append(
                f"{method.name} ended with a recall ratio of {ratio:.2f}, further "
                f"from parity than the {unmitigated.name}'s {base:.2f}: on these "
                "held-out learners it did not narrow the gap it targets"
            )
    return sentences


def _explanation_context(
    explanations: ExplanationOverview | None,
) -> dict[str, Any] | None:
    if explanations is None:
        return None
    return {
        "rows": f"{explanations.rows:,}",
        "unit": explanations.unit,
        "base_value": f"{explanations.base_value:.3f}",
        "additivity": f"{explanations.additivity_max_error:.1e}",
        "agreement": "not checked"
        if explanations.shap_agreement_max_error is None
        else f"{explanations.shap_agreement_max_error:.1e}",
        "importance": [
            {
                "feature": item["feature"],
                "label": item["label"],
                "value": f"{item['mean_abs_contribution']:.3f}",
            }
            for item in explanations.importance[:10]
        ],
        "plots": [
            {"feature": feature, "png": png}
            for feature, png in explanations.plots.items()
        ],
        "examples": [
            {
                "probability": _percent(example["probability"]),
                "raw": f"{example['raw_score_log_odds']:.2f}",
                "reasons": [
                    {
                        "feature": reason["feature"],
                        "contribution": f"{reason['contribution_log_odds']:+.3f}",
                        "sentences": reason["sentences"],
                    }
                    for reason in example["reasons"]
                ],
            }
            for example in explanations.examples
        ],
    }


def _context(
    audit: FairnessAudit,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    notes: list[str],
    policy: FairnessPolicy | None = None,
    mitigation: MitigationResult | None = None,
    explanations: ExplanationOverview | None = None,
    data: dict[str, Any] | None = None,
    data_notice: str | None = None,
) -> dict[str, Any]:
    footnotes = _Footnotes()
    band_rule = next(
        (r for r in (policy.rules if policy else []) if r.measure == "ratio"), None
    )
    chart_metric = band_rule.metric if band_rule else "recall"
    band = (band_rule.lower, band_rule.upper) if band_rule else None
    attributes = []
    for attribute, table in audit.tables.items():
        suppression = audit.suppressed[attribute]
        comparisons = audit.comparisons.get(attribute, pd.DataFrame())
        reference, reference_reason = audit.references.get(
            attribute, (None, "no reference group was chosen")
        )
        attributes.append(
            {
                "name": attribute,
                "anchor": f"attribute-{len(attributes) + 1}",
                "intersection": attribute in audit.intersections,
                "rows": _group_rows(table, footnotes),
                "reference": reference,
                "reference_reason": reference_reason,
                "comparisons": _comparison_rows(comparisons, footnotes),
                "ratio_chart": _ratio_chart_png(comparisons, chart_metric, band),
                "ratio_chart_metric": METRIC_LABELS[chart_metric],
                "disparities": _disparity_rows(
                    audit.disparities[attribute], len(table), footnotes
                ),
                "suppression": _suppression_sentence(
                    suppression.groups, audit.min_group_size
                ),
                "chart": _chart_png(table),
            }
        )
    return {
        "model_uri": model_uri,
        "source": source,
        "operating_point": operating_point,
        "written": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "total_rows": f"{audit.total_rows:,}",
        "total_learners": f"{audit.total_learners:,}",
        "min_group_size": audit.min_group_size,
        "confidence": f"{audit.bootstrap.confidence:.0%}",
        "replicates": audit.bootstrap.replicates,
        "bootstrap_seed": audit.bootstrap.seed,
        "overall": _group_rows(audit.overall, footnotes)[0],
        "attributes": attributes,
        "absent_attributes": audit.absent_attributes,
        "verdict": _verdict(audit, policy),
        "mitigation": _mitigation_context(mitigation),
        "explanations": _explanation_context(explanations),
        "data": data,
        "data_notice": data_notice,
        "limitations": _limitations(audit, mitigation, data),
        "notes": notes,
        "footnotes": footnotes.reasons,
        "metric_labels": [METRIC_LABELS[metric] for metric in DEFINED_METRICS],
        "compared_labels": [METRIC_LABELS[metric] for metric in COMPARED_METRICS],
    }


def render_report(
    audit: FairnessAudit,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    notes: list[str] | None = None,
    policy: FairnessPolicy | None = None,
    mitigation: MitigationResult | None = None,
    explanations: ExplanationOverview | None = None,
    data: dict[str, Any] | None = None,
    data_notice: str | None = None,
) -> str:
    """Render the audit as an HTML document, with every value autoescaped."""
    environment = Environment(
        loader=PackageLoader("fairness", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template(TEMPLATE_NAME)
    return template.render(
        _context(
            audit,
            model_uri=model_uri,
            source=source,
            operating_point=operating_point,
            notes=list(notes or []),
            policy=policy,
            mitigation=mitigation,
            explanations=explanations,
            data=data,
            data_notice=data_notice,
        )
    )


def write_report(
    audit: FairnessAudit,
    path: Path,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    notes: list[str] | None = None,
    policy: FairnessPolicy | None = None,
    mitigation: MitigationResult | None = None,
    explanations: ExplanationOverview | None = None,
    data: dict[str, Any] | None = None,
    data_notice: str | None = None,
) -> Path:
    """Write the audit as one self-contained HTML file at ``path``.

    The document is rendered in memory, written to a temporary file in the same
    directory and renamed over ``path``, so a failure leaves any earlier report
    at ``path`` unchanged and no partial file behind. The file gets mode 0600
    (owner only), as :func:`tempfile.mkstemp` creates it.

    Parameters
    ----------
    audit
        Output of :func:`fairness.audit.audit_groups`.
    path
        Where to write the report. Its directory must exist.
    model_uri
        Which model was audited, for example an MLflow model URI.
    source
        Which data the audit rows came from.
    operating_point
        How rows were selected, for example "top 10 % of learners by risk within
        each as-of date".
    notes
        Extra remarks for the reviewer, one paragraph each.
    policy
        When given, the report opens with the verdict of the audit against it.
    mitigation, explanations
        Output of :func:`fairness.mitigation.compare_mitigations` and
        :func:`fairness.explain.explanation_overview`, shown when given.
    data
        Description of the audited rows and the label, shown when given.
    data_notice
        Why the audited rows may not be the model's evaluation data. When
        given, the report opens with it, marked as not the model's evaluation.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"directory {path.parent} does not exist; create it before writing "
            "the report"
        )
    html = render_report(
        audit,
        model_uri=model_uri,
        source=source,
        operating_point=operating_point,
        notes=notes,
        policy=policy,
        mitigation=mitigation,
        explanations=explanations,
        data=data,
        data_notice=data_notice,
    )
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(html)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote fairness report for %s to %s", model_uri, path)
    return path
