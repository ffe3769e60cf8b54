"""Where the checkpoint browser and the mismatch table get their data.

Why a protocol: the browser needs "list the checkpoints of an output dir" and "validate one
against the current request" — nothing more. Production reads real checkpoint trees with
``pirl_core.checkpoints`` (the same layout reader and resume validator the learner uses, so
the console's verdict and the learner's exit 3 cannot disagree); tests may inject any object
with these two methods. Both calls do file I/O and run in worker threads.
"""

from __future__ import annotations

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
                    fatal = {k for k in saved if ident.FIELD_CLASSES.get(k, ident.FATAL) == ident.FATAL}
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
        from pirl_core.checkpoints import identity as ident

        try:
            config = request.config()
        except ConfigError as err:
            return ValidationResult(Path(checkpoint), None, [], summary=err.line(), unreadable=err.message)
        try:
            report = catalog.validate(checkpoint, config)
        except PirlError as err:  # CheckpointUnreadableError: exit 4's message, with the way out
            return ValidationResult(Path(checkpoint), None, [], summary=err.message, unreadable=err.message)
        rows = [
            MismatchRow(
                r.field,
                r.checkpoint,
                r.current,
                r.severity,
                r.fix,
                saved_text=None
                if r.checkpoint == ident.ABSENT or r.field.startswith("model.")
                else ident.value_text(r.checkpoint),
            )
            for r in report.rows
        ]
        return ValidationResult(Path(report.checkpoint), report.step, rows, summary=report.summary())


TABLE_HEADER = ("field", "checkpoint (expected)", "current", "severity", "how to fix")


def parse_mismatch_table(lines: list[str]) -> list[MismatchRow]:
    """Rows of the table a learner prints when it refuses a resume (exit 3).

    Why: the config identity can be re-checked from files, but the model identity is compared
    only once the learner has built the model; when that is what failed, the learner's own
    table (``IdentityReport.format_table``: header, a rule of dashes, one row per field) is the
    only source. Column bounds come from the rule line.
    """
    for i, line in enumerate(lines):
        if not line.startswith(TABLE_HEADER[0]) or TABLE_HEADER[1] not in line or i + 1 >= len(lines):
            continue
        rule = lines[i + 1]
        if not rule.startswith("-"):
            continue
        bounds = []
        start = 0
        for part in rule.split("  "):
            if part:
                bounds.append(start)
            start += len(part) + 2
        if len(bounds) != len(TABLE_HEADER):
            continue
        rows = []
        for row_line in lines[i + 2 :]:
            if not row_line.strip() or len(row_line) <= bounds[3]:
                break
            cells = [row_line[a:b].strip() for a, b in zip(bounds, bounds[1:] + [len(row_line)], strict=True)]
            field_name, saved, current, severity, fix = cells
            if severity not in (FATAL, CHANGED):
                break
            usable = (
                saved not in ("(absent)", "")
                and not saved.endswith("…")
                and not field_name.startswith("model.")
            )
            rows.append(
                MismatchRow(field_name, saved, current, severity, fix, saved_text=saved if usable else None)
            )
        return rows
    return []
