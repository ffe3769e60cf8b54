"""Where the checkpoint browser and the mismatch table get their data.

Why a protocol: the browser needs "list the checkpoints of an output dir" and "validate one
against the current request" — nothing more. Production reads real checkpoint trees with
``pirl_core.checkpoints`` (the same layout reader and resume validator the learner uses, so
the console's verdict and the learner's exit 3 cannot disagree); tests may inject any object
with these two methods. Both calls do file I/O and run in worker threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pirl_console.run_request import RunRequest
from pirl_core.errors import ConfigError, PirlError

FATAL = "fatal"
CHANGED = "changed"


@dataclass(frozen=True)
class CheckpointEntry:
    """One row of the browser."""

    step: int
    path: Path
    mtime: float
    size_bytes: int
    is_last: bool = False
    version: int | None = None
    # The saved run identity, flattened to dotted names (the RunConfig it was trained with,
    # plus what the model recorded about itself), and which of those a resume must match.
    identity: dict[str, Any] = field(default_factory=dict)
    fatal_fields: frozenset[str] = frozenset()
    counters: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why it cannot be used, when it cannot


@dataclass(frozen=True)
class MismatchRow:
    """One differing field: saved (expected) value, current value, fatal or changed, the fix."""

    field: str
    saved: Any
    current: Any
    severity: str
    fix: str

    @property
    def fatal(self) -> bool:
        return self.severity == FATAL


@dataclass
class ValidationResult:
    checkpoint: Path
    step: int | None
    rows: list[MismatchRow]
    summary: str = ""
    unreadable: str | None = None  # the checkpoint could not be read at all (exit 4)

    @property
    def fatal(self) -> list[MismatchRow]:
        return [r for r in self.rows if r.fatal]

    @property
    def ok(self) -> bool:
        return self.unreadable is None and not self.fatal


class CheckpointSource(Protocol):
    def list(self, output_dir: Path) -> list[CheckpointEntry]: ...

    def validate(self, checkpoint: Path, request: RunRequest) -> ValidationResult: ...


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class CoreCheckpointSource:
    """Reads ``<output_dir>/checkpoints`` with ``pirl_core.checkpoints`` (no tensors loaded)."""

    def list(self, output_dir: Path) -> list[CheckpointEntry]:
        from pirl_core.checkpoints import identity as ident
        from pirl_core.checkpoints import layout, verify

        last = layout.last_pointer(output_dir)
        entries = []
        for step, path in layout.step_dirs(output_dir):
            is_last = last is not None and path.resolve() == last
            try:
                mtime = path.stat().st_mtime
            except OSError:
                mtime = 0.0
            try:
                info = verify.inspect(path)
            except verify.Problem as problem:
                entries.append(
                    CheckpointEntry(step, path, mtime, tree_size(path), is_last, problem=str(problem))
                )
                continue
            identity = ident.flatten(info.train_config)
            fatal = {k for k in identity if ident.FIELD_CLASSES.get(k, FATAL) == FATAL}
            for key, value in sorted(info.rl_heads_metadata.items()):
                identity[f"model.{key}"] = value
            entries.append(
                CheckpointEntry(
                    step=info.step,
                    path=path,
                    mtime=mtime,
                    size_bytes=tree_size(path),
                    is_last=is_last,
                    version=info.version,
                    identity=identity,
                    fatal_fields=frozenset(fatal),
                    counters=info.counters,
                )
            )
        return entries

    def validate(self, checkpoint: Path, request: RunRequest) -> ValidationResult:
        """The learner's own resume check, field by field (config identity)."""
        from pirl_core.checkpoints import identity, verify

        try:
            config = request.config()
        except ConfigError as err:
            return ValidationResult(checkpoint, None, [], summary=err.line(), unreadable=None)
        try:
            info = verify.inspect(Path(checkpoint))
        except verify.Problem as problem:
            reason = f"checkpoint {checkpoint} is unreadable: {problem}"
            return ValidationResult(checkpoint, None, [], summary=reason, unreadable=reason)
        except PirlError as err:  # pragma: no cover - defensive: API raising its own errors
            return ValidationResult(checkpoint, None, [], summary=err.message, unreadable=err.message)
        report = identity.IdentityReport(
            str(checkpoint), info.step, identity.compare_configs(info.train_config, config)
        )
        rows = [MismatchRow(r.field, r.checkpoint, r.current, r.severity, r.fix) for r in report.rows]
        return ValidationResult(Path(checkpoint), info.step, rows, summary=report.summary())
