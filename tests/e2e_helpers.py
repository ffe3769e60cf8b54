"""Running the real entry points as subprocesses, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pirl_core.source import REPO_ROOT as ROOT

# Flags on top of ``--profile toy``. The smallest toy run a launch test needs (a job in seconds):
TINY_TOY = [
    "--env.n_envs=4",
    "--env.episode_length=6",
    "--learner.episodes_per_update=4",
    "--recipe.update_epochs=1",
    "--policy.hidden_dim=16",
]
# a toy run whose every update moves every tensor (dense reward, two epochs of two minibatches):
SHAPED_TOY = [
    "--env.suite=point_reach_shaped",
    "--env.n_envs=4",
    "--env.episode_length=6",
    "--learner.episodes_per_update=8",
    "--recipe.update_epochs=2",
    "--recipe.minibatches=2",
    "--policy.hidden_dim=32",
]


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


def run_flags(out: Path | str, *extra: str, profile: str = "toy") -> list[str]:
    """A run's flags: the profile, its output dir and a free learner port, then ``extra``."""
    return ["--profile", profile, f"--output_dir={out}", f"--learner.port={free_port()}", *extra]


def flags_of(overrides: Mapping[str, Any]) -> list[str]:
    """``--key=value`` per config override, each value written as the command line reads it."""
    from pirl_core.quoting import value_text

    return [f"--{key}={value_text(value)}" for key, value in overrides.items()]


def run_module(
    module: str, *args: str, timeout: float = 300, cwd: Path | str = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` to its end (the environment of :func:`child_env`), output
    captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    return spawn([sys.executable, "-m", module, *args], log)


def spawn(argv: list[str], log: Path) -> subprocess.Popen:
    """``argv`` in its own session (a test can signal its whole group), output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        argv,
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


def wait_for_metrics(path: Path, n: int, timeout: float) -> int:
    """Block until the telemetry file ``path`` holds ``n`` metrics records; returns the count."""
    from pirl_core.telemetry import read_records

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = sum(1 for r in read_records(path) if r["kind"] == "metrics")
        if count >= n:
            return count
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} metrics records in {path} after {timeout}s")


def start_long_toy_run(
    tmp_path: Path, updates: int = 2
) -> tuple[Path, list[str], subprocess.Popen, subprocess.Popen]:
    """A toy learner and actor on a 500-update run (output ``tmp_path/run``, logs
    ``tmp_path/{learner,actor}.log``), returned once the learner has logged ``updates`` updates:
    for the tests that stop a run midway. Returns (output dir, the flags both got, learner, actor);
    the flags end with ``--learner.updates=500 --checkpoint.every=1000``."""
    out = tmp_path / "run"
    args = run_flags(out, "--learner.updates=500", "--checkpoint.every=1000")
    learner = start("pirl_core.learner", args, tmp_path / "learner.log")
    actor = start("pirl_core.actor", args, tmp_path / "actor.log")
    wait_for_metrics(out / "telemetry" / "learner.jsonl", updates, timeout=120)
    return out, args, learner, actor
