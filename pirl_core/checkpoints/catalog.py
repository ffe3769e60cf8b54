"""What is in an output dir, and would this checkpoint resume under this config? (no tensors loaded)

Shared by ``python -m pirl_core.checkpoints`` and anything else that browses checkpoints: one
reader, so a listing, the console and the learner's own resume check cannot disagree.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import fsutil, layout
from pirl_core.checkpoints.identity import IdentityReport, compare_configs
from pirl_core.checkpoints.verify import CheckpointInfo, Problem, inspect, inspect_or_raise
from pirl_core.config import RunConfig
from pirl_core.telemetry import read_records, telemetry_path

SHOWN_METRICS = ("success_rate", "return_mean", "policy_loss", "approx_kl")


@dataclass
class Entry:
    """One line of a listing: a finished checkpoint, or the leftover of a killed writer."""

    step: int | None
    path: str
    saved_at: float | None
    size_bytes: int
    complete: bool
    last: bool = False
    leftover: bool = False
    problem: str | None = None
    version: int | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LastLink:
    """Where ``checkpoints/last`` points; ``dangling`` when that checkpoint does not exist
    (deleted by hand, or a copy that left it out): ``--resume`` refuses such a dir with exit 4."""

    target: str
    dangling: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_link_status(output_dir: Path | str) -> LastLink | None:
    """None when the output dir has no ``last`` symlink."""
    link = layout.last_link(output_dir)
    if not link.is_symlink():
        return None
    return LastLink(target=os.readlink(link), dangling=not link.exists())


def dangling_warning(output_dir: Path | str, last: LastLink) -> str:
    return (
        f"warning: {layout.last_link(output_dir)} points to {last.target}, which does not exist; "
        "--resume refuses this dir (exit 4): resume with --resume-from PATH of a complete checkpoint"
    )


def learner_metrics_by_step(output_dir: Path) -> dict[int, dict[str, Any]]:
    """The learner's last metrics record per step, from its telemetry file (if any)."""
    by_step: dict[int, dict[str, Any]] = {}
    for record in read_records(telemetry_path(output_dir, "learner")):
        if record.get("kind") != "metrics":
            continue
        fields = {k: v for k, v in record.items() if k not in ("ts", "source", "kind", "step")}
        by_step[int(record.get("step", -1))] = fields
    return by_step


def list_checkpoints(output_dir: Path | str) -> list[Entry]:
    """Finished checkpoints (checked for completeness) then leftovers, oldest first."""
    output_dir = Path(output_dir)
    last = layout.last_pointer(output_dir)
    metrics = learner_metrics_by_step(output_dir)
    entries = []
    for step, path in layout.step_dirs(output_dir):
        entry = Entry(
            step=step,
            path=str(path),
            saved_at=path.stat().st_mtime,
            size_bytes=fsutil.dir_size(path),
            complete=False,
            last=last is not None and path.resolve() == last,
            metrics=metrics.get(step, {}),
        )
        try:
            info = inspect(path)
        except Problem as problem:
            entry.problem = str(problem)
        else:
            entry.complete = True
            entry.saved_at = float(info.training_step.get("saved_at", entry.saved_at))
            entry.version = info.version
            entry.counters = info.counters
        entries.append(entry)
    for path in layout.leftovers(output_dir):
        name = path.name.split("-")
        step = layout.parse_step(name[1]) if len(name) > 2 else None
        entries.append(
            Entry(
                step=step,
                path=str(path),
                saved_at=path.lstat().st_mtime,
                size_bytes=fsutil.dir_size(path) if path.is_dir() else 0,
                complete=False,
                leftover=True,
                problem="leftover of a killed writer (ignored; removed when the next run starts)",
            )
        )
    return entries


def format_listing(output_dir: Path | str, entries: list[Entry]) -> str:
    last = last_link_status(output_dir)
    warning = [dangling_warning(output_dir, last)] if last is not None and last.dangling else []
    if not entries:
        return "\n".join([f"no checkpoints in {layout.checkpoints_root(output_dir)}", *warning])
    header = ("step", "saved", "size", "complete", "last", "version", "metrics")
    rows = []
    for e in entries:
        shown = " ".join(f"{k}={_num(e.metrics[k])}" for k in SHOWN_METRICS if k in e.metrics)
        rows.append(
            (
                "-" if e.step is None else str(e.step),
                "-" if e.saved_at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.saved_at)),
                _size(e.size_bytes),
                "yes" if e.complete else f"no: {e.problem}",
                "<- last" if e.last else "",
                "" if e.version is None else str(e.version),
                shown,
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([f"checkpoints in {layout.checkpoints_root(output_dir)}", *lines, *warning])


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def resolve_checkpoint(path: Path | str) -> Path:
    """A checkpoint dir as given, or for an output dir (or its ``checkpoints/``) the one ``last``
    points to (the newest finished one when there is no ``last``)."""
    path = Path(path)
    if path.name == layout.CHECKPOINTS_DIR and not (path / layout.TRAINING_STATE_DIR).exists():
        path = path.parent
    if (path / layout.CHECKPOINTS_DIR).is_dir() and not (path / layout.TRAINING_STATE_DIR).exists():
        link = layout.last_link(path)
        if link.is_symlink():
            return link
        finished = layout.step_dirs(path)
        if finished:
            return finished[-1][1]
    return path


def read_checkpoint(path: Path | str) -> CheckpointInfo:
    """Structural check with the exit-4 error (path, reason, newest complete alternative)."""
    path = resolve_checkpoint(path)
    if path.is_symlink() and path.exists():
        path = path.resolve()
    owner = layout.checkpoint_output_dir(path) if path.parent.name == layout.CHECKPOINTS_DIR else None
    return inspect_or_raise(path, owner)


def validate(path: Path | str, cfg: RunConfig) -> IdentityReport:
    """The learner's config-identity check, standalone. Raises CheckpointUnreadableError (exit 4)."""
    info = read_checkpoint(path)
    return IdentityReport(str(info.path), info.step, compare_configs(info.train_config, cfg))
