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
class RankStats:
    """One learner rank under torchrun (its process has ``RANK`` in its environment)."""

    rank: int
    pid: int
    cpu_percent: float
    rss_bytes: int


@dataclass(frozen=True)
class TreeStats:
    cpu_percent: float
    rss_bytes: int
    processes: int
    ranks: tuple[RankStats, ...] = ()  # empty unless the child is a torchrun learner


def _rank_of(proc: psutil.Process) -> int | None:
    """The torchrun rank a process runs as, from its environment (None: none, or not readable yet)."""
    with contextlib.suppress(psutil.Error, ValueError):
        value = proc.environ().get("RANK")
        return int(value) if value is not None else None
    return None


class TreeSampler:
    """Samples one process tree per root pid; call :meth:`sample` about once a second."""

    def __init__(self) -> None:
        self._procs: dict[int, dict[int, psutil.Process]] = {}
        self._ranks: dict[
            int, dict[int, int | None]
        ] = {}  # per root: pid -> rank (found ranks are not re-read)

    def sample(self, root_pid: int) -> TreeStats | None:
        try:
            root = psutil.Process(root_pid)
            tree = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(root_pid, None)
            self._ranks.pop(root_pid, None)
            return None
        known = self._procs.setdefault(root_pid, {})
        current: dict[int, psutil.Process] = {}
        cpu = 0.0
        rss = 0
        ranks = []
        known_ranks = self._ranks.get(root_pid, {})
        current_ranks: dict[int, int | None] = {}
        for proc in tree:
            cached = known.get(proc.pid)
            if cached is not None and cached == proc:  # same pid *and* create time
                proc = cached
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                proc_cpu, proc_rss = proc.cpu_percent(None), proc.memory_info().rss
                cpu += proc_cpu
                rss += proc_rss
                current[proc.pid] = proc
                # A found rank is kept; a process without one is asked again next time: right after
                # it starts, its environment can read empty for a moment (seen under load).
                rank = known_ranks.get(proc.pid)
                if rank is None:
                    rank = _rank_of(proc)
                current_ranks[proc.pid] = rank
                if rank is not None and proc.pid != root_pid:
                    ranks.append(RankStats(rank, proc.pid, proc_cpu, proc_rss))
        self._procs[root_pid] = current
        self._ranks[root_pid] = current_ranks
        ranks.sort(key=lambda r: r.rank)
        return TreeStats(cpu_percent=cpu, rss_bytes=rss, processes=len(current), ranks=tuple(ranks))

    def forget(self, root_pid: int) -> None:
        self._procs.pop(root_pid, None)
        self._ranks.pop(root_pid, None)


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
