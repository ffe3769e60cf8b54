"""Accumulated wall time per named part, for the timing breakdowns pirl reports."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """``with watch("reset"): ...`` adds the block's wall seconds to ``watch.seconds["reset"]``.

    One object per measured span (a collection, a round): the parts it was never asked about
    read 0, so a report can list every part whether or not it ran."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t0

    def elapsed(self) -> float:
        """Wall seconds since the stopwatch was made (every part and the time between them)."""
        return time.perf_counter() - self.started
