"""Named arrays in one shared-memory segment: how env workers hand observations to the actor and
take actions from it without pickling images through a pipe.

Layout (see docs/design.md, "env workers"): every field is one C-contiguous array with a leading
``n_envs`` axis, placed at a 64-byte aligned offset computed from the field list alone, so the
actor and each worker derive identical views from ``(fields, n_envs)``. Worker ``w`` writes only
the rows of its own sub-envs; the actor reads all rows after every worker has answered.

Lifetime: the actor creates the segment (name ``pirl-<pid>-<token>``) and is the only one to
unlink it (:meth:`SharedArrays.unlink`, called from the env's ``close`` on normal exit, on Ctrl-C
and when a worker dies). Workers only attach and close their mapping. Should the actor itself be
killed, Python's resource tracker (shared with ``spawn``-ed workers) unlinks what is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

ALIGN = 64
NAME_PREFIX = "pirl-"

Path = tuple[str, ...]


@dataclass(frozen=True)
class FieldSpec:
    """One array per sub-env: ``path`` in the (nested) observation dict, per-env shape, dtype."""

    path: Path
    shape: tuple[int, ...]
    dtype: str


def flatten(tree: dict[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Nested dict -> {key path: leaf}."""
    out: dict[Path, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def unflatten(leaves: dict[Path, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in leaves.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _layout(fields: list[FieldSpec], n_envs: int) -> tuple[dict[Path, int], int]:
    offsets: dict[Path, int] = {}
    cursor = 0
    for f in fields:
        offsets[f.path] = cursor
        nbytes = n_envs * int(np.prod(f.shape, dtype=np.int64)) * np.dtype(f.dtype).itemsize
        cursor += -(-nbytes // ALIGN) * ALIGN
    return offsets, max(cursor, ALIGN)


def segment_names(pid: int | None = None) -> list[str]:
    """pirl segments in /dev/shm (all, or the ones created by process ``pid``)."""
    prefix = NAME_PREFIX if pid is None else f"{NAME_PREFIX}{pid}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:  # no /dev/shm (not Linux): nothing to list
        return []


class SharedArrays:
    """Views of ``fields`` (each with a leading ``n_envs`` axis) in one shared-memory segment."""

    def __init__(self, shm: shared_memory.SharedMemory, fields: list[FieldSpec], n_envs: int, owner: bool):
        self._shm = shm
        self.name = shm.name
        self.fields = list(fields)
        self.n_envs = n_envs
        self.owner = owner
        offsets, _size = _layout(self.fields, n_envs)
        self.arrays: dict[Path, np.ndarray] = {
            f.path: np.ndarray((n_envs, *f.shape), dtype=f.dtype, buffer=shm.buf, offset=offsets[f.path])
            for f in self.fields
        }
        self._closed = False

    @classmethod
    def create(cls, fields: list[FieldSpec], n_envs: int) -> SharedArrays:
        _offsets, size = _layout(fields, n_envs)
        name = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        return cls(shm, fields, n_envs, owner=True)

    @classmethod
    def attach(cls, name: str, fields: list[FieldSpec], n_envs: int) -> SharedArrays:
        return cls(shared_memory.SharedMemory(name=name), fields, n_envs, owner=False)

    def write(self, rows: slice, leaves: dict[Path, Any]) -> None:
        """Copy ``leaves`` (each with a leading axis of the slice's length) into ``rows``; a shape
        or dtype other than the field's is a bug in the env family's spec, reported by name."""
        for path, value in leaves.items():
            dst = self.arrays[path][rows]
            src = np.asarray(value)
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"observation field {'.'.join(path)}: got {src.dtype}{list(src.shape)}, the shared-memory "
                    f"layout expects {dst.dtype}{list(dst.shape)} (fix the env family's observation_spec)"
                )
            dst[...] = src

    def read(self, paths: list[Path] | None = None) -> dict[Path, np.ndarray]:
        """Copies (the segment is rewritten by the next step; rollouts keep what they read)."""
        return {p: self.arrays[p].copy() for p in (paths if paths is not None else self.arrays)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.arrays = {}
        # BufferError: a view is still exported somewhere; the mapping then goes with the process.
        with contextlib.suppress(BufferError):
            self._shm.close()

    def unlink(self) -> None:
        """Remove the segment's name (owner only; idempotent)."""
        self.close()
        if self.owner:
            self.owner = False
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()
