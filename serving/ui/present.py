"""Wording of estimates, changes and review status, and the trend charts.

The probability is phrased as a frequency among pupils with a similar record,
over the model's label window. The label is 1 when the enrolment ended with the
pupil withdrawing after the as-of date, before the end of the unit (a course
presentation or a school year). The phrasing never sorts pupils into tiers.

NOTE: reading the probability as a frequency is only as true as the model's
calibration. The training run records the Brier score, but no separate
calibration step (such as isotonic regression) is applied to the model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from serving.ui.i18n import Translator
from serving.ui.store import Review

CHANGE_EPSILON = 0.005
"""Changes smaller than half a percentage point read as no change."""


DAYS_PER_MONTH = 365.25 / 12


def probability_words(
    t: Translator, probability: float, window_days: int | None = None
) -> str:
    """Return the estimate as 'about n in 10 (or 100) pupils with a similar record'.

    ``window_days`` is the model's label window. The sentence ends with a
    dropout within that many months, or, without a window, a withdrawal
    before the end of the course or school year.
    """
    if window_days is None:
        outcome = t("outcome.unit_end")
    else:
        months = max(1, round(window_days / DAYS_PER_MONTH))
        outcome = t.plural("outcome.window", months, months=months)
    if probability < 0.005:
        return t("prob.under_1", outcome=outcome)
    if probability >= 0.95:
        return t("prob.over_19", outcome=outcome)
    if probability < 0.095:
        return t("prob.in_100", n=round(probability * 100), outcome=outcome)
    return t("prob.in_10", n=round(probability * 10), outcome=outcome)


def change_words(t: Translator, now: float, before: float | None) -> str:
    """Return the change since the previous scoring in percentage points."""
    if before is None:
        return t("change.new")
    delta = now - before
    if abs(delta) < CHANGE_EPSILON:
        return t("change.same")
    points = t.number(abs(delta) * 100)
    key = "change.up" if delta > 0 else "change.down"
    return t.plural(key, points, points=points)


@dataclass(frozen=True)
class Status:
    """A pupil's row status: marked for review, or overridden by a review."""

    text: str
    flagged: bool
    """True when the pupil is waiting for a review."""


def row_status(
    t: Translator,
    school_rank: int,
    capacity: int,
    review: Review | None,
    today: dt.date,
    latest_as_of: dt.date | None,
) -> Status:
    """Return the status: a review decision that still applies overrides the flag."""
    if review is not None and review.overrides_flag(today, latest_as_of):
        decision = t(f"decision.{review.decision}")
        date = t.date(review.recorded_at.date())
        return Status(t("status.decided", decision=decision, date=date), False)
    if review is not None and review.follow_up is not None:
        follow_up = t.date(review.follow_up)
        return Status(t("status.follow_up_due", date=follow_up), True)
    if school_rank <= capacity:
        return Status(t("status.flagged"), True)
    return Status(t("status.none"), False)


@dataclass(frozen=True)
class CutoffTie:
    """Pupils on both sides of the capacity cut-off who show the same estimate."""

    first_rank: int
    last_rank: int
    estimate: str
    """The estimate as the page shows it, such as "17%" in English."""


def cutoff_tie(
    t: Translator, ranked: list[tuple[int, float]], capacity: int
) -> CutoffTie | None:
    """Return the group of equal shown estimates that the cut-off splits, if any.

    ``ranked`` contains ``(school_rank, probability)`` in rank order. The cut-off
    falls between rank ``capacity`` and the next rank. The group is split when
    both ranks show the same estimate after rounding.
    """
    if capacity < 1 or capacity >= len(ranked):
        return None
    estimates = [t.percent(probability) for _, probability in ranked]
    below = estimates[capacity]
    if estimates[capacity - 1] != below:
        return None

    first = capacity - 1
    while first > 0 and estimates[first - 1] == below:
        first -= 1
    last = capacity
    while last + 1 < len(ranked) and estimates[last + 1] == below:
        last += 1
    return CutoffTie(ranked[first][0], ranked[last][0], below)


def axis_max(values: list[float], ceiling: float = 100.0) -> float:
    """Return a round top for a chart's y axis: the next multiple of 10 above
    the largest value, at least 10 and at most ``ceiling``."""
    top = max(values, default=0.0)
    return min(ceiling, max(10.0, 10.0 * (int(top // 10) + 1)))


def line_chart(
    points: list[tuple[dt.date, float]],
    label: str,
    y_max: float,
    width: int = 120,
    height: int = 32,
    show_axis: bool = False,
    unit: str = "",
    date_text: Callable[[dt.date], str] = dt.date.isoformat,
    point_labels: Sequence[str] | None = None,
) -> Markup:
    """Return an inline SVG line chart of ``points`` with ``label`` as its text.

    The y axis runs from 0 to ``y_max``, and ``unit`` follows its top value.
    ``date_text`` formats the dates under the axis. ``point_labels``, one per
    point, become each dot's tooltip. A
    single point is drawn as a dot. The label is the accessible name, so screen
    readers get the numbers as text.
    """
    pad = 4
    left = 34 if show_axis else pad
    bottom = 16 if show_axis else pad
    plot_w = width - left - pad
    plot_h = height - pad - bottom
    count = len(points)
    coords = []
    for i, (_, value) in enumerate(points):
        x = left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)
        share = min(max(value / y_max, 0.0), 1.0) if y_max > 0 else 0.0
        y = pad + plot_h * (1 - share)
        coords.append((x, y))
    parts = [
        (
            f'<svg class="chart" role="img" aria-label="{escape(label)}" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        ),
        f"<title>{escape(label)}</title>",
        (
            f'<line x1="{left}" y1="{pad + plot_h}" x2="{left + plot_w}" '
            f'y2="{pad + plot_h}" class="axis"/>'
        ),
    ]
    if show_axis:
        parts.append(
            f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{pad + plot_h}" '
            'class="axis"/>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{pad + 8}" class="tick">{y_max:g}{escape(unit)}</text>'
        )
        parts.append(f'<text x="{left - 4}" y="{pad + plot_h}" class="tick">0</text>')
        first, last = date_text(points[0][0]), date_text(points[-1][0])
        parts.append(f'<text x="{left}" y="{height - 3}" class="date">{first}</text>')
        if count > 1:
            parts.append(
                f'<text x="{left + plot_w}" y="{height - 3}" class="date end">'
                f"{last}</text>"
            )
    if count > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" class="line"/>')
    for index, (x, y) in enumerate(coords):
        circle = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" class="dot"'
        if point_labels is None:
            parts.append(circle + "/>")
        else:
            title = escape(point_labels[index])
            parts.append(f"{circle}><title>{title}</title></circle>")
    parts.append("</svg>")
    return Markup("".join(parts))
