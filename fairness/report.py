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
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fairness.audit import DISPARITY_METRICS, METRIC_LABELS, RATE_METRICS, FairnessAudit

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "report.html.j2"

_CHART_COLOURS = ("#0072B2", "#56B4E9", "#595959")
"""Blue, sky blue and grey from the Okabe-Ito palette. The bars also differ by
hatching, so they can be told apart without colour."""
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


def _group_rows(table: pd.DataFrame, notes: _Footnotes) -> list[dict[str, Any]]:
    rows = []
    for record in table.to_dict("records"):
        cells = [
            _cell(
                float(record[metric]),
                record[f"{metric}_reason"],
                _percent(float(record[metric])),
                notes,
            )
            for metric in RATE_METRICS
        ]
        mean_score = float(record["mean_score"])
        cells.append(_cell(mean_score, None, f"{mean_score:.3f}", notes))
        rows.append({"group": record["group"], "n": f"{record['n']:,}", "cells": cells})
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


def _suppression_sentence(groups: int, rows: int, min_group_size: int) -> str:
    if groups == 0:
        return (
            f"No group was suppressed: every group has at least {min_group_size} rows."
        )
    if groups == 1:
        row_word = "row" if rows == 1 else "rows"
        subject = f"1 group ({rows:,} {row_word}) was suppressed because it has"
        pronoun = "Its metrics are"
    else:
        subject = (
            f"{groups} groups ({rows:,} rows in total) were suppressed because each has"
        )
        pronoun = "Their metrics are"
    return (
        f"{subject} fewer than {min_group_size} rows. {pronoun} not shown and "
        "are left out of the disparity summary. This keeps estimates from very "
        "small groups out of the report and also protects the privacy of the "
        "learners in them."
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


def _context(
    audit: FairnessAudit,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    notes: list[str],
) -> dict[str, Any]:
    footnotes = _Footnotes()
    attributes = []
    for attribute, table in audit.tables.items():
        suppression = audit.suppressed[attribute]
        attributes.append(
            {
                "name": attribute,
                "anchor": f"attribute-{len(attributes) + 1}",
                "rows": _group_rows(table, footnotes),
                "disparities": _disparity_rows(
                    audit.disparities[attribute], len(table), footnotes
                ),
                "suppression": _suppression_sentence(
                    suppression.groups, suppression.rows, audit.min_group_size
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
        "min_group_size": audit.min_group_size,
        "overall": _group_rows(audit.overall, footnotes)[0],
        "attributes": attributes,
        "notes": notes,
        "footnotes": footnotes.reasons,
        "metric_labels": [METRIC_LABELS[metric] for metric in RATE_METRICS],
    }


def render_report(
    audit: FairnessAudit,
    *,
    model_uri: str,
    source: str,
    operating_point: str,
    notes: list[str] | None = None,
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
