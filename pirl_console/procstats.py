"""CPU % and resident memory of a child's whole process tree (psutil).

Why keep ``psutil.Process`` objects between samples: ``cpu_percent(None)`` measures since
the previous call *on the same object*; a fresh object always reports 0. Children that
appear later (simulator workers) are picked up on the next sample; ones that vanish are
dropped. Sampling runs in a worker thread (it reads /proc), never on the UI loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeStats:
    cpu_percent: float
    rss_bytes: int
    processes: int


class TreeSampler:
    """Samples one process tree per root pid; call :meth:`sample` about once a second."""

    def __init__(self) -> None:
        self._procs: dict[int, dict[int, psutil.Process]] = {}

    def sample(self, root_pid: int) -> TreeStats | None:
        try:
            root = psutil.Process(root_pid)
            tree = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(root_pid, None)
            return None
        known = self._procs.setdefault(root_pid, {})
        current: dict[int, psutil.Process] = {}
        cpu = 0.0
        rss = 0
        for proc in tree:
            cached = known.get(proc.pid)
            if cached is not None and cached == proc:  # same pid *and* create time
                proc = cached
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                current[proc.pid] = proc
        self._procs[root_pid] = current
        return TreeStats(cpu_percent=cpu, rss_bytes=rss, processes=len(current))

    def forget(self, root_pid: int) -> None:
        self._procs.pop(root_pid, None)


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
