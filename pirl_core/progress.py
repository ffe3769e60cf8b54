"""In-round progress: how far an actor is through its share of one policy version's episodes.

Why: a round (one policy version: collect, send, wait for the update) takes tens of seconds to
minutes, and the rollouts reach the learner only when a wave of episodes is done. Without a word
in between, the learner and the console cannot tell an actor that is busy collecting from one
that hangs. So the actor reports a :class:`VersionProgress` at most every
``actor.progress_every_s`` seconds of wall time (:class:`ProgressReporter`), two ways:

* a ``progress`` telemetry event (``<output_dir>/telemetry/actor-N.jsonl``): the console's actor
  pane draws it as a progress bar with the round's ETA;
* its heartbeat to the learner (a ``Ready`` call carrying :meth:`VersionProgress.encode` in the
  ``pirl-progress`` metadata): the learner counts the actor as alive (``learner.actor_timeout_s``)
  and its waiting notice says "actor 0 busy: 1 of 2 episodes in" instead of only "missing".

Both are advisory: a learner or console that does not know them ignores them, and a malformed
value is dropped (:meth:`VersionProgress.decode` returns None), never fatal. The reports come
from the collection loop itself (after each chunk), not from a thread, so an actor stuck in a
simulator stops reporting and is still found silent.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pirl_core.rollout import Progress
    from pirl_core.telemetry import Telemetry

MAX_ENCODED_CHARS = 512  # a metadata value; anything longer is not ours
_INT_FIELDS = ("version", "episodes_done", "episodes_planned", "env_steps")


@dataclass(frozen=True)
class VersionProgress:
    """One actor's share of one policy version, so far.

    ``fraction`` is the share of the work done, counting each planned episode as a full time limit
    (``env.max_episode_steps`` env steps): a finished episode counts whole, a running one by its
    steps so far, one not started yet as nothing. Episodes that succeed early make the estimate
    pessimistic for themselves and the rate optimistic; ``eta_s`` extrapolates the rate so far
    (None until some work is done)."""

    version: int
    episodes_done: int
    episodes_planned: int
    env_steps: int
    elapsed_s: float
    fraction: float
    eta_s: float | None

    @classmethod
    def of(cls, version: int, progress: Progress, max_episode_steps: int) -> VersionProgress:
        planned = max(progress.episodes_planned, 1)
        if max_episode_steps > 0:
            running = min(progress.running_steps, planned * max_episode_steps)
            fraction = (progress.episodes_done * max_episode_steps + running) / (planned * max_episode_steps)
        else:
            fraction = progress.episodes_done / planned
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction >= 1.0:
            eta: float | None = 0.0
        elif fraction > 0.0:
            eta = progress.elapsed_s * (1.0 - fraction) / fraction
        else:
            eta = None
        return cls(
            version=int(version),
            episodes_done=int(progress.episodes_done),
            episodes_planned=int(progress.episodes_planned),
            env_steps=int(progress.env_steps),
            elapsed_s=float(progress.elapsed_s),
            fraction=fraction,
            eta_s=eta,
        )

    def fields(self) -> dict[str, Any]:
        """The telemetry event's fields (and the wire form): rounded, JSON-ready."""
        out = asdict(self)
        out["elapsed_s"] = round(self.elapsed_s, 1)
        out["fraction"] = round(self.fraction, 4)
        out["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        return out

    def encode(self) -> str:
        """Compact JSON for the heartbeat's ``pirl-progress`` metadata (ASCII, well under 512 chars)."""
        return json.dumps(self.fields(), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> VersionProgress | None:
        """The progress an actor announced, or None when absent or malformed (advisory data:
        a bad value costs the learner nothing but the counts in its notice)."""
        if not text or len(text) > MAX_ENCODED_CHARS:
            return None
        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        ints = {k: raw.get(k) for k in _INT_FIELDS}
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in ints.values()):
            return None
        floats = {k: raw.get(k) for k in ("elapsed_s", "fraction", "eta_s")}
        for key, value in floats.items():
            if value is None and key == "eta_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            if value < 0:
                return None
        if ints["episodes_done"] > ints["episodes_planned"] or floats["fraction"] > 1.0:
            return None
        return cls(
            **ints,
            elapsed_s=float(floats["elapsed_s"]),
            fraction=float(floats["fraction"]),
            eta_s=None if floats["eta_s"] is None else float(floats["eta_s"]),
        )

    def summary(self) -> str:
        """``1 of 2 episodes in, 900 env steps, ETA 25 s`` (the learner's waiting notice)."""
        eta = "" if self.eta_s is None else f", ETA {self.eta_s:.0f} s"
        return f"{self.episodes_done} of {self.episodes_planned} episodes in, {self.env_steps} env steps{eta}"


class ProgressReporter:
    """Throttles an actor's progress reports to one every ``every_s`` seconds of wall time (across
    versions: a fast toy run writes no more than a slow LIBERO one) and sends each one to the
    telemetry file and, when given, to the learner's heartbeat."""

    def __init__(
        self,
        telemetry: Telemetry,
        every_s: float,
        max_episode_steps: int,
        heartbeat: Callable[[VersionProgress], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.telemetry = telemetry
        self.every_s = float(every_s)
        self.max_episode_steps = int(max_episode_steps)
        self.heartbeat = heartbeat
        self.clock = clock
        self.reports = 0
        self._last = -math.inf

    def for_version(self, version: int) -> Callable[[Progress], None]:
        """The ``on_progress`` callback for one version's collection (``rollout_plan.version_rounds``)."""

        def report(progress: Progress) -> None:
            now = self.clock()
            if now - self._last < self.every_s:
                return
            self._last = now
            self.send(VersionProgress.of(version, progress, self.max_episode_steps))

        return report

    def send(self, progress: VersionProgress) -> None:
        self.reports += 1
        self.telemetry.event("progress", progress.version, echo=False, **progress.fields())
        if self.heartbeat is not None:
            self.heartbeat(progress)
