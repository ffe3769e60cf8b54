"""Telemetry: one JSON line per record under ``<output_dir>/telemetry/<source>.jsonl``.

Why files and stdout both: the console (and any later tool) tails the JSONL files, while a
researcher running headless in two terminals reads the stdout lines. Record schema (docs/design.md, "Telemetry"):
``{"ts": unix seconds, "source": "learner"|"actor-N", "kind": "metrics"|"event"|"error",
"step": int, ...fields}``. Events carry ``"event": name``. Each process starts its file with one
``event=run`` record (:func:`run_record`): what the run is, so a JSONL file can be read alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from pirl_core.source import git_state

if TYPE_CHECKING:
    from pirl_core.config import RunConfig

TELEMETRY_DIR = "telemetry"


def telemetry_path(output_dir: Path | str, source: str) -> Path:
    return Path(output_dir) / TELEMETRY_DIR / f"{source}.jsonl"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible instead of crashing
    return value


def format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        value = _jsonable(value)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


class Sink(Protocol):
    """A logging backend fed with every telemetry record (already JSON-safe)."""

    name: str

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Where its output goes (announced once as a ``logging_backend`` event)."""
        ...


class Telemetry:
    """Append-only writer for one process. Flushes each line so tailers see it at once."""

    def __init__(
        self,
        output_dir: Path | str,
        source: str,
        stdout: TextIO | None = None,
        sinks: tuple[Sink, ...] = (),
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.path = telemetry_path(output_dir, source)
        # the run's secret values (pirl_core/redact.py): masked in every record and printed line
        self._secrets = tuple(s for s in secrets if s)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise self._storage_error(exc) from exc
        self._stdout = stdout if stdout is not None else sys.stdout
        self._sinks: list[Sink] = list(sinks)
        self._last_step = 0
        self._broken = False  # the JSONL could not be written: a run stops (exit 8), once

    def _storage_error(self, exc: OSError) -> Exception:
        from pirl_core.storage import fault_errno, storage_error

        if fault_errno(exc) is None:
            return exc
        then = "earlier records and checkpoints are intact; free space or fix permissions, then --resume"
        return storage_error(f"{self.source} telemetry", self.path, exc, then)

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return tuple(self._sinks)

    def _write(self, kind: str, step: int, fields: dict[str, Any]) -> dict[str, Any]:
        record = {"ts": round(time.time(), 3), "source": self.source, "kind": kind, "step": int(step)}
        record.update({k: _jsonable(v) for k, v in fields.items()})
        if self._secrets:
            from pirl_core.redact import mask_record

            record = mask_record(record, self._secrets)
        if not self._broken:
            try:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
            except OSError as exc:
                self._broken = True  # later records (the error that follows) are not attempted
                raise self._storage_error(exc) from exc
        self._last_step = record["step"]
        for sink in list(self._sinks):
            try:
                sink.write(record)
            except Exception as exc:  # noqa: BLE001 - a logging backend never stops training
                self.sink_failed(sink.name, exc, sink)
                with contextlib.suppress(Exception):  # release what it holds (files, W&B process)
                    sink.close()
        return record

    def sink_failed(self, name: str, exc: BaseException, sink: Sink | None = None) -> None:
        """Report a backend failure once (stderr + an event) and stop feeding that backend."""
        if sink is not None and sink in self._sinks:
            self._sinks.remove(sink)
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]  # one line, whatever it said
        print(
            f"warning: telemetry backend {name!r} failed ({error}); training continues without it, "
            f"every record is still in {self.path}",
            file=sys.stderr,
            flush=True,
        )
        self._write("event", self._last_step, {"event": "sink_failed", "sink": name, "error": error})

    def metrics(self, step: int, *, headline: tuple[str, ...] = (), **fields: Any) -> None:
        """Write all fields; echo only the ``headline`` keys (all when empty) so a terminal
        line stays readable while the JSONL keeps every figure."""
        self._write("metrics", step, fields)
        shown = {k: fields[k] for k in headline if k in fields} if headline else fields
        self.say(f"[{self.source}] step {step} {format_fields(shown)}")

    def evaluation(self, step: int, *, headline: tuple[str, ...] = (), **fields: Any) -> None:
        """A ``kind=eval`` record (plotted as ``eval/<field>``, pirl_core/sinks/scalars.py)."""
        self._write("eval", step, fields)
        shown = {k: fields[k] for k in headline if k in fields} if headline else fields
        self.say(f"[{self.source}] eval step {step} {format_fields(shown)}")

    def event(self, name: str, step: int = 0, *, echo: bool = True, **fields: Any) -> None:
        self._write("event", step, {"event": name, **fields})
        if echo:
            extra = f" {format_fields(fields)}" if fields else ""
            self.say(f"[{self.source}] {name}{extra}")

    def error(self, message: str, step: int = 0, **fields: Any) -> None:
        """Record the error a process is about to exit with; a disk that refuses this record too
        must not replace that error with its own (the process prints it either way)."""
        from pirl_core.errors import StorageError

        with contextlib.suppress(StorageError):
            self._write("error", step, {"message": message, **fields})

    def say(self, line: str) -> None:
        if self._secrets:
            from pirl_core.redact import mask

            line = mask(line, self._secrets)
        print(line, file=self._stdout, flush=True)

    def close(self) -> None:
        for sink in list(self._sinks):
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - reported, the JSONL is already complete
                self.sink_failed(sink.name, exc, sink)
        self._sinks.clear()
        if not self._file.closed:
            with contextlib.suppress(OSError):  # every line was flushed (or reported) already
                self._file.close()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pirl_version() -> str | None:
    try:
        return metadata.version("pirl")
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` when it has local changes); None outside a git checkout."""
    state = git_state()
    return None if state is None else state.label()


def run_record(cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """The fields of the ``event=run`` record: the headline facts, the run id and the resolved
    config with its secrets redacted (this record is also W&B's run config)."""
    from pirl_core.redact import redact_config
    from pirl_core.runid import run_id

    return {
        "profile": cfg.profile,
        "env_type": cfg.env.type,
        "suite": cfg.env.suite,
        "task_ids": list(cfg.env.task_ids),
        "seed": cfg.seed,
        "pirl_version": pirl_version(),
        "git_commit": git_commit(),
        "run_id": run_id(cfg),
        **extra,
        "config": redact_config(cfg),
    }


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """All complete records of a telemetry file (a partially written last line is skipped)."""
    records = []
    p = Path(path)
    if not p.exists():
        return records
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
