"""One supervised child on screen: header, the exact command, output, and a find bar.

Why the pane pulls rather than being pushed to: the child parks lines in a bounded deque and
the run screen calls :meth:`flush` on a timer (fast for visible panes, slow for hidden ones),
so the cost of a noisy child is one append and one repaint per tick however fast it prints.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, Static

from pirl_console.procstats import TreeStats, format_bytes
from pirl_console.supervisor import ChildProcess
from pirl_console.telemetry_feed import RoundProgressView
from pirl_console.widgets.output_log import OutputLog
from pirl_console.widgets.pane_header import PaneHeader
from pirl_console.widgets.round_progress import RoundProgress


class ProcessPane(Vertical):
    """A learner or actor pane. ``name`` is the child's name (``learner``, ``actor-0``)."""

    BINDINGS = [Binding("escape", "close_find", "Close find", show=False)]

    stats: reactive[TreeStats | None] = reactive(None, init=False)  # the child's process tree, sampled

    def __init__(
        self, name: str, command: str, *, index: int, scrollback: int, id: str | None = None
    ) -> None:
        super().__init__(id=id, classes="process-pane")
        self.child_name = name
        self.command = command
        self.index = index
        self.scrollback = scrollback
        self.child: ChildProcess | None = None

    def compose(self) -> ComposeResult:
        yield PaneHeader(classes="pane-header")
        yield Static(f"$ {self.command}", classes="pane-command", markup=False)
        yield Static("", classes="pane-ranks", markup=False)  # torchrun learner: one line per rank
        yield RoundProgress(classes="pane-progress")  # actors: in-round progress, once reported
        yield OutputLog(self.scrollback, classes="pane-log")
        yield Input(
            placeholder="find: type to search, enter: next match, esc: close",
            classes="pane-find",
            compact=True,
        )

    def on_mount(self) -> None:
        self.border_title = self.child_name
        self.query_one(".pane-ranks", Static).display = False
        self.refresh_header()

    @property
    def log_view(self) -> OutputLog:
        return self.query_one(OutputLog)

    @property
    def find_input(self) -> Input:
        return self.query_one(".pane-find", Input)

    # ------------------------------------------------------------------ data
    def bind(self, child: ChildProcess) -> None:
        self.child = child
        self.command = child.spec.display()
        self.query_one(".pane-command", Static).update(f"$ {self.command}")
        self.refresh_header()

    def watch_stats(self) -> None:
        self.refresh_header()
        ranks = self.query_one(".pane-ranks", Static)
        lines = rank_lines(self.stats)
        ranks.update("\n".join(lines))
        ranks.display = bool(lines)

    def show_progress(self, view: RoundProgressView | None) -> None:
        """The child's in-round progress (actors; None hides the bar)."""
        self.query_one(RoundProgress).show(view)

    def flush(self) -> int:
        """Move pending lines from the child into the view; returns how many."""
        if self.child is None:
            return 0
        lines = self.child.drain()
        if lines:
            self.log_view.append(lines)
        return len(lines)

    def refresh_header(self) -> None:
        log = self.log_view
        find = ""
        if log.search:
            pos, total = log.match_position()
            find = f"find {log.search!r} {pos}/{total}"
        self.query_one(PaneHeader).show(
            self.child_name, self.child, self.stats, follow=log.follow, find=find, index=self.index
        )

    # ------------------------------------------------------------------ follow / find
    def toggle_follow(self) -> bool:
        log = self.log_view
        log.follow = not log.follow
        return log.follow

    def open_find(self) -> None:
        self.add_class("finding")
        self.find_input.focus()

    def close_find(self) -> None:
        self.remove_class("finding")
        self.log_view.set_search("")
        self.log_view.focus()
        self.refresh_header()

    def find_next(self, forward: bool = True) -> None:
        log = self.log_view
        if not log.search and self.find_input.value:
            log.set_search(self.find_input.value)
        log.find_next(forward)
        self.refresh_header()

    @on(Input.Changed, ".pane-find")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.log_view.set_search(event.value)
        if event.value:
            self.log_view.find_next(True)
        self.refresh_header()

    @on(Input.Submitted, ".pane-find")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.find_next(True)

    @on(OutputLog.FollowChanged)
    def _follow_changed(self, event: OutputLog.FollowChanged) -> None:
        event.stop()
        self.refresh_header()

    def action_close_find(self) -> None:
        self.close_find()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape belongs to the find bar only while it is open; otherwise the screen gets it.
        if action == "close_find":
            return self.has_class("finding")
        return True


def rank_lines(stats: TreeStats | None) -> list[str]:
    """``rank 0  pid 4242  cpu 98%  rss 1.2 GiB``, one per torchrun rank (none for one process).
    Memory is host RSS: the console reads /proc, not the GPUs."""
    if stats is None:
        return []
    return [
        f"rank {r.rank}  pid {r.pid}  cpu {r.cpu_percent:.0f}%  rss {format_bytes(r.rss_bytes)}"
        for r in stats.ranks
    ]
