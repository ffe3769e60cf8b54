"""A line chart drawn with Unicode braille: several series on shared axes, in a terminal cell grid.

Why our own: each braille character is a 2x4 dot grid, so a 70x10 cell chart has 140x40 dots —
enough to see a learning curve's shape, noise and plateaus, with no plotting dependency (and
nothing downloaded). :func:`render_chart` is a pure function of the data and the size, so it is
tested without a terminal; :class:`LineChart` only sizes and repaints it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from pirl_console.widgets.metric_spark import format_value

PALETTE = ("#4fa3ff", "#ff9f43", "#3cb371", "#e05050", "#b084f5", "#e0b000", "#40c0c0", "#d070a0")
MARKER_STYLE = "#6a6a6a"
AXIS_STYLE = "#8a8a8a"
BRAILLE_BASE = 0x2800
# Bit of dot (column, row) inside one braille cell (2 columns x 4 rows).
DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
Y_LABEL_WIDTH = 8


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float]]
    color: str = PALETTE[0]


def _finite(lines: Sequence[Line]) -> list[list[tuple[float, float]]]:
    return [[(x, y) for x, y in line.points if math.isfinite(x) and math.isfinite(y)] for line in lines]


def _bounds(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:  # a flat series still gets a visible line in the middle
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def render_chart(
    lines: Sequence[Line], width: int, height: int, markers: Sequence[float] = (), x_label: str = "update"
) -> Text:
    """Legend on the first row, y labels on the left, x labels on the last row."""
    text = Text(no_wrap=True, overflow="crop")
    legend = Text(no_wrap=True, overflow="ellipsis")
    for line in lines:
        legend.append("━ ", style=line.color).append(line.label + "  ")
    text.append_text(legend)
    points = _finite(lines)
    plot_w, plot_h = width - Y_LABEL_WIDTH - 1, height - 2
    if plot_w < 4 or plot_h < 2:
        return text
    if not any(points):
        text.append("\n" + " " * (Y_LABEL_WIDTH + 1) + "no data yet", style=AXIS_STYLE)
        return text
    xs = [x for pts in points for x, _ in pts]
    ys = [y for pts in points for _, y in pts]
    x_lo, x_hi = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, max(xs) + 1)
    y_lo, y_hi = _bounds(ys)
    dots_w, dots_h = plot_w * 2, plot_h * 4
    bits = [[0] * plot_w for _ in range(plot_h)]
    colors: list[list[str | None]] = [[None] * plot_w for _ in range(plot_h)]

    def to_dot(x: float, y: float) -> tuple[int, int]:
        dx = round((x - x_lo) / (x_hi - x_lo) * (dots_w - 1))
        dy = round((y_hi - y) / (y_hi - y_lo) * (dots_h - 1))
        return dx, dy

    def plot(dx: int, dy: int, color: str) -> None:
        if 0 <= dx < dots_w and 0 <= dy < dots_h:
            row, col = dy // 4, dx // 2
            bits[row][col] |= DOT_BITS[dy % 4][dx % 2]
            colors[row][col] = color

    for marker in markers:
        if x_lo <= marker <= x_hi:
            dx, _ = to_dot(marker, y_lo)
            for dy in range(0, dots_h, 2):
                plot(dx, dy, MARKER_STYLE)
    for line, pts in zip(lines, points, strict=True):
        previous: tuple[int, int] | None = None
        for x, y in pts:
            current = to_dot(x, y)
            if previous is None:
                plot(*current, line.color)
            else:
                _segment(previous, current, lambda dx, dy, c=line.color: plot(dx, dy, c))
            previous = current

    labels = {0: format_value(y_hi), plot_h - 1: format_value(y_lo)}
    if plot_h >= 5:
        labels[(plot_h - 1) // 2] = format_value((y_hi + y_lo) / 2)
    for row in range(plot_h):
        text.append("\n")
        text.append(labels.get(row, "").rjust(Y_LABEL_WIDTH)[:Y_LABEL_WIDTH] + "┤", style=AXIS_STYLE)
        for col in range(plot_w):
            text.append(chr(BRAILLE_BASE + bits[row][col]), style=colors[row][col] or "")
    left, right = format_value(x_lo), format_value(x_hi)
    mid = (x_lo + x_hi) / 2
    middle = f"{x_label} {format_value(float(round(mid)) if float(x_lo).is_integer() else mid)}"
    gap = plot_w - len(left) - len(right)
    axis = (
        left + middle.center(gap)[: max(gap, 0)] + right
        if gap > len(middle)
        else left.ljust(plot_w - len(right)) + right
    )
    text.append("\n" + " " * (Y_LABEL_WIDTH + 1) + axis[:plot_w], style=AXIS_STYLE)
    return text


def _segment(start: tuple[int, int], end: tuple[int, int], put) -> None:
    """Bresenham: every dot between two points, so steep changes stay connected."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        put(x0, y0)
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


class LineChart(Widget):
    DEFAULT_CSS = """
    LineChart {
        height: 13;
        border: round $primary 40%;
        border-title-color: $text;
        padding: 0 1;
    }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self.lines: list[Line] = []
        self.markers: list[float] = []

    def plot(self, lines: Sequence[Line], markers: Sequence[float] = ()) -> None:
        self.lines = list(lines)
        self.markers = list(markers)
        self.refresh()

    def render(self) -> Text:
        return render_chart(self.lines, self.content_size.width, self.content_size.height, self.markers)
