"""``<output_dir>/.learner.lock``: one learner per output dir, new run or resume alike.

The lock is an OS-level ``flock`` on an open file descriptor, so the kernel releases it when the
learner dies in any way (``kill -9`` included) and no stale-pid guessing is needed. The file holds
``{"pid", "host", "started"}`` only to name the holder in the refusal. A clean exit removes the
file while still holding the lock; whoever locks a file checks afterwards that the path still
names that same file (else it locked a removed one and retries), so two learners can never both
believe they hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from pirl_core.checkpoints.fsutil import read_json_dict
from pirl_core.errors import ConfigError

LOCK_NAME = ".learner.lock"


def lock_path(output_dir: Path | str) -> Path:
    return Path(output_dir) / LOCK_NAME


def read_holder(path: Path) -> dict[str, object]:
    """What the lock file says about its holder ({} while it is being written or unreadable)."""
    return read_json_dict(path)


class OutputDirLock:
    """Held from before the output dir is judged (``prepare_run``) until the learner exits."""

    def __init__(self, output_dir: Path | str) -> None:
        self.path = lock_path(output_dir)
        self._fd: int | None = None
        self._created_dir = False

    def acquire(self) -> OutputDirLock:
        self._created_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._created_dir = False  # the holder created it
                raise self._busy() from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed it between our open and our lock: try the new file
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def _busy(self) -> ConfigError:
        holder = read_holder(self.path)
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        since = f" since {holder['started']}" if "started" in holder else ""
        return ConfigError(
            "output_dir",
            str(self.path.parent),
            "an output dir no other learner is using",
            hint=f"{self.path} is held by {who}{since}: stop that learner, or choose another --output_dir",
        )

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._created_dir:  # a learner refused before writing anything leaves no empty dir
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
