"""Live training signal from the telemetry JSONL files.

Why these numbers: they answer the questions a researcher asks of a running PI-RL job —
how far along and when will it finish (update/total, ETA), is it fast enough (samples/s, env
steps/s, inference ms), is it learning (success, return, losses), is the update healthy
(approx KL, clip fraction, grad norm, and the ratio-equals-one invariant that flags a
log-prob bug), and is anything stuck ("no metrics for N s" per source).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from pirl_console.procstats import format_duration
from pirl_console.telemetry_feed import RunTelemetry, describe
from pirl_console.widgets.metric_spark import MetricSpark, format_value
from pirl_console.widgets.time_breakdown import TimeBreakdown

RATIO_TOLERANCE = 1e-4  # docs/design.md: |ratio - 1| on the first minibatch must stay below this

NOTICES_SHOWN = 4  # newest notable events / errors under the sources

SPARKS = (
    ("success_rate", "success"),
    ("return_mean", "return"),
    ("policy_loss", "policy loss"),
    ("value_loss", "value loss"),
    ("approx_kl", "approx KL"),
)


def _bar(fraction: float, width: int = 18) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


class TelemetryPanel(VerticalScroll):
    def __init__(self, *, stale_after_s: float = 30.0, id: str | None = None) -> None:
        super().__init__(id=id, classes="telemetry-panel")
        self.stale_after_s = stale_after_s

    def compose(self) -> ComposeResult:
        yield Static(classes="tel-progress")
        yield Static(classes="tel-numbers")
        for key, label in SPARKS:
            yield MetricSpark(label, id=f"spark-{key}")
        yield TimeBreakdown(classes="tel-time")
        yield Static(classes="tel-sources")

    def on_mount(self) -> None:
        self.border_title = "telemetry"
        self.show(RunTelemetry(), now=0.0, alive={})

    def show(self, tel: RunTelemetry, *, now: float, alive: dict[str, bool]) -> None:
        self.query_one(".tel-progress", Static).update(self._progress(tel))
        self.query_one(".tel-numbers", Static).update(self._numbers(tel))
        for key, _label in SPARKS:
            self.query_one(f"#spark-{key}", MetricSpark).show(tel.history[key])
        self.query_one(TimeBreakdown).show(tel)
        self.query_one(".tel-sources", Static).update(self._sources(tel, now, alive))

    # ------------------------------------------------------------------ parts
    @staticmethod
    def _progress(tel: RunTelemetry) -> Text:
        update, total = tel.progress()
        text = Text()
        if update is None:
            text.append("waiting for the first update…", style="dim")
            return text
        text.append("update ", style="dim")
        text.append(f"{update}", style="bold")
        text.append(f"/{total if total is not None else '?'}")
        if total:
            text.append(f"  {_bar(update / total)} {100 * update / total:.0f}%")
        eta = tel.eta_s()
        text.append("\nETA ", style="dim")
        text.append("done" if tel.done is not None else (format_duration(eta) if eta is not None else "-"))
        if tel.done is not None:
            wall = tel.done.get("wall_s")
            text.append(f"  wall {format_duration(float(wall))}" if isinstance(wall, (int, float)) else "")
        return text

    @staticmethod
    def _numbers(tel: RunTelemetry) -> Table:
        learner = tel.learner
        lv = learner.value if learner is not None else (lambda _k: None)
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)

        def v(value: float | None) -> str:
            return format_value(value)

        grid.add_row("samples/s", v(lv("samples_per_s")), "env steps/s", v(tel.actor_sum("env_steps_per_s")))
        grid.add_row("success", v(tel.metric("success_rate")), "return", v(tel.metric("return_mean")))
        grid.add_row("policy loss", v(lv("policy_loss")), "value loss", v(lv("value_loss")))
        grid.add_row("approx KL", v(lv("approx_kl")), "clip frac", v(lv("clip_frac")))
        ratio = lv("ratio_check")
        ratio_text = Text(v(ratio))
        if ratio is not None:
            ratio_text.stylize("bold #3cb371" if abs(ratio) < RATIO_TOLERANCE else "bold white on #c03030")
        grid.add_row("ratio check", ratio_text, "grad norm", v(lv("grad_norm")))
        grid.add_row("entropy", v(lv("entropy")), "expl. var", v(lv("explained_variance")))
        grid.add_row(
            "inference ms", v(tel.actor_mean("inference_ms")), "version lag", v(tel.actor_mean("version_lag"))
        )
        grid.add_row("update s", v(lv("update_s")), "push MB", v(lv("push_mb")))
        grid.add_row("version", v(lv("version")), "samples", v(lv("samples")))
        return grid

    def _sources(self, tel: RunTelemetry, now: float, alive: dict[str, bool]) -> Text:
        text = Text()
        ages = tel.staleness(now)
        names = sorted(set(ages) | {n for n, a in alive.items() if a}, key=lambda n: (n != "learner", n))
        for name in names:
            age = ages.get(name)
            text.append(f"{name:<9}", style="bold")
            if age is None:
                text.append("no metrics yet" if alive.get(name) else "-", style="dim")
            elif alive.get(name, False) and age > self.stale_after_s:
                text.append(f"no metrics for {format_duration(age)}", style="bold #e0b000")
            else:
                text.append(f"last record {format_duration(age)} ago", style="dim")
            text.append("\n")
        for record in list(tel.notices)[-NOTICES_SHOWN:]:
            style = "#e05050" if record.get("kind") == "error" else "bold #e0b000"
            text.append(f"! {describe(record)}\n", style=style)
        return text
