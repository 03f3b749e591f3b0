"""A line chart of cumulative counts per week, laid out for an SVG template: drawn on the
server, so the page needs no script and no library (hospital networks are often offline).

Only plain strings and numbers leave here; the template writes them, escaped. Each line has
its own colour and its own dash pattern, so that it is told apart without colour too; the
table beside the chart carries the same numbers for a screen reader.
"""

from __future__ import annotations

from .rules import Cumulative

WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 40, 16, 14, 40
# Okabe-Ito: told apart by readers with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "8 4", "2 4", "10 4 2 4", "4 4", "1 3", "12 6")
MAX_X_LABELS = 8


def _nice_ceiling(n: int) -> int:
    """The smallest of 1, 2, 5 x 10^k not below `n` (at least 4: four gridlines)."""
    n = max(n, 4)
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= n:
                return m * step
        step *= 10


def layout(cumulative: Cumulative) -> dict:
    weeks = cumulative.weeks
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _nice_ceiling(max((s.total for s in cumulative.series), default=0))
    span = max(len(weeks) - 1, 1)

    def x(i: int) -> float:
        # A single week stands in the middle rather than on the axis.
        return round(LEFT + (plot_w * i / span if len(weeks) > 1 else plot_w / 2), 1)

    def y(value: int) -> float:
        return round(TOP + plot_h - plot_h * value / top_value, 1)

    every = max(1, -(-len(weeks) // MAX_X_LABELS))
    lines = [
        {
            "label": series.label,
            "total": series.total,
            "colour": COLOURS[i % len(COLOURS)],
            "dash": DASHES[i % len(DASHES)],
            "points": " ".join(f"{x(j)},{y(v)}" for j, v in enumerate(series.values)),
            "last_x": x(len(series.values) - 1) if series.values else LEFT,
            "last_y": y(series.total),
        }
        for i, series in enumerate(cumulative.series)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "centre": WIDTH // 2,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": TOP + plot_h,
        "y_ticks": [
            {"value": v, "y": y(v)} for v in range(0, top_value + 1, max(top_value // 4, 1))
        ],
        "x_ticks": [
            {"label": week.strftime("%m-%d"), "x": x(i)}
            for i, week in enumerate(weeks)
            if i % every == 0 or i == len(weeks) - 1
        ],
        "lines": lines,
        "empty": not weeks,
    }
