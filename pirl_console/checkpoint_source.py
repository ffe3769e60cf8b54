"""Where the checkpoint browser and the mismatch table get their data.

Why a protocol: the browser needs "list the checkpoints of an output dir" and "validate one
against the current request" — nothing more. Production reads real checkpoint trees with
``pirl_core.checkpoints`` (the same layout reader and resume validator the learner uses, so
the console's verdict and the learner's exit 3 cannot disagree); tests may inject any object
with these two methods. Both calls do file I/O and run in worker threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pirl_console.run_request import RunRequest
from pirl_core.errors import ConfigError, PirlError

FATAL = "fatal"
CHANGED = "changed"


@dataclass(frozen=True)
class CheckpointEntry:
    """One row of the browser (a finished checkpoint, or the leftover of a killed writer)."""

    step: int | None
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
    metrics: dict[str, Any] = field(default_factory=dict)  # learner metrics logged at this step
    problem: str | None = None  # why it cannot be used, when it cannot


@dataclass(frozen=True)
class MismatchRow:
    """One differing field: saved (expected) value, current value, fatal or changed, the fix."""

    field: str
    saved: Any
    current: Any
    severity: str
    fix: str
    # The saved value as override text (``--field=<saved_text>`` puts it back); None when no
    # flag can (model identity, absent keys).
    saved_text: str | None = None

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


class CoreCheckpointSource:
    """``pirl_core.checkpoints``' catalog (listing, completeness, identity check; no tensors)."""

    def list(self, output_dir: Path) -> list[CheckpointEntry]:
        from pirl_core.checkpoints import catalog, verify
        from pirl_core.checkpoints import identity as ident

        entries = []
        for item in catalog.list_checkpoints(output_dir):
            path = Path(item.path)
            saved, fatal = {}, set()
            if item.complete:
                try:
                    info = verify.inspect(path)
                except verify.Problem:
                    info = None
                if info is not None:
                    saved = ident.flatten(info.train_config)
                    fatal = ident.fatal_fields(saved)  # the validator's own classification
            entries.append(
                CheckpointEntry(
                    step=item.step,
                    path=path,
                    mtime=item.saved_at or 0.0,
                    size_bytes=item.size_bytes,
                    is_last=item.last,
                    version=item.version,
                    identity=saved,
                    fatal_fields=frozenset(fatal),
                    counters=dict(item.counters),
                    metrics=dict(item.metrics),
                    problem=item.problem,
                )
            )
        return entries

    def validate(self, checkpoint: Path, request: RunRequest) -> ValidationResult:
        """The learner's own config-identity check for this request (exit 3 rows)."""
        from pirl_core.checkpoints import catalog

        try:
            config = request.config()
        except ConfigError as err:
            return ValidationResult(Path(checkpoint), None, [], summary=err.line(), unreadable=err.message)
        try:
            report = catalog.validate(checkpoint, config)
        except PirlError as err:  # CheckpointUnreadableError: exit 4's message, with the way out
            return ValidationResult(Path(checkpoint), None, [], summary=err.message, unreadable=err.message)
        return result_from_report(report.to_dict())


def result_from_report(data: dict[str, Any]) -> ValidationResult:
    """A ValidationResult from ``IdentityReport.to_dict()``: what ``validate`` computes from the
    files, and what the learner writes with ``--mismatch-json`` when it refuses a resume (exit 3;
    the only source when the built model's identity is what differs). Saved values stay typed,
    so ``saved_text`` puts them back exactly (the printed table truncates long cells)."""
    from pirl_core.checkpoints import identity as ident

    rows = [
        MismatchRow(
            str(r["field"]),
            r["checkpoint"],
            r["current"],
            str(r["severity"]),
            str(r["fix"]),
            saved_text=None
            if r["checkpoint"] == ident.ABSENT or str(r["field"]).startswith("model.")
            else ident.value_text(r["checkpoint"]),
        )
        for r in data.get("rows", [])
    ]
    step = data.get("step")
    return ValidationResult(
        Path(str(data.get("checkpoint", ""))),
        step if isinstance(step, int) else None,
        rows,
        summary=str(data.get("summary", "")),
    )


def read_mismatch_report(path: Path) -> ValidationResult | None:
    """The learner's exit-3 JSON report, or None when it wrote none (or an unreadable one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None
    try:
        return result_from_report(data)
    except (KeyError, TypeError):
        return None
