"""Where each actor's time goes: one stacked bar per actor over its last collection round.

Why: throughput is decided by the simulator side (README, actor throughput). A researcher
choosing ``env.workers``/``env.n_envs`` needs to see at a glance whether an actor waits on
physics, rendering, resets, the policy, the network, or nothing in particular. Data: the
actor's latest ``round_time`` event (fields ``time_<part>_s``, pirl_core.rollout.TIME_PARTS),
else the per-version totals in its metrics record.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pirl_console.telemetry_feed import RunTelemetry, SourceState

# (telemetry part, label, colour): fixed order so bars of several actors line up.
PARTS = (
    ("env_step", "step", "#4f9fd8"),
    ("render", "render", "#9b6fd8"),
    ("reset", "reset", "#d89b4f"),
    ("inference", "infer", "#3cb371"),
    ("send", "send", "#d8d84f"),
    ("idle", "idle", "#707070"),
)
BAR_WIDTH = 24


def actor_parts(actor: SourceState) -> dict[str, float] | None:
    """Seconds per part of the actor's latest round (or version), None when it reported none."""
    event = actor.last_event("round_time")
    source = event if event is not None else actor.metrics
    parts = {}
    for part, _label, _colour in PARTS:
        value = source.get(f"time_{part}_s")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            parts[part] = float(value)
    return parts if parts and sum(parts.values()) > 0 else None


def _bar(parts: dict[str, float], width: int = BAR_WIDTH) -> Text:
    """Stacked bar; cells go to parts by largest remainder so the widths always sum to ``width``."""
    total = sum(parts.values())
    exact = [(p, parts.get(p, 0.0) / total * width, c) for p, _l, c in PARTS]
    cells = {p: int(x) for p, x, _c in exact}
    spare = width - sum(cells.values())
    for p, _x, _c in sorted(exact, key=lambda e: e[1] - int(e[1]), reverse=True)[:spare]:
        cells[p] += 1
    bar = Text()
    for p, _x, colour in exact:
        bar.append("█" * cells[p], style=colour)
    return bar


def breakdown_text(tel: RunTelemetry) -> Text:
    text = Text("actor time (last round)\n", style="dim")
    rows = [(a.name, actor_parts(a)) for a in tel.actors]
    if not any(parts for _n, parts in rows):
        text.append("no round reported yet", style="dim")
        return text
    for name, parts in rows:
        text.append(f"{name:<9}", style="bold")
        if parts is None:
            text.append("-\n", style="dim")
            continue
        total = sum(parts.values())
        text.append_text(_bar(parts))
        text.append(f" {total:.1f} s\n", style="dim")
        text.append(" " * 9)
        shown = [(label, colour, parts[p] / total) for p, label, colour in PARTS if p in parts]
        for label, colour, share in shown:
            if share >= 0.005:
                text.append(f"{label} ", style=colour)
                text.append(f"{100 * share:.0f}%  ")
        text.append("\n")
    text.rstrip()
    return text


class TimeBreakdown(Static):
    DEFAULT_CSS = """
    TimeBreakdown {
        height: auto;
        margin-bottom: 1;
    }
    """

    def show(self, tel: RunTelemetry) -> None:
        self.update(breakdown_text(tel))
