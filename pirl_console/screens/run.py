"""Run screen: the learner and actor panes, live telemetry, and the run's controls.

Orchestration lives here, in one place: start the learner, start the actors once it is
ready (its ``[learner] ready`` line or ``ready`` telemetry event), stop everything
(SIGINT -> SIGTERM -> SIGKILL per process group), restart one child, react to the learner's
exit code (3 opens the resume-mismatch table). Children report state changes by posting
``ChildChanged``; process statistics and telemetry are read in thread workers that are
re-armed only after they finish, so polls never overlap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header

from pirl_console.checkpoint_source import CheckpointSource, ValidationResult, parse_mismatch_table
from pirl_console.commands import ChildSpec, CommandBuilder
from pirl_console.procstats import TreeSampler, TreeStats
from pirl_console.run_request import RunRequest
from pirl_console.screens.checkpoints import CheckpointScreen, ResumeChoice
from pirl_console.screens.confirm import ConfirmScreen
from pirl_console.screens.mismatch import MismatchScreen
from pirl_console.settings import ConsoleSettings
from pirl_console.supervisor import ChildProcess, ChildState, exit_meaning
from pirl_console.telemetry_feed import RunTelemetry, TelemetryWatcher
from pirl_console.widgets.process_pane import ProcessPane
from pirl_console.widgets.telemetry_panel import TelemetryPanel
from pirl_core.config import RunConfig

RESUME_MISMATCH = 3


class ChildChanged(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class StatsSampled(Message):
    def __init__(self, stats: dict[str, TreeStats | None]) -> None:
        super().__init__()
        self.stats = stats


class TelemetryRead(Message):
    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self.records = records


class MismatchFound(Message):
    def __init__(self, result: ValidationResult, reason: str) -> None:
        super().__init__()
        self.result = result
        self.reason = reason


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
        self.request = request
        self.config = config
        self.commands = commands
        self.checkpoints = checkpoints
        self.settings = settings
        self.autostart = autostart
        self.children_by_name: dict[str, ChildProcess] = {}
        for spec in self._specs():
            self.children_by_name[spec.name] = self._make_child(spec)
        self.telemetry = RunTelemetry()
        self.watcher: TelemetryWatcher | None = None
        self.sampler = TreeSampler()
        self.actors_pending = False
        self.last_mismatch: MismatchFound | None = None
        self._polling_stats = False
        self._polling_telemetry = False
        self._generation = 0  # bumped by every stop; pending actor starts of older ones are dropped

    # ------------------------------------------------------------------ building
    def _specs(self) -> list[ChildSpec]:
        specs = [self.commands.learner(self.request, self.config)]
        specs += [
            self.commands.actor(self.request, self.config, i) for i in range(self.config.actor.n_actors)
        ]
        return specs

    def _make_child(self, spec: ChildSpec) -> ChildProcess:
        return ChildProcess(
            spec,
            log_path=self.config.output_path / "logs" / f"{spec.name}.log",
            scrollback=self.settings.scrollback,
            on_change=lambda child: self.post_message(ChildChanged(child.name)),
            stop_timeouts=self.settings.stop_timeouts,
        )

    @property
    def learner(self) -> ChildProcess:
        return self.children_by_name["learner"]

    @property
    def actors(self) -> list[ChildProcess]:
        return [c for n, c in self.children_by_name.items() if n != "learner"]

    @property
    def panes(self) -> list[ProcessPane]:
        return list(self.query(ProcessPane).results(ProcessPane))

    def pane(self, name: str) -> ProcessPane:
        return self.query_one(f"#pane-{name}", ProcessPane)

    def any_alive(self) -> bool:
        return any(c.alive for c in self.children_by_name.values())

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
        # Last resort (the app is going away): no child may outlive the console.
        for child in self.children_by_name.values():
            child.kill_now()

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
                pane.refresh_header()
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
            pane = self.pane(name)
            pane.stats = stats
            pane.refresh_header()

    # ------------------------------------------------------------------ telemetry
    def _poll_telemetry(self) -> None:
        if self._polling_telemetry or self.watcher is None:
            return
        self._polling_telemetry = True
        self._read_telemetry(self.watcher)

    @work(thread=True, group="telemetry", exit_on_error=False)
    def _read_telemetry(self, watcher: TelemetryWatcher) -> None:
        records: list[dict[str, Any]] = []
        try:
            records = watcher.poll()
        finally:
            self.post_message(TelemetryRead(records))

    @on(TelemetryRead)
    def _telemetry_read(self, message: TelemetryRead) -> None:
        self._polling_telemetry = False
        if not message.records:
            return
        self.telemetry.apply(message.records)
        for record in message.records:
            child = self.children_by_name.get(str(record.get("source")))
            if child is None:
                continue
            kind, event = record.get("kind"), record.get("event")
            if kind == "event" and event in ("ready", "connected"):
                child.mark_ready()
            elif kind == "metrics":
                child.mark_running()
        self._show_telemetry()

    def _show_telemetry(self) -> None:
        alive = {n: c.alive for n, c in self.children_by_name.items()}
        self.query_one(TelemetryPanel).show(self.telemetry, now=self.settings.wall_clock(), alive=alive)

    # ------------------------------------------------------------------ child state
    @on(ChildChanged)
    def _child_changed(self, message: ChildChanged) -> None:
        child = self.children_by_name.get(message.name)
        if child is None:
            return
        self.pane(child.name).refresh_header()
        self._update_subtitle()
        if child is self.learner:
            if child.state in (ChildState.READY, ChildState.RUNNING) and self.actors_pending:
                self.actors_pending = False
                self._start_actors()
            elif child.state in (ChildState.EXITED, ChildState.FAILED):
                self.actors_pending = False
                self._learner_finished(child)
        elif (
            child.state is ChildState.EXITED and child.exit_code not in (0, None) and not child.stop_requested
        ):
            self.notify(
                f"{child.name} exited {child.exit_code} ({exit_meaning(child.exit_code)}): {_last_error(child)}",
                severity="error",
                timeout=10,
            )

    def _learner_finished(self, child: ChildProcess) -> None:
        code = child.exit_code
        if child.state is ChildState.FAILED:
            self.notify(child.error or "the learner could not start", severity="error", timeout=10)
        elif code == 0:
            done = next((line for line in reversed(child.last_lines) if "[learner] done" in line), "")
            self.notify(done or "learner finished (exit 0)", title="run complete", timeout=10)
        elif code == RESUME_MISMATCH and not child.stop_requested:
            self.notify("resume refused (exit 3): checking which fields differ…", severity="error")
            self._explain_mismatch(_last_error(child), list(child.last_lines))
        elif not child.stop_requested:
            self.notify(
                f"learner exited {code} ({exit_meaning(code)}): {_last_error(child)}",
                severity="error",
                timeout=12,
            )

    @work(thread=True, exclusive=True, group="mismatch", exit_on_error=False)
    def _explain_mismatch(self, reason: str, output: list[str]) -> None:
        path = self.request.checkpoint_path(self.config)
        try:
            result = self.checkpoints.validate(path, self.request)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            result = ValidationResult(path, None, [], unreadable=f"validation failed: {exc}")
        if not result.fatal:
            # The config matches: the learner refused on the built model's identity, which
            # only its own table (in its output) names.
            printed = parse_mismatch_table(output)
            if printed:
                result = ValidationResult(result.checkpoint, result.step, printed, summary=reason)
        self.post_message(MismatchFound(result, reason))

    @on(MismatchFound)
    def _mismatch_found(self, message: MismatchFound) -> None:
        self.last_mismatch = message
        self._open_mismatch(message)

    def action_mismatch(self) -> None:
        if self.last_mismatch is None:
            self.notify("no resume mismatch in this session", severity="information")
            return
        self._open_mismatch(self.last_mismatch)

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
        if not self.any_alive():
            # A new run: telemetry from earlier runs in this output dir is not ours.
            self.telemetry = RunTelemetry()
            self.watcher = TelemetryWatcher(self.config.output_path, skip_existing=True)
            self._show_telemetry()
            stamp = time.strftime("%H:%M:%S")
            for pane in self.panes:
                if pane.log_view.line_count:
                    pane.log_view.append([f"──── start all {stamp} ────"])
        learner = self.learner
        if learner.state in (ChildState.READY, ChildState.RUNNING):
            self._start_actors()
            return
        self.actors_pending = True
        if not learner.alive:
            await learner.start()

    def _start_actors(self) -> None:
        self.run_worker(self._start_actor_processes(self._generation), group="control", exit_on_error=False)

    async def _start_actor_processes(self, generation: int) -> None:
        for actor in self.actors:
            if generation != self._generation:
                return  # a stop came in between: do not start what it just stopped
            if not actor.alive:
                await actor.start()

    def action_stop_all(self) -> None:
        if not self.any_alive():
            self.notify("nothing is running", timeout=2)
            return
        self.notify("stopping: SIGINT, then SIGTERM/SIGKILL after a timeout…", timeout=3)
        self.run_worker(self.stop_all(), group="control", exit_on_error=False)

    async def stop_all(self) -> None:
        self.actors_pending = False
        self._generation += 1
        while alive := [c for c in self.children_by_name.values() if c.alive]:
            await asyncio.gather(*(c.stop() for c in alive))

    def _focused_pane(self) -> ProcessPane:
        node = self.focused
        while node is not None:
            if isinstance(node, ProcessPane):
                return node
            node = node.parent  # type: ignore[assignment]
        return self.pane("learner")

    def action_restart(self) -> None:
        pane = self._focused_pane()
        child = self.children_by_name[pane.child_name]
        self.notify(f"restarting {child.name}…", timeout=2)
        self.run_worker(child.restart(), group="control", exit_on_error=False)

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
        await self.stop_all()
        self.app.replace_run(self, request)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        if self.any_alive():
            self.notify("processes are running: stop them first (x), or quit (q)", severity="warning")
            return
        self.app.pop_screen()

    def apply_request(self, request: RunRequest, config: RunConfig) -> bool:
        """Take a new request in place when it keeps the same children; False if it cannot."""
        if config.actor.n_actors != self.config.actor.n_actors or self.any_alive():
            return False
        self.request = request
        self.config = config
        for spec in self._specs():
            child = self.children_by_name[spec.name]
            child.spec = spec
            child.log_path = config.output_path / "logs" / f"{spec.name}.log"
            self.pane(spec.name).bind(child)
        self.last_mismatch = None
        self._update_subtitle()
        return True


def _last_error(child: ChildProcess) -> str:
    """The child's most telling recent line (the one-line error the entry points print first)."""
    lines = [line for line in child.last_lines if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "(no output)"
