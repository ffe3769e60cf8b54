"""Is a checkpoint directory complete and readable? Cheap structural checks, no tensors loaded.

Why a manifest: ``training_step.json`` (LeRobot's file, pirl adds keys) lists every file of the
checkpoint with its byte size. It is written last, the whole directory is fsynced and renamed into
place, so a finished checkpoint always has a manifest that matches. A file that is missing,
truncated or grown, JSON that does not parse, or a safetensors file whose header disagrees with its
length is named precisely, and the caller suggests the newest checkpoint that passes these checks.
Shape mismatches against the live model are found later, at restore, before anything is loaded.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout
from pirl_core.errors import CheckpointUnreadableError

REQUIRED_FILES = (
    f"{layout.PRETRAINED_MODEL_DIR}/{layout.MODEL_CONFIG}",
    f"{layout.PRETRAINED_MODEL_DIR}/{layout.MODEL_WEIGHTS}",
    f"{layout.PRETRAINED_MODEL_DIR}/{layout.TRAIN_CONFIG}",
    f"{layout.PRETRAINED_MODEL_DIR}/{layout.RL_HEADS}",
    f"{layout.TRAINING_STATE_DIR}/{layout.RNG_STATE}",
)

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


class Problem(Exception):
    """One precise reason a checkpoint cannot be used (file relative to the checkpoint + what)."""


@dataclass
class CheckpointInfo:
    """What the structural check learned; enough for listing and identity validation."""

    path: Path
    step: int
    training_step: dict[str, Any]
    train_config: dict[str, Any]
    rl_heads_metadata: dict[str, str] = field(default_factory=dict)
    # The pretrained_model directory; default <path>/pretrained_model. A bare (copied or moved)
    # pretrained_model directory evaluates on its own (pirl_core/eval/evaluate.py).
    pretrained_dir: Path | None = None

    @property
    def model_dir(self) -> Path:
        return (
            self.pretrained_dir
            if self.pretrained_dir is not None
            else self.path / layout.PRETRAINED_MODEL_DIR
        )

    @property
    def version(self) -> int:
        return int(self.training_step.get("policy_version", self.step))

    @property
    def counters(self) -> dict[str, Any]:
        return dict(self.training_step.get("counters", {}))


def read_json(path: Path, rel: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise Problem(f"{rel} is missing") from exc
    except OSError as exc:
        raise Problem(f"{rel} cannot be read ({exc.strerror})") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(f"{rel} is not valid JSON ({exc})") from exc


def safetensors_header(path: Path, rel: str) -> dict[str, Any]:
    """Parse and check a safetensors header against the file length (detects truncation)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise Problem(f"{rel} is truncated ({size} bytes, no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise Problem(f"{rel} is truncated (header says {n} header bytes, file has {size})")
            raw = fh.read(n)
    except FileNotFoundError as exc:
        raise Problem(f"{rel} is missing") from exc
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(f"{rel} has a corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise Problem(f"{rel} has a corrupt safetensors header (not a table)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            shape = entry["shape"]
            dtype = entry["dtype"]
        except (KeyError, TypeError, ValueError) as exc:
            raise Problem(f"{rel} has a corrupt safetensors header (entry {name!r})") from exc
        width = _DTYPE_BYTES.get(dtype)
        if width is not None and stop - begin != math.prod(shape) * width:
            raise Problem(f"{rel}: tensor {name!r} has {stop - begin} bytes for shape {shape} {dtype}")
        end = max(end, stop)
    if size != 8 + n + end:
        raise Problem(f"{rel} is truncated ({size} bytes, the header describes {8 + n + end})")
    return header


def inspect(path: Path) -> CheckpointInfo:
    """Structural check of one checkpoint directory; raises :class:`Problem` with the reason."""
    if path.is_symlink() and not path.exists():
        raise Problem(f"it is a dangling link to {path.readlink()}")
    if not path.is_dir():
        raise Problem("it does not exist" if not path.exists() else "it is not a directory")
    ts_rel = f"{layout.TRAINING_STATE_DIR}/{layout.TRAINING_STEP}"
    ts = read_json(path / ts_rel, ts_rel)
    if not isinstance(ts, dict) or "step" not in ts:
        raise Problem(f"{ts_rel} has no 'step'")
    fmt = ts.get("pirl_format")
    if fmt is None or "files" not in ts:
        raise Problem(f"{ts_rel} has no pirl manifest: not a checkpoint written by pirl")
    if not isinstance(fmt, int) or fmt > layout.FORMAT_VERSION:
        raise Problem(f"{ts_rel} has pirl_format {fmt!r}; this pirl reads format <= {layout.FORMAT_VERSION}")
    manifest: dict[str, int] = ts["files"]
    for rel in REQUIRED_FILES:
        if rel not in manifest:
            raise Problem(f"{rel} is not listed in {ts_rel}")
    for rel, expected in sorted(manifest.items()):
        file = path / rel
        if not file.is_file():
            raise Problem(f"{rel} is missing")
        actual = file.stat().st_size
        if actual != expected:
            raise Problem(f"{rel} has {actual} bytes, the manifest says {expected} (truncated or modified)")
    heads_meta: dict[str, str] = {}
    for rel in sorted(manifest):
        if rel.endswith(".json"):
            read_json(path / rel, rel)
        elif rel.endswith(".safetensors"):
            header = safetensors_header(path / rel, rel)
            if rel.endswith(layout.RL_HEADS):
                heads_meta = dict(header.get("__metadata__") or {})
    cfg_rel = f"{layout.PRETRAINED_MODEL_DIR}/{layout.TRAIN_CONFIG}"
    train_config = read_json(path / cfg_rel, cfg_rel)
    if not isinstance(train_config, dict):
        raise Problem(f"{cfg_rel} is not a table")
    return CheckpointInfo(
        path=path,
        step=int(ts["step"]),
        training_step=ts,
        train_config=train_config,
        rl_heads_metadata=heads_meta,
    )


def newest_complete(output_dir: Path, skip: Path | None = None) -> CheckpointInfo | None:
    """The newest checkpoint under ``output_dir`` that passes :func:`inspect` (``skip`` excluded)."""
    skip_resolved = skip.resolve() if skip is not None else None
    for _step, candidate in reversed(layout.step_dirs(output_dir)):
        if skip_resolved is not None and candidate.resolve() == skip_resolved:
            continue
        try:
            return inspect(candidate)
        except Problem:
            continue
    return None


class UnreadableCheckpoint(CheckpointUnreadableError):
    """Exit 4: which checkpoint, what is wrong with it, and the newest one that would work."""

    def __init__(self, path: Path, reason: str, fallback: Path | None, *, fork: bool = False) -> None:
        if fallback is not None and fork:
            # Newer (unreadable) checkpoints sit next to the fallback: continuing in that output
            # dir would collide with them (resume refuses, exit 2), so the way out is a fork.
            suggestion = (
                f"the newest complete checkpoint is {fallback}: continue from it in a new output dir "
                f"with --output_dir=NEW --resume-from {fallback}"
            )
        elif fallback is not None:
            suggestion = f"the newest complete checkpoint is {fallback}: resume with --resume-from {fallback}"
        else:
            suggestion = "no complete checkpoint to fall back on: start a new output dir"
        super().__init__(f"checkpoint {path} is unreadable: {reason}; {suggestion}")
        self.path = path
        self.reason = reason
        self.fallback = fallback


def unreadable(path: Path, reason: str, output_dir: Path | None) -> UnreadableCheckpoint:
    """Build the exit-4 error, looking up the newest complete checkpoint in ``output_dir``."""
    good = newest_complete(output_dir, skip=path) if output_dir is not None else None
    if good is None or output_dir is None:
        return UnreadableCheckpoint(path, reason, None)
    good_step = layout.parse_step(good.path.name) or 0
    newer = any(step > good_step for step, _ in layout.step_dirs(output_dir))
    return UnreadableCheckpoint(path, reason, good.path, fork=newer)


def inspect_or_raise(path: Path, output_dir: Path | None = None) -> CheckpointInfo:
    try:
        return inspect(path)
    except Problem as problem:
        raise unreadable(path, str(problem), output_dir) from None
