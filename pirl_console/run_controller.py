"""The run's headless half: its children, their start order, stop and restart, and the reactions
to what they report (exit codes, readiness, telemetry).

Why apart from the screen: these rules decide what runs, and they must hold whether or not a UI
is drawn — tests drive this class on a bare asyncio loop against real child processes. The
rules: the learner starts first and the actors only once it is ready (its ``[learner] ready``
line or ``ready`` telemetry event); a stop bumps ``generation`` so an actor start queued before
it is dropped; a learner that exits 3 (resume mismatch) yields its JSON report
(``--mismatch-json``) as a :class:`MismatchFound`; other failures and notable telemetry become
:class:`Notice`. The controller talks to the view only by posting typed messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from textual.message import Message

from pirl_console.checkpoint_source import ValidationResult, read_mismatch_report
from pirl_console.commands import ChildSpec, CommandBuilder
from pirl_console.messages import ChildChanged, MismatchFound, Notice
from pirl_console.run_request import RunRequest, mismatch_report_path
from pirl_console.settings import ConsoleSettings
from pirl_console.supervisor import ChildProcess, ChildState, exit_meaning
from pirl_console.telemetry_feed import RunTelemetry, TelemetryWatcher, describe
from pirl_core.config import RunConfig
from pirl_core.errors import ExitCode


class RunController:
    def __init__(
        self,
        request: RunRequest,
        config: RunConfig,
        *,
        commands: CommandBuilder,
        settings: ConsoleSettings,
        post: Callable[[Message], object],
    ) -> None:
        self.request = request
        self.config = config
        self.commands = commands
        self.settings = settings
        self.post = post
        self.children: dict[str, ChildProcess] = {spec.name: self._make_child(spec) for spec in self._specs()}
        self.telemetry = RunTelemetry()
        self.watcher: TelemetryWatcher | None = None
        self.actors_pending = False
        self.generation = 0  # bumped by every stop; pending actor starts of older ones are dropped
        self.last_mismatch: MismatchFound | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ children
    def _specs(self) -> list[ChildSpec]:
        return self.commands.specs(self.request.cli_args(self.config))

    def _make_child(self, spec: ChildSpec) -> ChildProcess:
        return ChildProcess(
            spec,
            log_path=self.config.output_path / "logs" / f"{spec.name}.log",
            scrollback=self.settings.scrollback,
            on_change=self._child_changed,
            stop_timeouts=self.settings.stop_timeouts,
        )

    @property
    def learner(self) -> ChildProcess:
        return self.children["learner"]

    @property
    def actors(self) -> list[ChildProcess]:
        return [c for n, c in self.children.items() if n != "learner"]

    def any_alive(self) -> bool:
        return any(c.alive for c in self.children.values())

    def apply_request(self, request: RunRequest, config: RunConfig) -> bool:
        """Take a new request in place when it keeps the same children; False if it cannot."""
        if config.actor.n_actors != self.config.actor.n_actors or self.any_alive():
            return False
        self.request, self.config = request, config
        for spec in self._specs():
            child = self.children[spec.name]
            child.spec = spec
            child.log_path = config.output_path / "logs" / f"{spec.name}.log"
        self.last_mismatch = None
        return True

    # ------------------------------------------------------------------ start / stop
    async def start_all(self) -> bool:
        """Learner now, actors once it is ready. Returns True when this began a new run (nothing
        was alive): telemetry starts over, since earlier runs in this output dir are not ours."""
        fresh = not self.any_alive()
        if fresh:
            self.telemetry = RunTelemetry()
            self.watcher = TelemetryWatcher(self.config.output_path, skip_existing=True)
        learner = self.learner
        if learner.state in (ChildState.READY, ChildState.RUNNING):
            self._start_actors()
            return fresh
        self.actors_pending = True
        if not learner.alive:
            mismatch_report_path(self.config).unlink(missing_ok=True)  # an old refusal is not news
            await learner.start()
        return fresh

    def _start_actors(self) -> None:
        self._spawn(self._start_actor_processes(self.generation))

    async def _start_actor_processes(self, generation: int) -> None:
        for actor in self.actors:
            if generation != self.generation:
                return  # a stop came in between: do not start what it just stopped
            if not actor.alive:
                await actor.start()

    async def stop_all(self) -> None:
        """SIGINT -> SIGTERM -> SIGKILL to every live child's process group, until none is left."""
        self.actors_pending = False
        self.generation += 1
        while alive := [c for c in self.children.values() if c.alive]:
            await asyncio.gather(*(c.stop() for c in alive))

    async def restart(self, name: str) -> None:
        await self.children[name].restart()

    def kill_all_now(self) -> None:
        """Last resort (the console is going away): no child may outlive it."""
        for child in self.children.values():
            child.kill_now()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reactions
    def _child_changed(self, child: ChildProcess) -> None:
        if child is self.learner:
            if child.state in (ChildState.READY, ChildState.RUNNING) and self.actors_pending:
                self.actors_pending = False
                self._start_actors()
            elif child.state in (ChildState.EXITED, ChildState.FAILED):
                self.actors_pending = False
                self._learner_finished(child)
        elif (
            child.state is ChildState.EXITED
            and child.exit_code not in (ExitCode.OK, None)
            and not child.stop_requested
        ):
            self.post(Notice(_failure(child), "error", timeout=10))
        self.post(ChildChanged(child.name))

    def _learner_finished(self, child: ChildProcess) -> None:
        code = child.exit_code
        if child.state is ChildState.FAILED:
            self.post(Notice(child.error or "the learner could not start", "error", timeout=10))
        elif code == ExitCode.OK:
            done = next((line for line in reversed(child.last_lines) if "[learner] done" in line), "")
            self.post(Notice(done or "learner finished (exit 0)", title="run complete", timeout=10))
        elif child.stop_requested:
            return
        elif code == ExitCode.RESUME_MISMATCH:
            code_text = int(ExitCode.RESUME_MISMATCH)
            self.post(
                Notice(f"resume refused (exit {code_text}): the mismatch table lists the fields", "error")
            )
            found = MismatchFound(self._mismatch_result(), last_error(child))
            self.last_mismatch = found
            self.post(found)
        else:
            self.post(Notice(_failure(child), "error", timeout=12))

    def _mismatch_result(self) -> ValidationResult:
        """The learner's own report (``--mismatch-json``): config and built-model rows alike."""
        path = mismatch_report_path(self.config)
        result = read_mismatch_report(path)
        if result is not None:
            return result
        checkpoint = self.request.checkpoint_path(self.config)
        return ValidationResult(
            checkpoint, None, [], unreadable=f"the learner exited 3 but wrote no readable report at {path}"
        )

    # ------------------------------------------------------------------ telemetry
    def read_telemetry(self) -> list[dict[str, Any]]:
        """New records since the last call (file I/O: the view calls this in a worker thread)."""
        return self.watcher.poll() if self.watcher is not None else []

    def apply_telemetry(self, records: list[dict[str, Any]]) -> None:
        """Fold records in: readiness from events, running from metrics, and every error record
        or notable event (``RunTelemetry.notable``: anything but routine lifecycle events, so a
        new event such as ``actor_lost`` needs no code here) as a notice."""
        self.telemetry.apply(records)
        for record in records:
            child = self.children.get(str(record.get("source")))
            kind, event = record.get("kind"), record.get("event")
            if child is not None and kind == "event" and event in ("ready", "connected"):
                child.mark_ready()
            elif child is not None and (kind == "metrics" or event == "progress"):
                child.mark_running()  # an actor reporting progress is collecting: running
            if RunTelemetry.notable(record):
                severity = "error" if kind == "error" else "warning"
                self.post(Notice(describe(record), severity, timeout=10))


def last_error(child: ChildProcess) -> str:
    """The child's most telling recent line (the one-line error the entry points print first)."""
    lines = [line for line in child.last_lines if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "(no output)"


def _failure(child: ChildProcess) -> str:
    return f"{child.name} exited {child.exit_code} ({exit_meaning(child.exit_code)}): {last_error(child)}"
