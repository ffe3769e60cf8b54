"""The checkpoint browser's detail panel: where it is, its counters and its saved run identity.

Why identity fields first and marked: those are the ones a resume must match (exit 3
otherwise), so they are what a researcher compares against the profile they are about to run.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from pirl_console.checkpoint_source import CheckpointEntry, ValidationResult


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 48 else text[:47] + "…"


class CheckpointDetail(Static):
    shown: Any = None  # the last renderable (tests read it as text)

    def show(self, entry: CheckpointEntry | None, validation: ValidationResult | None = None) -> None:
        if entry is None:
            self.update(Text("no checkpoint selected", style="dim"))
            return
        head = Text()
        head.append(f"step {entry.step}", style="bold")
        if entry.is_last:
            head.append("  (last)", style="bold #e0b000")
        head.append(f"\n{entry.path}\n", style="dim")
        if entry.version is not None:
            head.append(f"policy version {entry.version}  ")
        for key in ("samples", "episodes", "dropped_stale"):
            if key in entry.counters:
                head.append(f"{key} {entry.counters[key]}  ")
        parts: list[Any] = [head]
        if validation is not None:
            parts.append(self._verdict(validation))
        if entry.problem is not None:
            parts.append(Text(f"\nunreadable: {entry.problem}", style="bold #e05050"))
        if entry.identity:
            table = Table(
                title="saved run identity",
                title_justify="left",
                box=None,
                show_header=False,
                padding=(0, 1),
                expand=True,
            )
            table.add_column(no_wrap=True, overflow="ellipsis", ratio=3)
            table.add_column(overflow="fold", ratio=2, min_width=14)
            keys = sorted(entry.identity, key=lambda k: (k not in entry.fatal_fields, k))
            for key in keys:
                fatal = key in entry.fatal_fields
                table.add_row(
                    Text(("● " if fatal else "  ") + key, style="bold" if fatal else "dim"),
                    _cell(entry.identity[key]),
                )
            parts.append(Text("\n● must match to resume", style="dim"))
            parts.append(table)
        self.shown = Group(*parts)
        self.update(self.shown)

    @staticmethod
    def _verdict(validation: ValidationResult) -> Text:
        text = Text("\nresume check vs current profile: ", style="bold")
        if validation.unreadable is not None:
            text.append(validation.unreadable, style="bold #e05050")
        elif validation.ok:
            changed = [r.field for r in validation.rows]
            text.append("compatible", style="bold #3cb371")
            if changed:
                text.append(f" ({len(changed)} tunable(s) changed: {', '.join(changed)})", style="dim")
        else:
            text.append(f"{len(validation.fatal)} fatal mismatch(es)", style="bold #e05050")
            text.append(" (m: show the table)", style="dim")
        return text
