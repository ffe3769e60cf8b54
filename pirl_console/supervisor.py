"""Supervise one child process: spawn, read its output, detect readiness, stop it for sure.

Why this shape (what process supervisors such as mprocs or process-compose get right):

* The child gets its own session / process group, stdin from /dev/null and unbuffered
  Python, so a stop reaches everything it spawned and its output arrives line by line.
* Output is read in large chunks, split into lines here (a partial last line waits for the
  rest), ANSI escapes stripped, and parked in a bounded ``pending`` deque. The UI drains it on
  its own clock (every ~80 ms for a visible pane), so a child printing thousands of lines per
  second costs one repaint per tick, not one per line, and memory stays bounded even when
  nobody looks. The raw bytes also go to ``<output_dir>/logs/<name>.log`` untouched.
* Exit is detected from the process itself, not from EOF on the pipe: an orphaned
  grandchild holding stdout open would otherwise hide the exit forever. After the leader
  exits, what is left of its process group is terminated.
* ``stop()`` escalates SIGINT -> SIGTERM -> SIGKILL, each to the whole process group, with
  timeouts; pirl's entry points checkpoint and exit 130 on SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

from pirl_console.commands import ChildSpec
from pirl_core.errors import ExitCode

READ_CHUNK = 1 << 16
STREAM_LIMIT = 1 << 24  # asyncio's 64 KiB default would choke on one long line
MAX_PARTIAL = 1 << 20  # a "line" this long without a newline is shown in pieces
EXIT_DRAIN_S = 1.0  # after the leader exits: time for the pipe to deliver its tail

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# Words for the badge; an ExitCode added later without words here shows its own name.
EXIT_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.USAGE: "bad usage or profile",
    ExitCode.RESUME_MISMATCH: "resume mismatch",
    ExitCode.CHECKPOINT_UNREADABLE: "checkpoint unreadable",
    ExitCode.TRANSPORT: "transport failure",
    ExitCode.STORAGE: "disk full or not writable",
    ExitCode.INTERRUPTED: "interrupted",
}


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text) if "\x1b" in text else text


def exit_meaning(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    if code in EXIT_MEANINGS:
        return EXIT_MEANINGS[ExitCode(code)]
    if code in ExitCode.__members__.values():
        return ExitCode(code).name.lower().replace("_", " ")
    return "error"


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies. (``killpg(pgid, 0)`` is not enough:
    an orphan that already died stays a zombie until init reaps it, and still counts there.)"""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.info["pid"]) == pgid:
                members.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error):
            continue
    return members


class ChildState(str, enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"


ALIVE_STATES = {ChildState.STARTING, ChildState.READY, ChildState.RUNNING, ChildState.STOPPING}


class ChildProcess:
    """One supervised child. ``on_change`` is called (on the event loop) at each state change."""

    def __init__(
        self,
        spec: ChildSpec,
        *,
        log_path: Path | None = None,
        scrollback: int = 2000,
        on_change: Callable[[ChildProcess], None] | None = None,
        stop_timeouts: tuple[float, float] = (15.0, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.log_path = log_path
        self.on_change = on_change
        self.stop_timeouts = stop_timeouts
        self.clock = clock
        self.pending: deque[str] = deque(maxlen=scrollback)
        self.dropped = 0  # lines that fell out of ``pending`` before anyone drained them
        self.total_lines = 0
        self.state = ChildState.IDLE
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.error: str | None = None  # why a spawn failed
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.ended_at: float | None = None
        self.restarts = 0
        self.starts = 0
        self.stop_requested = False
        self.last_lines: deque[str] = deque(maxlen=200)  # for "why did it fail" notices
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._partial = b""
        self._reader: asyncio.Task[None] | None = None
        self._done: asyncio.Event = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.state in ALIVE_STATES

    def uptime(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else self.clock()
        return max(0.0, end - self.started_at)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Spawn the child (no-op while one is alive)."""
        if self.alive:
            return
        self._done = asyncio.Event()
        self.exit_code = None
        self.error = None
        self.stop_requested = False
        self._partial = b""
        self.ended_at = None
        self.ready_at = None
        self.pid = None
        self.last_lines.clear()
        self.starts += 1
        self._open_log()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(self.spec.env) if self.spec.env else None,
                cwd=self.spec.cwd,
                start_new_session=True,
                limit=STREAM_LIMIT,
            )
        except OSError as exc:
            self.error = f"could not start {self.spec.argv[0]!r}: {exc}"
            self._accept_lines([self.error])
            self._write_log(f"=== {self.error} ===\n".encode())
            self._close_log()
            self.started_at = self.clock()
            self.ended_at = self.started_at
            self._set_state(ChildState.FAILED)
            self._done.set()
            return
        self.pid = self._proc.pid
        self.started_at = self.clock()
        self._write_log(
            f"=== pirl-console {time.strftime('%Y-%m-%d %H:%M:%S')} start pid {self.pid}: "
            f"{self.spec.display()} ===\n".encode()
        )
        self._set_state(ChildState.STARTING)
        self._reader = asyncio.create_task(self._pump(self._proc))
        self._watcher = asyncio.create_task(self._watch(self._proc))

    async def stop(self) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL to the process group; returns the exit code."""
        if not self.alive or self._proc is None:
            return self.exit_code
        self.stop_requested = True
        if self.state is not ChildState.STOPPING:
            self._set_state(ChildState.STOPPING)
        t_int, t_term = self.stop_timeouts
        for sig, timeout in ((signal.SIGINT, t_int), (signal.SIGTERM, t_term), (signal.SIGKILL, None)):
            self._signal_group(sig)
            if timeout is None:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._done.wait(), timeout)
                break
        await self._done.wait()
        return self.exit_code

    async def restart(self) -> None:
        await self.stop()
        self.restarts += 1
        await self.start()

    async def wait(self) -> int | None:
        await self._done.wait()
        return self.exit_code

    def kill_now(self) -> None:
        """Last resort when the app goes away: SIGKILL the whole group, synchronously."""
        if self.pid is not None and (self.alive or self._group_exists()):
            self._signal_group(signal.SIGKILL)

    # ------------------------------------------------------------------ readiness
    def mark_ready(self) -> None:
        if self.state is ChildState.STARTING:
            self.ready_at = self.clock()
            self._set_state(ChildState.READY)

    def mark_running(self) -> None:
        if self.state in (ChildState.STARTING, ChildState.READY):
            self._set_state(ChildState.RUNNING)

    # ------------------------------------------------------------------ output
    def drain(self) -> list[str]:
        """Lines received since the last drain (at most ``scrollback`` of them)."""
        if not self.pending:
            return []
        lines = list(self.pending)
        self.pending.clear()
        return lines

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                chunk = await proc.stdout.read(READ_CHUNK)
                if not chunk:
                    break
                self._write_log(chunk)
                self._accept_chunk(chunk)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            if self._partial:
                self._accept_lines([self._decode(self._partial)])
                self._partial = b""

    def _accept_chunk(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        parts = data.split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_PARTIAL:
            parts.append(self._partial)
            self._partial = b""
        if parts:
            self._accept_lines([self._decode(p) for p in parts])

    @staticmethod
    def _decode(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        if "\r" in text:  # progress bars redraw with \r: keep what the terminal would show
            text = text.rstrip("\r").rsplit("\r", 1)[-1]
        return strip_ansi(text)

    def _accept_lines(self, lines: list[str]) -> None:
        overflow = len(self.pending) + len(lines) - (self.pending.maxlen or 0)
        if self.pending.maxlen is not None and overflow > 0:
            self.dropped += overflow
        self.pending.extend(lines)
        self.last_lines.extend(lines[-self.last_lines.maxlen :] if self.last_lines.maxlen else lines)
        self.total_lines += len(lines)
        marker = self.spec.ready_marker
        if marker and self.state is ChildState.STARTING and any(marker in line for line in lines):
            self.mark_ready()

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        reader = self._reader
        if reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(reader), EXIT_DRAIN_S)
            except asyncio.TimeoutError:
                # Something else still holds the pipe (an orphaned grandchild): end the group.
                await self._sweep_group()
                try:
                    await asyncio.wait_for(asyncio.shield(reader), EXIT_DRAIN_S)
                except asyncio.TimeoutError:
                    reader.cancel()
        await self._sweep_group()
        self.exit_code = code
        self.ended_at = self.clock()
        self._write_log(f"=== exited {code} ({exit_meaning(code)}) ===\n".encode())
        self._close_log()
        self._set_state(ChildState.EXITED)
        self._done.set()

    # ------------------------------------------------------------------ signals
    def _signal_group(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _group_exists(self) -> bool:
        return self.pid is not None and bool(live_group_members(self.pid))

    async def _sweep_group(self) -> None:
        """Whatever the leader left behind in its group gets SIGTERM, then SIGKILL."""
        if not self._group_exists():
            return
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and self._group_exists():
            await asyncio.sleep(0.02)
        if self._group_exists():
            self._signal_group(signal.SIGKILL)

    # ------------------------------------------------------------------ log file
    def _open_log(self) -> None:
        if self.log_path is None:
            return
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        except OSError:
            self._log = None  # a read-only output dir must not stop the run

    def _write_log(self, data: bytes) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log.write(data)
                self._log.flush()

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _set_state(self, state: ChildState) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(self)
