"""How a process stops when asked to: SIGINT (Ctrl-C) and SIGTERM (schedulers, ``kill``) alike.

The learner stops at the next safe point — never inside an update or a checkpoint write, so the
state it saves is one the uninterrupted run also passed through — and exits 130 (SIGINT) or 143
(SIGTERM). A second signal stops it at once; the atomic checkpoint writer still protects what is
on disk. The actor holds no state worth saving, so it stops at once on the first signal.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pirl_core.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The learner's stop flag, set by the first SIGINT/SIGTERM and read at safe points."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}

    def uninstall(self) -> None:
        """Give the signals back (an entry point called in-process, e.g. by tests, leaves no trace)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def request(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise Interrupted(signum)
        self.request(signum)
        name = signal.Signals(signum).name
        print(f"[learner] {name}: stopping after the current step (send it again to stop now)", flush=True)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextmanager
def stop_at_once_on_signals() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise :class:`Interrupted` where the process is (the actor's
    choice); the previous handlers come back on exit."""

    def handle(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
