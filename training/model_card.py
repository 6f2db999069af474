"""The model card of a registered version, in Markdown and HTML.

The card is written from the run's summary and evaluation, so every figure in it
is one the run measured. It is logged as an artifact of the run that created the
version (``model_card/model_card.md`` and ``.html``), which MLflow stores with
the version.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.metrics import Scored, metrics_with_intervals

logger = logging.getLogger(__name__)

INTENDED_USE = (
    "Ranks learners by their estimated risk of withdrawing, so that student-welfare "
    "staff (school social workers, psychologists, guidance counsellors, special-"
    "education teachers, principals) can decide whom to talk with first. The score "
    "and its reasons support a person's judgement; they never decide anything about "
    "a learner."
)
NOT_INTENDED = (
    "- Decisions about admission, grading, discipline, funding or placement.\n"
    "- Any automatic action towards a learner or family without a person's review.\n"
    "- Scoring learners from a source, school level or period the model was not "
    "trained and evaluated on.\n"
    "- Comparing or ranking schools or teachers."
)


def group_metrics(
    rows: pd.DataFrame,
    y: np.ndarray,
    scored: Scored,
    attributes: list[str],
    top_share: float,
    min_group_size: int,
    resamples: int,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    """Return ROC-AUC, precision at k and Brier with intervals per sensitive group.

    Top-k is selected on all rows of each as-of date, then read per group, as
    staff would see it and as the fairness report counts it: a group's
    precision and recall at k are those of its rows among the selected ones.
    Groups with fewer than ``min_group_size`` learners (rows, when ``rows``
    has no ``learner_id``) are left out, as in the fairness report.
    """
    from training.metrics import select_top

    dates = rows["asof_date"].astype(str).to_numpy()
    selected = select_top(dates, scored.probability, scored.tiebreak, share=top_share)
    learners = rows["learner_id"].to_numpy() if "learner_id" in rows else None
    result: dict[str, list[dict[str, Any]]] = {}
    for attribute in attributes:
        values = (
            rows[attribute].astype(object).where(rows[attribute].notna(), "unknown")
        )
        groups = []
        for group in sorted(values.astype(str).unique()):
            inside = (values.astype(str) == group).to_numpy()
            size = len(set(learners[inside])) if learners is not None else inside.sum()
            if size < min_group_size:
                continue
            metrics = metrics_with_intervals(
                y[inside],
                Scored(scored.probability[inside], scored.tiebreak[inside]),
                dates[inside],
                dates[inside],
                top_share,
                None,
                resamples,
                seed,
            )
            metrics |= _selected_in_group(y[inside], selected[inside], resamples, seed)
            metrics["selected_share"] = float(selected[inside].mean())
            metrics["resamples"] = resamples
            groups.append({"group": group} | metrics)
        result[attribute] = groups
    return result


def _selected_in_group(
    y: np.ndarray, selected: np.ndarray, resamples: int, seed: int
) -> dict[str, Any]:
    """Return precision and recall at k of a group's rows under the overall top-k.

    The intervals are 95 % percentile bootstrap intervals over the group's rows.
    """
    y = np.asarray(y, dtype=float)
    selected = np.asarray(selected, dtype=bool)

    def point(labels: np.ndarray, chosen: np.ndarray) -> tuple[float, float]:
        hits = labels[chosen].sum()
        precision = hits / chosen.sum() if chosen.any() else np.nan
        recall = hits / labels.sum() if labels.sum() > 0 else np.nan
        return precision, recall

    precision, recall = point(y, selected)
    rng = np.random.default_rng(seed)
    draws = [
        point(y[index], selected[index])
        for index in (rng.integers(0, len(y), len(y)) for _ in range(resamples))
    ]

    def interval(values: list[float]) -> list[float] | None:
        finite = [v for v in values if not np.isnan(v)]
        if not finite:
            return None
        return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]

    return {
        "precision_at_k_share": None if np.isnan(precision) else float(precision),
        "precision_at_k_share_ci": interval([d[0] for d in draws]),
        "recall_at_k_share": None if np.isnan(recall) else float(recall),
        "recall_at_k_share_ci": interval([d[1] for d in draws]),
    }


def _fmt(value: float | None, interval: list[float] | None = None) -> str:
    if value is None:
        return "-"
    if interval:
        return f"{value:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"
    return f"{value:.3f}"


def render_markdown(
    summary: dict[str, Any], groups: dict[str, list[dict[str, Any]]]
) -> str:
    """Return the model card as Markdown."""
    evaluation = summary["evaluation"]
    latest = evaluation["folds"][-1]
    validation = summary["validation"]
    lines = [
        f"# Model card: {summary['model_name']} version {summary['model_version']}",
        "",
        f"Source: `{summary['source']}`. MLflow run `{summary['mlflow_run_id']}`. "
        f"Registered as `{summary['model_uri']}` with alias `{summary['model_alias']}`.",
        "",
        "## Intended use and users",
        "",
        INTENDED_USE,
        "",
        "## Not intended for",
        "",
        NOT_INTENDED,
        "",
        "## Data and label",
        "",
        f"- Validation: {validation['description']}.",
        f"- Label: {summary['label_definition']}",
        f"- Features ({len(summary['features'])}): "
        + ", ".join(f"`{name}`" for name in summary["features"]),
        f"- Evaluation rows on the latest fold: {summary['rows']['evaluation_rows']}.",
        *_left_out_lines(summary["rows"]),
        f"- Model: LightGBM, {validation.get('boosting_rounds')} boosting rounds, "
        f"hyperparameters {validation.get('hyperparameters')} "
        f"({validation.get('optuna_trials')} Optuna trials).",
        "",
        "## Metrics on the latest fold, with baselines",
        "",
        f"Fold `{latest['name']}`, all as-of dates pooled. Top-k is "
        f"{evaluation['top_share']:.0%} of learners per as-of date"
        + (
            f", or {evaluation['k_per_unit']} per unit and as-of date"
            if evaluation["k_per_unit"]
            else ""
        )
        + f". Intervals: {evaluation['interval']}, {evaluation['bootstrap_resamples']} "
        "resamples.",
        "",
        "| model | ROC-AUC | PR-AUC | precision@k | recall@k | precision@k per unit "
        "| Brier | ECE | list stability | leavers flagged | median lead (days) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, values in latest["overall"].items():
        stability = latest["list_stability"][name]["mean_jaccard"]
        lead = latest["lead_time"][name]
        lines.append(
            f"| {name} | {_fmt(values['roc_auc'], values['roc_auc_ci'])} "
            f"| {_fmt(values['pr_auc'], values['pr_auc_ci'])} "
            f"| {_fmt(values['precision_at_k_share'], values['precision_at_k_share_ci'])} "
            f"| {_fmt(values['recall_at_k_share'], values['recall_at_k_share_ci'])} "
            f"| {_fmt(values.get('precision_at_k_per_unit'))} "
            f"| {_fmt(values['brier'], values['brier_ci'])} "
            f"| {_fmt(values['ece'], values['ece_ci'])} "
            f"| {_fmt(stability)} | {_fmt(lead['flagged_share'])} "
            f"| {'-' if lead['median_days'] is None else lead['median_days']} |"
        )
    lines += ["", *_baseline_verdict(latest["overall"])]
    if evaluation["kind"] == "stratified":
        lines += [
            "",
            "The source has no time axis, so list stability and lead time (which "
            "need as-of dates on a real calendar) say nothing here.",
        ]
    for name, description in evaluation.get("recorded_figures", {}).items():
        lines += ["", f"The {name} row is not scored on these rows: {description}."]
    if summary["baselines_not_applicable"]:
        lines += ["", "Baselines that could not run:", ""]
        lines += [
            f"- {name}: {reason}"
            for name, reason in summary["baselines_not_applicable"].items()
        ]
    constant = validation.get("baselines_constant_on_test", {})
    if constant:
        lines += [
            "",
            "Baselines whose ROC-AUC of 0.5 is by construction, so beating them "
            "shows little:",
            "",
        ]
        lines += [f"- {name}: {reason}" for name, reason in constant.items()]
    lines += [
        "",
        "## Metrics by fold",
        "",
        "| fold | model | ROC-AUC | precision@k | Brier |",
        "|---|---|---|---|---|",
    ]
    for fold in evaluation["folds"]:
        for name in ("model", "logistic", "rule"):
            values = fold["overall"].get(name)
            if values:
                lines.append(
                    f"| {fold['name']} | {name} "
                    f"| {_fmt(values['roc_auc'], values['roc_auc_ci'])} "
                    f"| {_fmt(values['precision_at_k_share'], values['precision_at_k_share_ci'])} "
                    f"| {_fmt(values['brier'])} |"
                )
    lines += [
        "",
        "## Calibration",
        "",
        f"Method: {validation.get('calibration')}, fitted on "
        f"{validation.get('calibrated_on', 'a held-out share of the training learners')}"
        "; the booster is unchanged by it.",
        "",
        "| mean predicted | observed rate | rows |",
        "|---|---|---|",
    ]
    for point in latest["calibration_curve"].get("model", []):
        lines.append(
            f"| {point['mean_predicted']:.3f} | {point['observed_rate']:.3f} "
            f"| {point['rows']} |"
        )
    lines += ["", "## Metrics by group", ""]
    if not groups:
        lines.append("The source has no sensitive attributes to group by.")
    if groups:
        resampled = next((r["resamples"] for v in groups.values() for r in v), None)
        lines += [
            "The top k are selected on all rows of each as-of date, as staff see "
            "them. A group's precision at k is the share of dropouts among its "
            "selected rows, as in the fairness report."
            + (
                f" Intervals: {resampled} bootstrap resamples of the group's rows."
                if resampled
                else ""
            ),
            "",
        ]
    for attribute, rows in groups.items():
        lines += [
            f"### {attribute}",
            "",
            "| group | rows | ROC-AUC | precision@k | Brier | share selected |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['group']} | {row['rows']} "
                f"| {_fmt(row['roc_auc'], row['roc_auc_ci'])} "
                f"| {_fmt(row['precision_at_k_share'], row['precision_at_k_share_ci'])} "
                f"| {_fmt(row['brier'], row['brier_ci'])} | {row['selected_share']:.3f} |"
            )
        lines.append("")
    lines += [
        "## Known limitations",
        "",
        "- Scores are estimates from past cohorts; a change in teaching, "
        "registration rules or recording practice makes them drift.",
        "- Training cohorts whose units end after a fold's cutoff contribute labels "
        "observed after that cutoff; a deployed model could only be trained once "
        "those units had ended.",
        "- Learners who repeat a unit are dropped from test folds when they appear "
        "in training, so the figures describe learners new to the model.",
        "- Reason codes explain the booster's raw score in log-odds, before "
        "calibration.",
        "- Groups smaller than the minimum group size are not shown.",
        "",
    ]
    return "\n".join(lines)


def render_html(markdown_text: str, title: str) -> str:
    """Return the Markdown card as one self-contained HTML page."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.2em .5em}"
        "</style></head><body>\n" + body + "</body></html>\n"
    )


def write_model_card(
    summary: dict[str, Any], groups: dict[str, list[dict[str, Any]]], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``model_card.md`` and ``model_card.html`` to ``out_dir``; return both paths."""
    import os

    text = render_markdown(summary, groups)
    paths = []
    for name, content in (
        ("model_card.md", text),
        ("model_card.html", render_html(text, f"Model card {summary['model_uri']}")),
    ):
        path = out_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
        paths.append(path)
    logger.info("wrote the model card of %s", summary["model_uri"])
    return paths[0], paths[1]


def _baseline_verdict(overall: dict[str, dict[str, Any]]) -> list[str]:
    """Return sentences saying which baselines the model does not beat, and on what.

    A lead inside both 95 % intervals is named too, because the point values
    alone would read as a difference the evaluation rows do not show.
    """
    model = overall.get("model", {})
    beaten_by, narrow = [], []
    for name, values in overall.items():
        if name in ("model", "champion"):
            continue
        for metric, label in (
            ("roc_auc", "ROC-AUC"),
            ("precision_at_k_share", "precision at k"),
        ):
            ours, theirs = model.get(metric), values.get(metric)
            if ours is None or theirs is None:
                continue
            theirs_text, ours_text = _distinct_figures(theirs, ours)
            if theirs >= ours:
                beaten_by.append(f"{name} ({label} {theirs_text}, model {ours_text})")
            elif _inside_intervals(
                model.get(f"{metric}_ci"), values.get(f"{metric}_ci"), ours, theirs
            ):
                narrow.append(
                    f"in {label} over {name} ({name} {theirs_text}, model {ours_text})"
                )
    if beaten_by:
        return [
            "**Against the baselines:** the model does not beat "
            + "; ".join(beaten_by)
            + ". A baseline ranks these learners at least as well, so weigh it "
            "before relying on this model; `ajoissa promote` refuses such a "
            "challenger."
        ]
    lines = [
        "**Against the baselines:** the model has a higher ROC-AUC and precision "
        "at k than every baseline on this fold."
    ]
    if narrow:
        lines.append(
            "Some of these leads are too small for the evaluation rows to show "
            "the model to be better, because each value lies inside the other's "
            "95 % interval: " + "; ".join(narrow) + "."
        )
    return lines


def _distinct_figures(first: float, second: float) -> tuple[str, str]:
    """Return both values with 3 decimals, or with more where 3 would make them equal."""
    for decimals in range(3, 7):
        texts = f"{first:.{decimals}f}", f"{second:.{decimals}f}"
        if texts[0] != texts[1] or first == second:
            return texts
    return texts


def _inside_intervals(
    ours_ci: list[float] | None,
    theirs_ci: list[float] | None,
    ours: float,
    theirs: float,
) -> bool:
    """Return whether each value lies inside the other's interval."""
    if not ours_ci or not theirs_ci:
        return False
    return ours_ci[0] <= theirs <= ours_ci[1] and theirs_ci[0] <= ours <= theirs_ci[1]


def _left_out_lines(rows: dict[str, Any]) -> list[str]:
    left_out = rows.get("left_out_label_window_past_data_end")
    if not left_out:
        return []
    return [
        f"- Left out: {left_out} feature rows whose label window, plus the "
        "transfer gap in which a new study right can still start, runs past the "
        f"data end {rows.get('data_end')}, because their labels are not known yet."
    ]
