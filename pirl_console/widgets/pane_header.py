"""The first line of a process pane: name, status badge, pid, uptime, CPU, RSS, restarts.

Why one colour-coded badge with the exit meaning spelled out: supervisor users read state at a
glance (green running, red failed), and "failed 3 · resume mismatch" says what to do next
where a bare exit code would send them to the docs.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pirl_console.procstats import TreeStats, format_bytes, format_duration
from pirl_console.supervisor import ChildProcess, ChildState, exit_meaning
from pirl_core.errors import ExitCode

BADGE_STYLES = {
    "idle": "bold #c0c0c0 on #3a3a3a",
    "starting": "bold black on #e0b000",
    "ready": "bold black on #40a8e0",
    "running": "bold black on #3cb371",
    "stopping": "bold black on #e0b000",
    "done": "bold black on #3cb371",
    "stopped": "bold black on #d08020",
    "failed": "bold white on #c03030",
}


def badge(child: ChildProcess | None) -> tuple[str, str]:
    """(badge text, badge kind) for a child's current state."""
    if child is None or child.state is ChildState.IDLE:
        return "idle", "idle"
    state = child.state
    if state is ChildState.FAILED:
        return "failed", "failed"
    if state is ChildState.EXITED:
        code = child.exit_code
        meaning = exit_meaning(code)
        if code == ExitCode.OK:
            return f"exited 0 · {meaning}", "done"
        if child.stop_requested or code == ExitCode.INTERRUPTED:
            return f"exited {code} · {meaning}", "stopped"
        return f"failed {code} · {meaning}", "failed"
    return state.value, state.value


class PaneHeader(Static):
    """Re-rendered by the run screen about once a second (uptime ticks) and on state changes."""

    def show(
        self,
        name: str,
        child: ChildProcess | None,
        stats: TreeStats | None,
        *,
        follow: bool = True,
        find: str = "",
        index: int | None = None,
    ) -> None:
        label, kind = badge(child)
        text = Text(no_wrap=True, overflow="ellipsis")
        if index is not None:
            text.append(f"{index} ", style="dim")
        text.append(name, style="bold")
        text.append(" ")
        text.append(f" {label} ", style=BADGE_STYLES[kind])
        alive = child is not None and child.alive
        parts = []
        if child is not None and child.pid is not None:
            parts.append(f"pid {child.pid}")
            parts.append(f"up {format_duration(child.uptime())}")
        if alive and stats is not None:
            parts.append(f"cpu {stats.cpu_percent:.0f}%")
            parts.append(f"rss {format_bytes(stats.rss_bytes)}")
            if stats.processes > 1:
                parts.append(f"{stats.processes} procs")
        parts.append(f"restarts {child.restarts if child is not None else 0}")
        text.append("  " + " · ".join(parts), style="")
        text.append("   ")
        text.append("follow" if follow else "paused", style="bold #3cb371" if follow else "bold #e0b000")
        if child is not None and child.dropped:
            text.append(f"  {child.dropped} lines skipped (see log file)", style="dim")
        if find:
            text.append(f"  {find}", style="bold #40a8e0")
        self.update(text)
