"""Checkpoint browser: the run's checkpoints, their saved identity, validate and resume.

Listing and validation read files (and validation may build the resume check), so both run
in thread workers that post typed messages back; the table stays responsive while they run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from pirl_console.checkpoint_source import CheckpointEntry, CheckpointSource, ValidationResult
from pirl_console.messages import CheckpointsListed, CheckpointValidated
from pirl_console.run_request import RunRequest
from pirl_console.screens.charts import ChartRun, runs_from_checkpoints
from pirl_console.screens.mismatch import MismatchScreen
from pirl_console.widgets.checkpoint_detail import CheckpointDetail
from pirl_console.widgets.checkpoint_table import CheckpointTable
from pirl_core.telemetry import read_records, telemetry_path


def metrics_by_step(output_dir: Path) -> dict[int, dict[str, Any]]:
    """The learner's metrics per update (the latest record wins: a resumed run repeats steps)."""
    out: dict[int, dict[str, Any]] = {}
    for record in read_records(telemetry_path(output_dir, "learner")):
        if record.get("kind") == "metrics" and isinstance(record.get("step"), int):
            out[record["step"]] = record
    return out


@dataclass(frozen=True)
class ResumeChoice:
    """What the browser hands back: the request that resumes from the chosen checkpoint."""

    request: RunRequest


class CheckpointScreen(Screen[ResumeChoice | None]):
    BINDINGS = [
        Binding("v", "validate", "Validate vs profile"),
        Binding("r", "resume", "Resume from it"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("m", "mismatch", "Mismatch table"),
        Binding("g", "reload", "Reload"),
        Binding("space", "toggle_mark", "Mark for charts (p)"),
        Binding("escape", "dismiss_none", "Back"),
    ]

    def __init__(self, output_dir: Path, request: RunRequest, source: CheckpointSource) -> None:
        super().__init__(classes="checkpoint-screen")
        self.output_dir = Path(output_dir)
        self.request = request
        self.source = source
        self.validations: dict[str, ValidationResult] = {}
        self.marked: dict[str, CheckpointEntry] = {}  # charted together with `p` (screens/charts.py)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"checkpoints under {self.output_dir}", id="ckpt-title")
        with Horizontal(id="ckpt-body"):
            yield CheckpointTable(id="ckpt-table")
            with VerticalScroll(id="ckpt-detail-box"):
                yield CheckpointDetail(id="ckpt-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"checkpoints · {self.output_dir}"
        self.query_one("#ckpt-detail-box").border_title = "selected checkpoint"
        self.query_one(CheckpointTable).focus()
        self.action_reload()

    # ------------------------------------------------------------------ listing
    def action_reload(self) -> None:
        self.query_one("#ckpt-title", Static).update(f"checkpoints under {self.output_dir} (reading…)")
        self._list()

    @work(thread=True, exclusive=True, group="ckpt-list", exit_on_error=False)
    def _list(self) -> None:
        try:
            entries = self.source.list(self.output_dir)
            error = None
        except Exception as exc:  # noqa: BLE001 - shown to the user, never fatal to the console
            entries, error = [], f"{type(exc).__name__}: {exc}"
        self.post_message(CheckpointsListed(entries, metrics_by_step(self.output_dir), error))

    @on(CheckpointsListed)
    def _listed(self, message: CheckpointsListed) -> None:
        table = self.query_one(CheckpointTable)
        table.load(message.entries, message.metrics)
        self.marked = {k: e for k, e in table.entries.items() if k in self.marked}
        table.show_marks(set(self.marked))
        title = f"checkpoints under {self.output_dir}: {len(message.entries)}"
        if message.error:
            title += f"  (error: {message.error})"
        elif not message.entries:
            title += "  (none yet: the learner writes one every checkpoint.every updates and at the end)"
        self.query_one("#ckpt-title", Static).update(title)
        self._show_selected()

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        entry = self.query_one(CheckpointTable).selected
        validation = self.validations.get(str(entry.path)) if entry is not None else None
        self.query_one(CheckpointDetail).show(entry, validation)

    # ------------------------------------------------------------------ charts
    def action_toggle_mark(self) -> None:
        table = self.query_one(CheckpointTable)
        entry = table.selected
        if entry is None:
            return
        key = str(entry.path)
        if self.marked.pop(key, None) is None:
            self.marked[key] = entry
        table.show_marks(set(self.marked))

    def chart_runs(self) -> list[ChartRun]:
        """The marked checkpoints' runs (one per output dir), else this browser's run."""
        if not self.marked:
            return [ChartRun(self.output_dir)]
        return runs_from_checkpoints([(e.path, e.step) for e in self.marked.values()])

    # ------------------------------------------------------------------ validate / resume
    def action_validate(self) -> None:
        self._start_validation(then_resume=False)

    def action_resume(self) -> None:
        self._start_validation(then_resume=True)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_resume()

    def _start_validation(self, then_resume: bool) -> None:
        entry = self.query_one(CheckpointTable).selected
        if entry is None:
            self.notify("no checkpoint selected", severity="warning")
            return
        if entry.problem is not None:
            self.notify(f"step {entry.step} is unreadable: {entry.problem}", severity="error", timeout=8)
            return
        self.notify(f"checking step {entry.step} against profile {self.request.profile}…", timeout=2)
        self._validate(entry.path, then_resume)

    @work(thread=True, exclusive=True, group="ckpt-validate", exit_on_error=False)
    def _validate(self, path: Path, then_resume: bool) -> None:
        request = self._resume_request(path)
        try:
            result = self.source.validate(path, request)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            result = ValidationResult(
                path, None, [], summary=str(exc), unreadable=f"validation failed: {exc}"
            )
        self.post_message(CheckpointValidated(result, then_resume))

    def _resume_request(self, path: Path) -> RunRequest:
        return replace(self.request, resume=True, resume_from=str(path))

    @on(CheckpointValidated)
    def _validated(self, message: CheckpointValidated) -> None:
        result = message.result
        self.validations[str(result.checkpoint)] = result
        self._show_selected()
        if result.ok and message.then_resume:
            self.dismiss(ResumeChoice(self._resume_request(result.checkpoint)))
            return
        if result.rows or not result.ok:
            self._open_mismatch(result)
        else:
            self.notify(f"step {result.step}: identical run identity, resume is safe", timeout=4)

    def action_mismatch(self) -> None:
        entry = self.query_one(CheckpointTable).selected
        result = self.validations.get(str(entry.path)) if entry is not None else None
        if result is None:
            self.action_validate()
            return
        self._open_mismatch(result)

    def _open_mismatch(self, result: ValidationResult) -> None:
        def applied(request: RunRequest | None) -> None:
            if request is not None:
                self.dismiss(ResumeChoice(request))

        self.app.push_screen(MismatchScreen(result, self._resume_request(result.checkpoint)), applied)

    def action_evaluate(self) -> None:
        """Run ``python -m pirl_core.eval`` on the selected checkpoint in a pane (screens/evaluation.py)."""
        from pirl_console.screens.evaluation import EvalScreen

        entry = self.query_one(CheckpointTable).selected
        if entry is None or entry.problem is not None:
            self.notify("select a readable checkpoint to evaluate", severity="warning")
            return
        self.app.push_screen(EvalScreen(entry.path, self.output_dir))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
