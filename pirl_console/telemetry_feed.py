"""Tail the run's telemetry JSONL files and keep what the telemetry panel shows.

Why incremental tails with byte offsets: telemetry files only grow, a long run writes tens
of thousands of records, and the panel polls twice a second — re-reading whole files would
grow without bound. A partially written last line is left for the next poll. Files that
existed before this run started (telemetry appends across runs in one output dir) are read
from their current end, so an earlier run's numbers never mix into this one.

Every field is optional: the schema grows as the recipe does, and a missing metric shows
as "-" instead of breaking the console.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirl_core.telemetry import TELEMETRY_DIR

HISTORY_FIELDS = ("success_rate", "return_mean", "policy_loss", "value_loss", "approx_kl")
# Lifecycle events the panes already show as state (badges, progress). Every other event —
# ``actor_lost``, ``waiting``, whatever the learner adds next — is surfaced as it comes.
ROUTINE_EVENTS = frozenset(
    {
        "ready",
        "connecting",
        "connected",
        "resumed",
        "checkpoint",
        "done",
        "learner_done",
        "interrupted",
        "terminated",
        "run",
        "logging_backend",
        "round_time",
        "best",
        "progress",  # an actor's in-round progress: its pane's bar (SourceState.progress)
    }
)
_ENVELOPE = ("ts", "source", "kind", "step", "event", "message")


def describe(record: dict[str, Any]) -> str:
    """One line for an event or error record, from its name and fields (no per-event code):
    ``learner: actor_lost actor_id=1 waited_s=60``."""
    name = record.get("event") if record.get("kind") == "event" else f"error: {record.get('message', '')}"
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in _ENVELOPE)
    return f"{record.get('source', '?')}: {name}{' ' + fields if fields else ''}"


class JsonlTail:
    """New complete JSON records of one file since the last call."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start over
            self.offset = 0
            self._partial = b""
        if size == self.offset:
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


class TelemetryWatcher:
    """All ``<output_dir>/telemetry/*.jsonl`` files, including ones that appear later."""

    def __init__(self, output_dir: Path, skip_existing: bool = True) -> None:
        self.directory = Path(output_dir) / TELEMETRY_DIR
        self._tails: dict[Path, JsonlTail] = {}
        if skip_existing and self.directory.is_dir():
            for path in self.directory.glob("*.jsonl"):
                self._tails[path] = JsonlTail(path, offset=path.stat().st_size)

    def poll(self) -> list[dict[str, Any]]:
        if not self.directory.is_dir():
            return []
        records: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            tail = self._tails.get(path)
            if tail is None:
                tail = self._tails[path] = JsonlTail(path)
            for record in tail.read_new():
                record.setdefault("source", path.stem)
                records.append(record)
        return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):  # telemetry writes NaN/inf as strings
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass
class SourceState:
    """The latest of one source (``learner`` or ``actor-N``)."""

    name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    last_ts: float | None = None
    last_metrics_ts: float | None = None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    records: int = 0
    progress: dict[str, Any] | None = None  # the latest ``progress`` event (kept out of ``events``)

    def value(self, key: str) -> float | None:
        return _number(self.metrics.get(key))

    def last_event(self, name: str) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if event.get("event") == name:
                return event
        return None


class RunTelemetry:
    """Aggregates records from all sources into what the telemetry panel displays."""

    def __init__(self, history_len: int = 120) -> None:
        self.sources: dict[str, SourceState] = {}
        self.history: dict[str, deque[float]] = {k: deque(maxlen=history_len) for k in HISTORY_FIELDS}
        self._updates: deque[tuple[float, float]] = deque(maxlen=12)  # (ts, update)
        self.ready_ts: float | None = None
        self.ready_step = 0.0
        self.done: dict[str, Any] | None = None
        self.notices: deque[dict[str, Any]] = deque(maxlen=20)  # notable events and errors, newest last

    @staticmethod
    def notable(record: dict[str, Any]) -> bool:
        """An error record, or an event that is not routine lifecycle. The learner's ``waiting``
        notice is notable only when it names a silent actor: busy ones show their progress bar
        (a learner that does not tell busy from silent is taken at its word, as before)."""
        kind = record.get("kind")
        if kind == "event" and record.get("event") == "waiting" and record.get("silent_actors") == []:
            return False
        return kind == "error" or (kind == "event" and record.get("event") not in ROUTINE_EVENTS)

    # ------------------------------------------------------------------ ingest
    def apply(self, records: list[dict[str, Any]]) -> set[str]:
        """Fold records in; returns the names of sources that changed."""
        changed: set[str] = set()
        for record in records:
            name = str(record.get("source", "?"))
            state = self.sources.get(name)
            if state is None:
                state = self.sources[name] = SourceState(name)
            ts = _number(record.get("ts"))
            state.last_ts = ts if ts is not None else state.last_ts
            state.records += 1
            kind = record.get("kind")
            if kind == "metrics":
                state.metrics.update(record)
                state.last_metrics_ts = ts
                if name == "learner":
                    self._learner_metrics(record, ts)
                elif not self._learner_has("success_rate"):
                    self._actor_history(record)
            elif kind == "event" and record.get("event") == "progress":
                state.progress = record  # every few seconds: would flush the events worth keeping
            elif kind == "event":
                state.events.append(record)
                if name == "learner" and record.get("event") == "ready" and ts is not None:
                    self.ready_ts = ts
                    self.ready_step = _number(record.get("step")) or 0.0
                if name == "learner" and record.get("event") == "done":
                    self.done = record
            elif kind == "error":
                state.errors.append(record)
            if self.notable(record):
                self.notices.append(record)
            changed.add(name)
        return changed

    def _learner_has(self, key: str) -> bool:
        learner = self.sources.get("learner")
        return learner is not None and key in learner.metrics

    def _learner_metrics(self, record: dict[str, Any], ts: float | None) -> None:
        for key in HISTORY_FIELDS:
            value = _number(record.get(key))
            if value is not None and math.isfinite(value):
                self.history[key].append(value)
        update = _number(record.get("update", record.get("step")))
        if ts is not None and update is not None:
            self._updates.append((ts, update))

    def _actor_history(self, record: dict[str, Any]) -> None:
        """Before the learner reports episode stats, plot the actors' own success/return."""
        for key in ("success_rate", "return_mean"):
            value = _number(record.get(key))
            if value is not None and math.isfinite(value):
                self.history[key].append(value)

    # ------------------------------------------------------------------ views
    @property
    def learner(self) -> SourceState | None:
        return self.sources.get("learner")

    @property
    def actors(self) -> list[SourceState]:
        return [self.sources[k] for k in sorted(self.sources) if k.startswith("actor")]

    def progress(self) -> tuple[int | None, int | None]:
        learner = self.learner
        if learner is None:
            return None, None
        update = learner.value("update")
        if update is None:
            update = learner.value("step")
        total = learner.value("updates_total")
        return (None if update is None else int(update)), (None if total is None else int(total))

    def eta_s(self) -> float | None:
        """Remaining updates over the recent update rate (from record timestamps)."""
        update, total = self.progress()
        if update is None or total is None:
            return None
        if update >= total:
            return 0.0
        points = list(self._updates)
        rate: float | None = None
        if len(points) >= 2 and points[-1][0] > points[0][0]:
            rate = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
        elif points and self.ready_ts is not None and points[-1][0] > self.ready_ts:
            rate = (points[-1][1] - self.ready_step) / (points[-1][0] - self.ready_ts)
        if rate is None or rate <= 0:
            return None
        return (total - update) / rate

    def actor_sum(self, key: str) -> float | None:
        values = [v for a in self.actors if (v := a.value(key)) is not None]
        return sum(values) if values else None

    def actor_mean(self, key: str) -> float | None:
        values = [v for a in self.actors if (v := a.value(key)) is not None]
        return sum(values) / len(values) if values else None

    def metric(self, key: str) -> float | None:
        """Learner's value when it reports the key, else the actors' mean."""
        learner = self.learner
        if learner is not None and (v := learner.value(key)) is not None:
            return v
        return self.actor_mean(key)

    def staleness(self, now: float) -> dict[str, float]:
        """Seconds since each source last wrote anything."""
        return {name: now - s.last_ts for name, s in self.sources.items() if s.last_ts is not None}


@dataclass(frozen=True)
class RoundProgressView:
    """What an actor pane's progress bar shows: the actor's latest ``progress`` event
    (pirl_core/progress.py), its ETA counted down since it was written, and whether the actor
    has finished the version since (its metrics record for that version came later)."""

    version: int
    episodes_done: int
    episodes_planned: int
    env_steps: int
    fraction: float
    eta_s: float | None
    collected: bool


def round_progress(state: SourceState | None, now: float) -> RoundProgressView | None:
    """The view of ``state``'s in-round progress at wall time ``now``; None before any report."""
    record = state.progress if state is not None else None
    if record is None:
        return None
    numbers = {k: _number(record.get(k)) for k in ("episodes_done", "episodes_planned", "env_steps")}
    version = _number(record.get("version", record.get("step")))
    fraction = _number(record.get("fraction"))
    if version is None or fraction is None or any(v is None for v in numbers.values()):
        return None
    ts = _number(record.get("ts"))
    done_version = state.value("version")
    collected = (
        done_version is not None and done_version >= version and (state.last_metrics_ts or 0.0) >= (ts or 0.0)
    )
    eta = _number(record.get("eta_s"))
    if eta is not None and ts is not None:
        eta = max(0.0, eta - max(0.0, now - ts))
    planned = int(numbers["episodes_planned"] or 0)
    return RoundProgressView(
        # collected: the newest version the actor finished (a fast run finishes several between reports)
        version=int(done_version) if collected and done_version is not None else int(version),
        episodes_done=planned if collected else int(numbers["episodes_done"] or 0),
        episodes_planned=planned,
        env_steps=int((state.value("env_steps") if collected else None) or numbers["env_steps"] or 0),
        fraction=1.0 if collected else min(max(fraction, 0.0), 1.0),
        eta_s=0.0 if collected else eta,
        collected=collected,
    )
