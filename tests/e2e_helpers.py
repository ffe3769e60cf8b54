"""Running the real entry points as subprocesses, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(),
        start_new_session=True,
    )


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


def run_pair(
    args: list[str], out: Path, timeout: float, actor_first: bool = False
) -> tuple[list[int], str, str]:
    """Learner and one actor with the same flags; returns exit codes and both logs."""
    learner_log, actor_log = out.parent / f"{out.name}-learner.log", out.parent / f"{out.name}-actor.log"
    if actor_first:
        actor = start("pirl_core.actor", args, actor_log)
        time.sleep(2.0)
        learner = start("pirl_core.learner", args, learner_log)
    else:
        learner = start("pirl_core.learner", args, learner_log)
        actor = start("pirl_core.actor", args, actor_log)
    codes = wait_all([learner, actor], timeout)
    return codes, learner_log.read_text(errors="replace"), actor_log.read_text(errors="replace")
