"""Test helpers: a real toy learner on port 0 plus real actor processes, and checkpoint tensors.

Shared by tests/test_transport_e2e.py and tests/test_transport_fuzz.py. The learner binds port 0
and reports the bound port in its ``ready`` telemetry event; actors are started with that port.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from pirl_core.telemetry import read_records, telemetry_path
from tests.e2e_helpers import start

# Small and deterministic: 2 rounds (2 envs x 2 episodes) per version, dense reward.
TOY = [
    "--profile",
    "toy",
    "--env.suite=point_reach_shaped",
    "--env.n_envs=2",
    "--env.episode_length=6",
    "--learner.episodes_per_update=4",
    "--recipe.update_epochs=1",
    "--recipe.minibatches=2",
    "--policy.hidden_dim=32",
    "--checkpoint.every=1",
    "--learner.port=0",
]
WAIT = 90.0


def records(out: Path, source: str = "learner") -> list[dict[str, Any]]:
    return read_records(telemetry_path(out, source))


def wait_for(
    out: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT, source: str = "learner"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(out, source):
            if predicate(record):
                return record
        time.sleep(0.05)
    raise AssertionError(
        f"no {source} telemetry record matched within {timeout}s: {records(out, source)[-5:]}"
    )


def event(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r.get("event") == name and all(r.get(k) == v for k, v in fields.items())


class ToyRun:
    """One learner (port 0) and its actors, each a real process logging to ``out/../<name>.log``."""

    def __init__(self, out: Path, extra: list[str] = ()) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.args = [*TOY, f"--output_dir={out}", *extra]
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0

    def log(self, name: str) -> str:
        return (self.out.parent / f"{self.out.name}-{name}.log").read_text(errors="replace")

    def learner(self, *flags: str, name: str = "learner") -> subprocess.Popen:
        known = len([r for r in records(self.out) if r.get("event") == "ready"])
        proc = start(
            "pirl_core.learner", [*self.args, *flags], self.out.parent / f"{self.out.name}-{name}.log"
        )
        self.procs[name] = proc
        deadline = time.monotonic() + WAIT
        while len(ready := [r for r in records(self.out) if r.get("event") == "ready"]) <= known:
            assert proc.poll() is None, self.log(name)
            assert time.monotonic() < deadline, "learner never became ready"
            time.sleep(0.05)
        self.port = int(ready[-1]["port"])
        return proc

    def actor(self, *flags: str, actor_id: int = 0, name: str | None = None) -> subprocess.Popen:
        name = name or f"actor-{actor_id}"
        args = [*self.args, f"--learner.port={self.port}", f"--actor-id={actor_id}", *flags]
        proc = start("pirl_core.actor", args, self.out.parent / f"{self.out.name}-{name}.log")
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT)

    def wait(self, *names: str, timeout: float = WAIT) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        codes = {}
        for name in names:
            codes[name] = self.procs[name].wait(timeout=max(1.0, deadline - time.monotonic()))
        return codes

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def checkpoint_tensors(out: Path, step: int) -> dict[str, Any]:
    """Every tensor of every safetensors file in checkpoint ``step``, keyed by file and name."""
    root = out / "checkpoints" / f"{step:06d}"
    tensors = {}
    for path in sorted(root.rglob("*.safetensors")):
        for name, tensor in load_file(path).items():
            tensors[f"{path.relative_to(root)}:{name}"] = tensor
    return tensors


def files_under(out: Path) -> list[str]:
    """Relative paths of the run's checkpoint files (telemetry and logs excluded)."""
    return sorted(str(p.relative_to(out)) for p in (out / "checkpoints").rglob("*") if not p.is_dir())
