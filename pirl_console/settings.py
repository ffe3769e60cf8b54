"""Console tunables in one place (tests shrink the timeouts and the scrollback).

Why these defaults: 2000 lines of scrollback per pane is what supervisors such as mprocs keep
(a bit more than their 1000, since training logs are chatty); 80 ms batches keep output
feeling live at a bounded repaint rate; hidden panes catch up once a second; telemetry is
polled twice a second (dashboards refresh at 1–2 s); SIGINT gets 15 s because the learner
writes a checkpoint before it exits 130.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ConsoleSettings:
    scrollback: int = 2000
    flush_s: float = 0.08
    hidden_flush_s: float = 1.0
    stats_s: float = 1.0
    telemetry_s: float = 0.5
    stale_after_s: float = 30.0
    stop_timeouts: tuple[float, float] = (15.0, 5.0)
    wall_clock: Callable[[], float] = field(default=time.time)
