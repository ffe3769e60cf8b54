"""A run's telemetry as named series, and the panels every curve view draws.

Why here: ``python -m pirl_core.report`` (PNG) and the console's chart screen draw the same
curves from the same JSONL under the same names as W&B and TensorBoard
(:func:`pirl_core.sinks.scalars.scalars`), so reading, de-duplicating and grouping live once.
A resumed run repeats steps after its checkpoint: the latest record of a step wins, which is the
history the current checkpoint actually has. ``actors/<field>`` is the mean over ``actor-N``.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirl_core.sinks.scalars import scalars
from pirl_core.telemetry import TELEMETRY_DIR, read_records

Points = list[tuple[int, float]]


@dataclass(frozen=True)
class Panel:
    """One chart: the series it draws (glob patterns over series names), in this order."""

    title: str
    patterns: tuple[str, ...]
    fallback: tuple[str, ...] = ()  # drawn only when ``patterns`` match nothing
    exclude: tuple[str, ...] = ()

    def names(self, available: list[str] | set[str] | dict[str, Any]) -> list[str]:
        for patterns in (self.patterns, self.fallback):
            found: list[str] = []
            for pattern in patterns:
                for name in sorted(available):
                    excluded = any(fnmatch.fnmatchcase(name, x) for x in self.exclude)
                    if fnmatch.fnmatchcase(name, pattern) and name not in found and not excluded:
                        found.append(name)
            if found:
                return found
        return []


PANELS: tuple[Panel, ...] = (
    Panel("success rate", ("learner/success_rate", "eval/success_rate"), fallback=("actors/success_rate",)),
    Panel("return", ("learner/return_mean", "eval/return_mean"), fallback=("actors/return_mean",)),
    Panel("policy loss", ("learner/policy_loss",)),
    Panel("value loss", ("learner/value_loss",)),
    Panel("approx KL", ("learner/approx_kl",)),
    Panel("clip fraction", ("learner/clip_frac",)),
    Panel("ratio check max|ratio-1|", ("learner/ratio_check",)),
    Panel("learner samples/s", ("learner/samples_per_s",)),
    Panel("actor env steps/s", ("actors/env_steps_per_s",)),
    Panel("time per update (s)", ("learner/*_s", "actors/*_s"), exclude=("*_per_s", "*/wall_s")),
)


@dataclass
class RunSeries:
    """Everything a curve view needs from one output dir."""

    output_dir: Path
    label: str
    series: dict[str, Points] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None

    def last(self, name: str) -> float | None:
        points = self.series.get(name)
        return points[-1][1] if points else None

    def best(self, name: str) -> tuple[int, float] | None:
        points = self.series.get(name)
        return max(points, key=lambda p: p[1]) if points else None

    def wall_s(self) -> float | None:
        done = [
            e for e in self.events if e.get("event") == "done" and isinstance(e.get("wall_s"), (int, float))
        ]
        if done:
            return float(sum(e["wall_s"] for e in done))  # one per finished segment of a resumed run
        if self.first_ts is not None and self.last_ts is not None:
            return self.last_ts - self.first_ts
        return None

    def train_config(self) -> dict[str, Any] | None:
        """The config saved with the newest checkpoint (LeRobot's train_config.json), if any."""
        path = self.output_dir / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def telemetry_files(output_dir: Path | str) -> list[Path]:
    directory = Path(output_dir) / TELEMETRY_DIR
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def load_run(output_dir: Path | str, label: str | None = None) -> RunSeries:
    output_dir = Path(output_dir)
    run = RunSeries(output_dir, label or output_dir.name)
    by_step: dict[str, dict[int, float]] = {}
    for path in telemetry_files(output_dir):
        for record in read_records(path):
            record.setdefault("source", path.stem)
            ts = record.get("ts")
            if isinstance(ts, (int, float)):
                run.first_ts = ts if run.first_ts is None else min(run.first_ts, ts)
                run.last_ts = ts if run.last_ts is None else max(run.last_ts, ts)
            if record.get("kind") == "event":
                run.events.append(record)
            step = record.get("step")
            if not isinstance(step, int):
                continue
            for name, value in scalars(record).items():
                by_step.setdefault(name, {})[step] = value  # the latest record of a step wins
    for name, points in by_step.items():
        run.series[name] = sorted(points.items())
    _actor_means(run)
    return run


def _actor_means(run: RunSeries) -> None:
    per_field: dict[str, dict[int, list[float]]] = {}
    for name, points in run.series.items():
        source, _, key = name.partition("/")
        if source.startswith("actor-"):
            for step, value in points:
                per_field.setdefault(key, {}).setdefault(step, []).append(value)
    for key, steps in per_field.items():
        run.series[f"actors/{key}"] = [(s, sum(v) / len(v)) for s, v in sorted(steps.items())]


def unique_labels(dirs: list[Path]) -> list[str]:
    """Directory names, or as much of the path as tells them apart."""
    labels = [d.name for d in dirs]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join(d.resolve().parts[-depth:]) for d in dirs]
    return labels
