"""Why a resume was refused: one row per differing field, fatal ones first.

Why these columns: the saved (expected) value and the current one side by side show what
changed; "fatal" vs "changed" says whether it blocks the resume; the fix column is the flag
that puts the saved value back (or "start a new output dir" when nothing can).
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from pirl_console.checkpoint_source import MismatchRow

COLUMNS = ("field", "saved (expected)", "current", "severity", "how to fix")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


class MismatchTable(DataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def load(self, rows: list[MismatchRow]) -> None:
        self.clear()
        for i, row in enumerate(sorted(rows, key=lambda r: not r.fatal)):
            severity = Text(
                row.severity, style="bold white on #c03030" if row.fatal else "bold black on #e0b000"
            )
            self.add_row(
                Text(row.field, style="bold" if row.fatal else ""),
                _cell(row.saved),
                Text(_cell(row.current), style="#e05050" if row.fatal else ""),
                severity,
                row.fix,
                key=f"{i}:{row.field}",
            )
