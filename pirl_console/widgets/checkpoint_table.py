"""The checkpoint browser's table: one row per ``<output_dir>/checkpoints/<step>``.

Why success and loss per row: choosing which checkpoint to resume from (or to evaluate) is a
question about the training signal at that step, so the row carries the learner's metrics
logged at the same update, next to when it was written and how big it is.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from pirl_console.checkpoint_source import CheckpointEntry
from pirl_console.procstats import format_bytes, format_duration
from pirl_console.widgets.metric_spark import format_value

COLUMNS = ("", "step", "saved at", "age", "size", "success", "return", "policy loss", "value loss", "status")


class CheckpointTable(DataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.entries: dict[str, CheckpointEntry] = {}

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def load(
        self,
        entries: list[CheckpointEntry],
        metrics_by_step: dict[int, dict[str, Any]],
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        previous = self.selected
        self.clear()
        self.entries = {}
        for entry in sorted(entries, key=lambda e: e.step, reverse=True):
            key = str(entry.path)
            self.entries[key] = entry
            m = metrics_by_step.get(entry.step, {})
            status = (
                Text("ok", style="#3cb371")
                if entry.problem is None
                else Text("unreadable", style="bold #e05050")
            )
            self.add_row(
                Text("last ▸", style="bold #e0b000") if entry.is_last else "",
                Text("-" if entry.step is None else str(entry.step), style="bold"),
                time.strftime("%m-%d %H:%M:%S", time.localtime(entry.mtime)) if entry.mtime else "-",
                format_duration(now - entry.mtime) if entry.mtime else "-",
                format_bytes(entry.size_bytes),
                format_value(_num(m.get("success_rate"))),
                format_value(_num(m.get("return_mean"))),
                format_value(_num(m.get("policy_loss"))),
                format_value(_num(m.get("value_loss"))),
                status,
                key=key,
            )
        if previous is not None and str(previous.path) in self.entries:
            self.move_cursor(row=self.get_row_index(str(previous.path)))

    def show_marks(self, marked: set[str]) -> None:
        """First column: ``●`` for checkpoints marked for the chart view, beside ``last ▸``."""
        for key, entry in self.entries.items():
            cell = Text()
            if key in marked:
                cell.append("● ", style="bold #4fa3ff")
            if entry.is_last:
                cell.append("last ▸", style="bold #e0b000")
            self.update_cell_at(Coordinate(self.get_row_index(key), 0), cell, update_width=True)

    @property
    def selected(self) -> CheckpointEntry | None:
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.entries.get(str(key))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
