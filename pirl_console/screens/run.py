"""Run screen: the view of a :class:`~pirl_console.run_controller.RunController`.

The controller owns the children and the rules (start order, stop, restart, exit codes); this
screen draws them: a pane per child, the telemetry panel, the keys. Process statistics and
telemetry files are read in thread workers that are re-armed only after they finish, so polls
never overlap; the controller and the workers report back with typed messages
(:mod:`pirl_console.messages`).
"""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from pirl_console.checkpoint_source import CheckpointSource
from pirl_console.commands import CommandBuilder
from pirl_console.messages import (
    ChildChanged,
    MismatchFound,
    Notice,
    RunRequested,
    StatsSampled,
    TelemetryRead,
)
from pirl_console.procstats import TreeSampler, TreeStats
from pirl_console.run_controller import RunController
from pirl_console.run_request import RunRequest
from pirl_console.screens.checkpoints import CheckpointScreen, ResumeChoice
from pirl_console.screens.confirm import ConfirmScreen
from pirl_console.screens.mismatch import MismatchScreen
from pirl_console.settings import ConsoleSettings
from pirl_console.supervisor import ChildProcess, ChildState
from pirl_console.telemetry_feed import RunTelemetry, round_progress
from pirl_console.widgets.process_pane import ProcessPane
from pirl_console.widgets.telemetry_panel import TelemetryPanel
from pirl_core.config import RunConfig


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "start_all", "Start all"),
        Binding("x", "stop_all", "Stop all"),
        Binding("r", "restart", "Restart pane"),
        Binding("z", "zoom", "Zoom"),
        Binding("f", "follow", "Follow/pause"),
        Binding("slash", "find", "Find"),
        Binding("n", "find_next", "Next match", show=False),
        Binding("N", "find_prev", "Previous match", show=False),
        Binding("c", "checkpoints", "Checkpoints"),
        Binding("m", "mismatch", "Mismatch", show=False),
        Binding("escape", "back", "Menu"),
        Binding("q", "app.quit", "Quit"),
        *[Binding(str(i), f"focus_pane({i})", f"Pane {i}", show=False) for i in range(1, 10)],
    ]

    def __init__(
        self,
        request: RunRequest,
        config: RunConfig,
        *,
        commands: CommandBuilder,
        checkpoints: CheckpointSource,
        settings: ConsoleSettings,
        autostart: bool = True,
    ) -> None:
        super().__init__(classes="run-screen")
        self.checkpoints = checkpoints
        self.settings = settings
        self.autostart = autostart
        self.controller = RunController(
            request, config, commands=commands, settings=settings, post=self.post_message
        )
        self.sampler = TreeSampler()
        self._polling_stats = False
        self._polling_telemetry = False

    # ------------------------------------------------------------------ the controller's state
    @property
    def request(self) -> RunRequest:
        return self.controller.request

    @property
    def config(self) -> RunConfig:
        return self.controller.config

    @property
    def telemetry(self) -> RunTelemetry:
        return self.controller.telemetry

    @property
    def children_by_name(self) -> dict[str, ChildProcess]:
        return self.controller.children

    @property
    def learner(self) -> ChildProcess:
        return self.controller.learner

    @property
    def actors(self) -> list[ChildProcess]:
        return self.controller.actors

    def any_alive(self) -> bool:
        return self.controller.any_alive()

    async def stop_all(self) -> None:
        await self.controller.stop_all()

    @property
    def panes(self) -> list[ProcessPane]:
        return list(self.query(ProcessPane).results(ProcessPane))

    def pane(self, name: str) -> ProcessPane:
        return self.query_one(f"#pane-{name}", ProcessPane)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="run-body"):
            with Vertical(id="panes"):
                for i, (name, child) in enumerate(self.children_by_name.items(), start=1):
                    yield ProcessPane(
                        name,
                        child.spec.display(),
                        index=i,
                        scrollback=self.settings.scrollback,
                        id=f"pane-{name}",
                    )
            yield TelemetryPanel(stale_after_s=self.settings.stale_after_s, id="telemetry")
        yield Footer()

    def on_mount(self) -> None:
        for name, child in self.children_by_name.items():
            self.pane(name).bind(child)
        self._update_subtitle()
        self.set_interval(self.settings.flush_s, self._flush_visible)
        self.set_interval(self.settings.hidden_flush_s, self._slow_tick)
        self.set_interval(self.settings.stats_s, self._poll_stats)
        self.set_interval(self.settings.telemetry_s, self._poll_telemetry)
        self.pane("learner").log_view.focus()
        if self.autostart:
            self.action_start_all()

    def on_unmount(self) -> None:
        self.controller.kill_all_now()

    # ------------------------------------------------------------------ output batching
    def _flush_visible(self) -> None:
        if not self.is_current:
            return
        with self.app.batch_update():
            for pane in self.panes:
                if pane.display:
                    pane.flush()

    def _slow_tick(self) -> None:
        """Hidden panes catch up; headers re-render (uptime ticks); telemetry staleness ages."""
        with self.app.batch_update():
            for pane in self.panes:
                pane.flush()
                pane.refresh_header()  # uptime ticks
            self._show_telemetry()

    # ------------------------------------------------------------------ stats
    def _poll_stats(self) -> None:
        if self._polling_stats:
            return
        pids = {n: c.pid for n, c in self.children_by_name.items() if c.alive and c.pid is not None}
        if not pids:
            return
        self._polling_stats = True
        self._sample(pids)

    @work(thread=True, group="stats", exit_on_error=False)
    def _sample(self, pids: dict[str, int]) -> None:
        stats: dict[str, TreeStats | None] = {}
        try:
            for name, pid in pids.items():
                stats[name] = self.sampler.sample(pid)
        finally:
            self.post_message(StatsSampled(stats))

    @on(StatsSampled)
    def _stats_sampled(self, message: StatsSampled) -> None:
        self._polling_stats = False
        for name, stats in message.stats.items():
            self.pane(name).stats = stats

    # ------------------------------------------------------------------ telemetry
    def _poll_telemetry(self) -> None:
        if self._polling_telemetry or self.controller.watcher is None:
            return
        self._polling_telemetry = True
        self._read_telemetry()

    @work(thread=True, group="telemetry", exit_on_error=False)
    def _read_telemetry(self) -> None:
        records: list[dict] = []
        try:
            records = self.controller.read_telemetry()
        finally:
            self.post_message(TelemetryRead(records))

    @on(TelemetryRead)
    def _telemetry_read(self, message: TelemetryRead) -> None:
        self._polling_telemetry = False
        if message.records:
            self.controller.apply_telemetry(message.records)
            self._show_telemetry()

    def _show_telemetry(self) -> None:
        alive = {n: c.alive for n, c in self.children_by_name.items()}
        now = self.settings.wall_clock()
        self.query_one(TelemetryPanel).show(self.telemetry, now=now, alive=alive)
        for child in self.actors:  # each actor pane: its in-round progress bar
            self.pane(child.name).show_progress(round_progress(self.telemetry.sources.get(child.name), now))

    # ------------------------------------------------------------------ what the controller reports
    @on(ChildChanged)
    def _child_changed(self, message: ChildChanged) -> None:
        if message.name in self.children_by_name:
            self.pane(message.name).refresh_header()
            self._update_subtitle()

    @on(Notice)
    def _notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=message.timeout)

    @on(MismatchFound)
    def _mismatch_found(self, message: MismatchFound) -> None:
        self._open_mismatch(message)

    def action_mismatch(self) -> None:
        if self.controller.last_mismatch is None:
            self.notify("no resume mismatch in this session", severity="information")
            return
        self._open_mismatch(self.controller.last_mismatch)

    def _open_mismatch(self, found: MismatchFound) -> None:
        self.app.push_screen(MismatchScreen(found.result, self.request, found.reason), self._retry_with)

    def _retry_with(self, request: RunRequest | None) -> None:
        if request is not None:
            self.app.call_later(self._switch_request, request)

    def _update_subtitle(self) -> None:
        states = ", ".join(
            f"{n} {c.state.value if c.state is not ChildState.EXITED else f'exited {c.exit_code}'}"
            for n, c in self.children_by_name.items()
        )
        resume = " · resume" if self.request.resume else ""
        self.sub_title = f"{self.config.profile} · {self.config.output_dir}{resume} · {states}"

    # ------------------------------------------------------------------ start / stop
    def action_start_all(self) -> None:
        self.run_worker(self._start_all(), group="control", exit_on_error=False)

    async def _start_all(self) -> None:
        if await self.controller.start_all():
            self._show_telemetry()
            stamp = time.strftime("%H:%M:%S")
            for pane in self.panes:
                if pane.log_view.line_count:
                    pane.log_view.append([f"──── start all {stamp} ────"])

    def action_stop_all(self) -> None:
        if not self.any_alive():
            self.notify("nothing is running", timeout=2)
            return
        self.notify("stopping: SIGINT, then SIGTERM/SIGKILL after a timeout…", timeout=3)
        self.run_worker(self.controller.stop_all(), group="control", exit_on_error=False)

    def _focused_pane(self) -> ProcessPane:
        node = self.focused
        while node is not None:
            if isinstance(node, ProcessPane):
                return node
            node = node.parent  # type: ignore[assignment]
        return self.pane("learner")

    def action_restart(self) -> None:
        pane = self._focused_pane()
        self.notify(f"restarting {pane.child_name}…", timeout=2)
        self.run_worker(self.controller.restart(pane.child_name), group="control", exit_on_error=False)

    # ------------------------------------------------------------------ panes
    def action_zoom(self) -> None:
        pane = self._focused_pane()
        body = self.query_one("#run-body")
        zoomed = pane.has_class("-zoomed")
        for other in self.panes:
            other.remove_class("-zoomed")
        if zoomed:
            body.remove_class("zoomed")
        else:
            pane.add_class("-zoomed")
            body.add_class("zoomed")
        pane.flush()

    def action_focus_pane(self, index: int) -> None:
        panes = self.panes
        if 1 <= index <= len(panes):
            target = panes[index - 1]
            if self.query_one("#run-body").has_class("zoomed") and not target.has_class("-zoomed"):
                self.action_zoom()  # unzoom
                self.set_focus(target.log_view)
                self.action_zoom()
                return
            target.log_view.focus()

    def action_follow(self) -> None:
        pane = self._focused_pane()
        pane.toggle_follow()

    def action_find(self) -> None:
        self._focused_pane().open_find()

    def action_find_next(self) -> None:
        self._focused_pane().find_next(True)

    def action_find_prev(self) -> None:
        self._focused_pane().find_next(False)

    # ------------------------------------------------------------------ navigation
    def action_checkpoints(self) -> None:
        screen = CheckpointScreen(self.config.output_path, self.request, self.checkpoints)
        self.app.push_screen(screen, self._resume_chosen)

    def _resume_chosen(self, choice: ResumeChoice | None) -> None:
        if choice is None:
            return
        if self.any_alive():

            def answered(yes: bool | None) -> None:
                if yes:
                    self.app.call_later(self._switch_request, choice.request)

            self.app.push_screen(
                ConfirmScreen(
                    "Processes are running. Stop them and resume from the chosen checkpoint?", "Stop & resume"
                ),
                answered,
            )
        else:
            self.app.call_later(self._switch_request, choice.request)

    async def _switch_request(self, request: RunRequest) -> None:
        """Stop what runs, then run the new request (resume flags or applied overrides)."""
        await self.controller.stop_all()
        self.post_message(RunRequested(request))

    def action_back(self) -> None:
        if self.any_alive():
            self.notify("processes are running: stop them first (x), or quit (q)", severity="warning")
            return
        self.app.pop_screen()

    def apply_request(self, request: RunRequest, config: RunConfig) -> bool:
        """Take a new request in place when it keeps the same children; False if it cannot."""
        if not self.controller.apply_request(request, config):
            return False
        for name, child in self.children_by_name.items():
            self.pane(name).bind(child)
        self._update_subtitle()
        return True
