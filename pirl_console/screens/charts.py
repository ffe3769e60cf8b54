"""Larger charts of a run's curves (the same series and panels as ``pirl_core.report``), runs overlaid.

Opened with ``p`` from anywhere (an App binding): on the run screen it charts the running output
dir, on the menu the dir its checkpoint browser would open, in the checkpoint browser the runs of
the marked checkpoints (``space`` marks; their steps are drawn as dotted vertical markers). ``a``
adds the sibling runs (other output dirs next to the first one, e.g. earlier ``make smoke`` runs).
The JSONL files are re-read in a thread whenever they grow, so a live run's charts move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from pirl_console.widgets.line_chart import PALETTE, Line, LineChart
from pirl_core.series import PANELS, RunSeries, load_run, telemetry_files, unique_labels

REFRESH_S = 2.0


@dataclass(frozen=True)
class ChartRun:
    """One run to draw: its output dir, and checkpoint steps to mark on the x axis."""

    output_dir: Path
    markers: tuple[int, ...] = field(default=())


def runs_from_checkpoints(paths: list[tuple[Path, int | None]]) -> list[ChartRun]:
    """Marked checkpoints ``<output_dir>/checkpoints/<step>`` -> one ChartRun per output dir."""
    by_dir: dict[Path, list[int]] = {}
    for path, step in paths:
        steps = by_dir.setdefault(Path(path).parent.parent, [])
        if step is not None:
            steps.append(step)
    return [ChartRun(d, tuple(sorted(steps))) for d, steps in by_dir.items()]


def chart_runs_for(screen: Any) -> list[ChartRun]:
    """What ``p`` charts on the current screen (see the module docstring)."""
    hook = getattr(screen, "chart_runs", None)
    if callable(hook):
        return list(hook())
    config = getattr(screen, "config", None)  # RunScreen
    if config is not None and hasattr(config, "output_path"):
        return [ChartRun(Path(config.output_path))]
    browse = getattr(screen, "_output_dir", None)  # MenuScreen: the dir its checkpoint browser opens
    if callable(browse):
        return [ChartRun(Path(browse()))]
    return []


def sibling_runs(output_dir: Path) -> list[Path]:
    parent = Path(output_dir).parent
    if not parent.is_dir():
        return []
    return [
        p for p in sorted(parent.iterdir()) if p.is_dir() and p != Path(output_dir) and telemetry_files(p)
    ]


class ChartScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "dismiss_none", "Back"),
        Binding("p", "dismiss_none", "Close charts", show=False),
        Binding("a", "toggle_siblings", "Add/remove sibling runs"),
        Binding("g", "reload", "Reload"),
    ]

    class Loaded(Message):
        def __init__(self, runs: list[tuple[ChartRun, RunSeries]], signature: tuple) -> None:
            super().__init__()
            self.runs = runs
            self.signature = signature

    def __init__(self, runs: list[ChartRun]) -> None:
        super().__init__(classes="chart-screen")
        self.base_runs = list(runs)
        self.with_siblings = False
        self.loaded: list[tuple[ChartRun, RunSeries]] = []
        self._signature: tuple = ()
        self.charts: dict[str, LineChart] = {}

    @property
    def runs(self) -> list[ChartRun]:
        runs = list(self.base_runs)
        if self.with_siblings and runs:
            known = {r.output_dir.resolve() for r in runs}
            runs += [ChartRun(p) for p in sibling_runs(runs[0].output_dir) if p.resolve() not in known]
        return runs

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading telemetry…", id="chart-title")
        with VerticalScroll(id="chart-scroll"):
            yield Grid(id="chart-grid")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "charts"
        self.action_reload()
        self.set_interval(REFRESH_S, self._poll)

    # ------------------------------------------------------------------ loading
    def _files_signature(self) -> tuple:
        sig = []
        for run in self.runs:
            for path in telemetry_files(run.output_dir):
                try:
                    sig.append((str(path), path.stat().st_size))
                except OSError:
                    continue
        return tuple(sig)

    def _poll(self) -> None:
        self._load(force=False)

    def action_reload(self) -> None:
        self._load(force=True)

    @work(thread=True, exclusive=True, group="chart-load", exit_on_error=False)
    def _load(self, force: bool) -> None:
        signature = self._files_signature()
        if not force and signature == self._signature:
            return
        runs = self.runs
        labels = unique_labels([r.output_dir for r in runs])
        loaded = [(r, load_run(r.output_dir, label)) for r, label in zip(runs, labels, strict=True)]
        self.post_message(self.Loaded(loaded, signature))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self._signature = message.signature
        self.loaded = message.runs
        self._draw()

    def action_toggle_siblings(self) -> None:
        self.with_siblings = not self.with_siblings
        found = len(self.runs) - len(self.base_runs)
        self.notify(f"sibling runs {'shown' if self.with_siblings else 'hidden'} ({found} found)", timeout=3)
        self.action_reload()

    # ------------------------------------------------------------------ drawing
    def _draw(self) -> None:
        runs = [series for _, series in self.loaded]
        title = self.query_one("#chart-title", Static)
        available = {name for run in runs for name in run.series}
        panels = [(panel, panel.names(available)) for panel in PANELS]
        panels = [(panel, names) for panel, names in panels if names]
        described = " · ".join(f"{run.label} ({run.output_dir})" for run in runs)
        title.update(f"{described}" if panels else f"{described}: no metrics yet")
        grid = self.query_one("#chart-grid", Grid)
        shown = [panel.title for panel, _ in panels]
        for title_ in [t for t in self.charts if t not in shown]:  # e.g. sibling runs hidden again
            self.charts.pop(title_).remove()
        for i, (panel, names) in enumerate(panels):
            chart = self.charts.get(panel.title)
            if chart is None:
                chart = self.charts[panel.title] = LineChart(panel.title, classes="chart")
                later = [self.charts[t] for t in shown[i + 1 :] if t in self.charts]
                grid.mount(chart, before=later[0] if later else None)  # keep the PANELS order
            lines: list[Line] = []
            for r, run in enumerate(runs):
                for s, name in enumerate(names):
                    points = run.series.get(name)
                    if not points:
                        continue
                    label = name if len(runs) == 1 else f"{run.label} · {name}"
                    color = PALETTE[(s if len(runs) == 1 else r * len(names) + s) % len(PALETTE)]
                    lines.append(Line(label, points, color))
            markers = [m for chart_run, _ in self.loaded for m in chart_run.markers]
            chart.plot(lines, markers)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
