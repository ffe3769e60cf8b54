"""Filesystem faults (disk full, read-only, no permission) as one line and exit 8, not a traceback.

Why a module of its own: checkpoints, telemetry, evaluation output, demos and the mismatch report
all write to the output filesystem, and a full disk must read the same wherever it hits: what was
being written (the path), the cause (``No space left on device [ENOSPC]``), what is intact, and how
to continue. Writers that can say more (the checkpoint writer: the space it needs, where ``last``
points) build the message themselves with :func:`storage_error`; every entry point's ``run_main``
converts any other such ``OSError`` with :func:`from_os_error`.

Not every library raises ``OSError``: safetensors reports ``IoError(Os { code: 28, ... })`` in its
own exception type. :func:`fault_errno` reads the errno from either.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from pirl_core.errors import StorageError

FAULT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
)
_RUST_IO = re.compile(r"code: (\d+)")


def fault_errno(exc: BaseException) -> int | None:
    """The errno of a filesystem fault this module handles (None for anything else)."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None and type(exc).__name__ == "SafetensorError":
        match = _RUST_IO.search(str(exc))
        code = int(match.group(1)) if match else None
    return code if code in FAULT_ERRNOS else None


def describe(code: int) -> str:
    """``No space left on device [ENOSPC]``."""
    return f"{os.strerror(code)} [{errno.errorcode.get(code, code)}]"


def free_mb(path: Path | str) -> float | None:
    """Free space (MB) on the filesystem holding ``path`` (its nearest existing ancestor)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free / 1e6
    except OSError:
        return None


def advice(code: int) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space there (or choose another --output_dir)"
    if code == errno.EROFS:
        return "the filesystem is read-only: remount it read-write or choose another --output_dir"
    if code in (errno.EACCES, errno.EPERM):
        return "fix the directory's permissions or choose another --output_dir"
    return "check the disk"


def storage_error(what: str, path: Path | str, exc: BaseException, then: str = "") -> StorageError:
    """``cannot write <what> <path>: <cause>; <intact/how to continue>`` as exit 8."""
    code = fault_errno(exc)
    assert code is not None, "storage_error() is for filesystem faults only"
    where = getattr(exc, "filename", None) or path
    message = f"cannot write {what} {where}: {describe(code)}"
    return StorageError(f"{message}; {then or advice(code)}")


def from_os_error(exc: BaseException, what: str = "to") -> StorageError | None:
    """A filesystem fault raised anywhere, as exit 8 naming the file (None: not such a fault)."""
    code = fault_errno(exc)
    if code is None:
        return None
    where = getattr(exc, "filename", None) or "the output dir"
    return StorageError(f"cannot write {what} {where}: {describe(code)}; {advice(code)}")


def write_text_atomic(path: Path, text: str, what: str) -> None:
    """Write ``path`` through a temp file and a rename: a reader sees the old file or the whole new
    one, and a fault leaves no temp behind (exit 8 naming the file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if fault_errno(exc) is None:
            raise
        raise storage_error(what, path, exc) from exc
