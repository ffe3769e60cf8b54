"""An actor pane's in-round progress bar: how far the actor is through this policy version's
episodes, and when it will be done.

Why: a round sends its rollouts only at the end of a wave of episodes, so a LIBERO actor can be
busy for a minute without a single output line or metrics record. The actor reports its progress
every ``actor.progress_every_s`` seconds (a ``progress`` telemetry event, pirl_core/progress.py);
this bar turns it into "v3 ████░░░░ 1/2 episodes · 900 env steps · ETA 0:25", so a busy actor
looks busy and a stuck one stands out (its bar and ETA stop moving, the learner names it silent).
Hidden until the actor's first report.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pirl_console.procstats import format_duration
from pirl_console.telemetry_feed import RoundProgressView

BAR_WIDTH = 20
FILLED_STYLE = "#3cb371"
EMPTY_STYLE = "#3a3a3a"


def progress_text(view: RoundProgressView) -> Text:
    """One line: version, bar, percent, episodes, env steps, ETA (or what happens next)."""
    filled = int(round(view.fraction * BAR_WIDTH))
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"v{view.version} ", style="bold")
    text.append("█" * filled, style=FILLED_STYLE)
    text.append("█" * (BAR_WIDTH - filled), style=EMPTY_STYLE)
    text.append(f" {100 * view.fraction:3.0f}%  ")
    text.append(f"{view.episodes_done}/{view.episodes_planned} episodes", style="bold")
    text.append(f" · {view.env_steps} env steps · ", style="dim")
    if view.collected:
        text.append(f"collected, next: v{view.version + 1}", style="dim")
    else:
        text.append("ETA ", style="dim")
        text.append(format_duration(view.eta_s) if view.eta_s is not None else "-", style="bold")
    return text


class RoundProgress(Static):
    """Re-rendered with the telemetry panel (the ETA counts down between reports); hidden
    (``.pane-progress`` in app.tcss) until there is something to show."""

    def show(self, view: RoundProgressView | None) -> None:
        self.display = view is not None
        if view is not None:
            self.update(progress_text(view))
