"""Durability primitives: fsync, atomic rename and symlink switch, crash-test pause hook.

Why: a checkpoint is only trustworthy if a SIGKILL or power loss at any instant leaves either the
old state or the new one. The writer therefore builds a checkpoint in a hidden sibling directory,
fsyncs every file and directory in it, renames it into place (atomic on POSIX within one file
system), fsyncs the parent, and only then points ``last`` at it by renaming a fresh symlink over
the old one (``os.replace`` is atomic, so ``last`` is never missing or half-written).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

PAUSE_ENV = "PIRL_CKPT_PAUSE_S"
"""Crash-test hook: seconds to sleep at each checkpoint-writing event (after each file, after the
fsync, the rename, the ``last`` switch and each retention step). When set, every event is also
announced on stderr as ``pirl-ckpt-event <step> <name>`` so a test can SIGKILL the writer at a known
point. Unset (the default) costs nothing."""
PAUSE_AT_ENV = "PIRL_CKPT_PAUSE_AT"
"""Optional, with PIRL_CKPT_PAUSE_S: comma-separated events, ``name`` or ``step:name`` (e.g.
``3:training_step``); sleep only at those (every event is still announced). Lets a test park the
writer at exactly one point without slowing the rest."""
RELEASE_ENV = "PIRL_CKPT_RELEASE"
"""Optional, with PIRL_CKPT_PAUSE_S: a file path; a pause ends as soon as that file exists
(PIRL_CKPT_PAUSE_S stays the upper bound). Lets a test act on the parked writer (fill its disk, ...)
and then let it go on: a handshake, where a fixed sleep races the test on a busy machine."""


def pause_point(step: int, name: str) -> None:
    raw = os.environ.get(PAUSE_ENV)
    if not raw:
        return
    print(f"pirl-ckpt-event {step} {name}", file=sys.stderr, flush=True)
    only = os.environ.get(PAUSE_AT_ENV)
    if only and not {name, f"{step}:{name}"} & set(only.split(",")):
        return
    release = os.environ.get(RELEASE_ENV)
    if not release:
        time.sleep(float(raw))
        return
    deadline = time.monotonic() + float(raw)
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)


def fsync_path(path: Path) -> None:
    """fsync one file or directory (flushes its data and metadata whoever wrote it)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up, so the tree's entries are durable."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def write_bytes_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def switch_symlink(
    link: Path, target_name: str, tmp_name: str, before_replace: Callable[[], None] | None = None
) -> None:
    """Point ``link`` at ``target_name`` (relative) atomically: new link under a temporary name,
    then ``os.replace`` over the old one. Readers see the old target or the new one, never none.
    ``before_replace`` runs in between (the crash tests park the writer there)."""
    tmp = link.parent / tmp_name
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(target_name, tmp)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, link)
    except BaseException:
        if tmp.is_symlink():  # a failed switch (disk full, read-only) leaves no debris; link is intact
            tmp.unlink()
        raise
    fsync_path(link.parent)


def remove_tree(path: Path) -> None:
    """Remove a file, link or directory tree if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def retire(path: Path, hidden_name: str) -> Path:
    """First half of deleting a checkpoint: rename it to a hidden name (atomic), so that no
    half-deleted copy is ever visible under its real name. A kill before the removal leaves only
    hidden debris, which the next start cleans."""
    hidden = path.parent / hidden_name
    os.rename(path, hidden)
    fsync_path(path.parent)
    return hidden


def other_process_alive(pid: int) -> bool:
    """Is ``pid`` a live process other than this one? (Our own leftovers are from an earlier,
    failed attempt in this process and may go.)"""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_size
            except OSError:
                continue
    return total


def read_json_dict(path: Path) -> dict:
    """A JSON object file's contents, or {} while it is missing, being written, unreadable or not
    an object: for files that describe something (a lock's holder, a checkpoint's configs) and
    whose absence only means "unknown"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
