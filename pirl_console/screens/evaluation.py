"""Evaluate a checkpoint from the console: one pane running ``python -m pirl_core.eval`` (the
headless command, shown in the pane) and the per-task success table of the run's latest
evaluation, refreshed when the command finishes. The eval success curve is drawn next to the
training one on the chart screen (``p``: ``eval/success_rate`` in the success-rate panel).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from pirl_console.eval_results import EvalTable, eval_spec, latest_eval
from pirl_console.messages import ChildChanged
from pirl_console.supervisor import ChildProcess, ChildState
from pirl_console.widgets.process_pane import ProcessPane

FLUSH_S = 0.2


class EvalScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "start", "Run again"),
        Binding("x", "stop", "Stop"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, checkpoint: Path, output_dir: Path, *, python: str | None = None, autostart: bool = True
    ) -> None:
        super().__init__(classes="eval-screen")
        self.checkpoint = Path(checkpoint)
        self.output_dir = Path(output_dir)
        self.autostart = autostart
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = self.output_dir / "eval" / f"{self.checkpoint.name}-{stamp}"
        spec = eval_spec(self.checkpoint, out, **({"python": python} if python else {}))
        self.child = ChildProcess(
            spec,
            log_path=self.output_dir / "logs" / "eval.log",
            on_change=lambda c: self.post_message(ChildChanged(c.name)),
        )
        self.table: EvalTable | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="eval-body"):
            yield ProcessPane("eval", self.child.spec.display(), index=1, scrollback=2000, id="pane-eval")
            yield Static("", id="eval-title")
            yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"evaluate · {self.checkpoint}"
        self.query_one(ProcessPane).bind(self.child)
        table = self.query_one("#eval-table", DataTable)
        table.add_columns("task", "instruction", "success", "rate", "95% CI (Wilson)")
        self.show_latest()
        self.set_interval(FLUSH_S, self._flush)
        if self.autostart:
            self.action_start()

    def _flush(self) -> None:
        pane = self.query_one(ProcessPane)
        pane.flush()
        pane.refresh_header()

    def action_start(self) -> None:
        if not self.child.alive:
            asyncio.get_running_loop().create_task(self.child.start())

    def action_stop(self) -> None:
        if self.child.alive:
            asyncio.get_running_loop().create_task(self.child.stop())

    def action_back(self) -> None:
        self.child.kill_now()
        self.dismiss(None)

    def on_unmount(self) -> None:
        self.child.kill_now()

    @on(ChildChanged)
    def _changed(self, message: ChildChanged) -> None:
        self._flush()
        if self.child.state in (ChildState.EXITED, ChildState.FAILED):
            self.show_latest()
            code = self.child.exit_code
            self.notify(
                f"evaluation exited {code}", severity="information" if code == 0 else "error", timeout=4
            )

    def show_latest(self) -> None:
        """Fill the table from the run's newest evaluation (this one once it finished)."""
        self.table = latest_eval(self.output_dir)
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        title = self.query_one("#eval-title", Static)
        if self.table is None:
            title.update("no evaluation of this run yet: the table fills when the command above finishes")
            return
        for row in self.table.rows:
            lo, hi = row.interval
            table.add_row(
                str(row.task_id),
                row.instruction,
                f"{row.successes}/{row.episodes}",
                f"{row.rate:.3f}",
                f"[{lo:.3f}, {hi:.3f}]",
            )
        successes, episodes = self.table.total
        title.update(
            f"latest eval — {self.table.title}: mean success {self.table.overall:.3f} ({successes}/{episodes} episodes)"
        )
