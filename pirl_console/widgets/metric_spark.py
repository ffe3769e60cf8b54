"""One labelled sparkline: name, recent history, latest value.

Why a sparkline and not a plot: the panel shares the screen with two logs; a one-line trend
per metric answers "is it going up" at a glance, and the latest number sits beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.3g}" if magnitude < 100 else f"{value:.0f}"
    if magnitude >= 1e-3:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.1e}"


class MetricSpark(Horizontal):
    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="metric-spark")
        self.label = label

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="spark-label")
        yield Sparkline([], classes="spark-line")
        yield Label("-", classes="spark-value")

    def show(self, values: Sequence[float]) -> None:
        data = list(values)
        self.query_one(Sparkline).data = data
        self.query_one(".spark-value", Label).update(format_value(data[-1] if data else None))
