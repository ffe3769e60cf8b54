"""A real full disk, run by tests/test_storage_faults.py inside ``unshare -rm`` (a private mount
namespace, so the tmpfs mounted here is nobody else's and vanishes with this process).

1. mount a small tmpfs and launch a toy run on it; the learner is parked (PIRL_CKPT_PAUSE_AT) just
   before its second checkpoint, this script then fills the disk to the last byte and only then
   releases it (PIRL_CKPT_RELEASE, a file outside the tmpfs): no race between the fill and a fixed
   pause, however busy the machine;
2. record the launch's exit code and output, and what ``checkpoints/`` holds;
3. delete the filler (the fault is gone) and launch ``--resume``; record the same.

Prints one JSON line: ``{"full": {...}, "resumed": {...}}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e_helpers import TINY_TOY, free_port  # run with PYTHONPATH=<repo root>

FLAGS = ["--profile", "toy", *TINY_TOY, "--checkpoint.every=1", "--learner.updates=3"]


def fill(path: Path) -> None:
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as fh:
        for size in (len(chunk), 4096, 1):
            try:
                while True:
                    fh.write(chunk[:size])
            except OSError:
                continue


def state(run: Path) -> dict:
    root = run / "checkpoints"
    last = root / "last"
    return {
        "entries": sorted(p.name for p in root.iterdir()) if root.is_dir() else [],
        "last": os.readlink(last) if last.is_symlink() else None,
    }


def launch(run: Path, *extra: str, env: dict[str, str], release: Path | None = None) -> dict:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pirl_core.launch",
            *FLAGS,
            f"--output_dir={run}",
            f"--learner.port={free_port()}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "pirl-ckpt-event 2 start" in line:
            fill(run.parent / "filler")
            if release is not None:
                release.touch()
    code = proc.wait(timeout=300)
    return {"code": code, "output": "".join(lines), **state(run)}


def main() -> int:
    base = Path(sys.argv[1])
    disk = base / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    run = disk / "run"
    release = base / "release"  # beside the tmpfs, not on it: writable while the disk is full
    env = dict(
        os.environ,
        PIRL_CKPT_PAUSE_S="120",  # an upper bound: the learner goes on once `release` exists
        PIRL_CKPT_PAUSE_AT="2:start",
        PIRL_CKPT_RELEASE=str(release),
    )
    full = launch(run, env=env, release=release)
    (disk / "filler").unlink()
    resumed = launch(run, "--resume", env=dict(os.environ))
    print(json.dumps({"full": full, "resumed": resumed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
