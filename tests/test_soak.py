"""Issue 20's soak: a toy run with two actors while a third process keeps connecting and
disconnecting (an actor of another run, an observer of this one, raw garbage) and a second learner
tries to start on the same port. The run must end with exit 0 and a final checkpoint whose tensors
are bitwise those of an undisturbed run with the same flags.

Sized for CI (2 busy cores, both runs side by side, 35 s measured): 240 updates of a tiny toy
configuration; the interference starts with the learner's ready line and lasts the whole run (a
probe every 0.7 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pirl_core.errors import ExitCode
from tests.e2e_helpers import ROOT, child_env, free_port

UPDATES = 240
FLAGS = [
    "--profile",
    "toy",
    "--env.n_envs=2",
    "--env.episode_length=6",
    "--learner.episodes_per_update=2",
    "--recipe.update_epochs=1",
    "--recipe.minibatches=1",
    "--policy.hidden_dim=16",
    "--actor.n_actors=2",
    f"--learner.updates={UPDATES}",
    f"--checkpoint.every={UPDATES // 2}",
    f"--telemetry.log_every={UPDATES}",
]


def _launch(out: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pirl_core.launch", *FLAGS, f"--output_dir={out}", f"--learner.port={port}"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _safetensors(path: Path) -> tuple[dict, bytes]:
    """(header, data bytes) of a safetensors file. The header is compared as JSON: safetensors
    writes its ``__metadata__`` map in the order of a Rust HashMap, which differs per process; the
    data section holds every tensor's bytes and is compared bitwise."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _tensors(checkpoint: Path) -> dict[str, object]:
    """Every tensor file of a checkpoint (weights, heads, optimizer state, RNG) and the optimizer
    hyperparameters; training_step.json differs by its timestamp only and is left out."""
    found: dict[str, object] = {}
    for path in sorted(checkpoint.rglob("*")):
        name = str(path.relative_to(checkpoint))
        if path.suffix == ".safetensors":
            found[name] = _safetensors(path)
        elif path.name == "optimizer_param_groups.json":
            found[name] = path.read_bytes()
    return found


@pytest.mark.slow
def test_soak_two_actors_with_interference_matches_a_clean_run(tmp_path: Path) -> None:
    port = free_port()
    clean = _launch(tmp_path / "clean", free_port())  # the reference, undisturbed, at the same time
    soaked = _launch(tmp_path / "soaked", port)
    prober = rival = None
    lines: list[str] = []
    try:
        assert soaked.stdout is not None
        for line in soaked.stdout:
            lines.append(line)
            if prober is None and "[learner] ready" in line:
                prober = subprocess.Popen(
                    [sys.executable, str(ROOT / "tests" / "soak_prober.py"), str(port),
                     str(tmp_path / "soaked"), str(tmp_path / "other"), "0.7"],
                    cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
                rival = subprocess.Popen(
                    [sys.executable, "-m", "pirl_core.learner", *FLAGS, f"--output_dir={tmp_path / 'rival'}",
                     f"--learner.port={port}"],
                    cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )  # fmt: skip
        code = soaked.wait(timeout=300)
        clean_out = clean.communicate(timeout=300)[0]
    finally:
        for proc in (prober, rival, soaked, clean):
            if proc is not None and proc.poll() is None:
                proc.kill()
    output = "".join(lines)
    assert code == 0, output[-4000:]
    assert f"[learner] done updates={UPDATES}" in output
    assert prober is not None and rival is not None
    rival_out = rival.communicate(timeout=60)[0]
    assert rival.returncode == ExitCode.TRANSPORT and "learner cannot listen on" in rival_out, rival_out
    probes = prober.communicate(timeout=30)[0].splitlines()
    assert any(p.endswith("stranger refused") for p in probes), probes
    assert any(" observer version " in p for p in probes), probes
    assert any(p.endswith("garbage closed") for p in probes), probes

    assert clean.returncode == 0, clean_out[-4000:]
    final = f"checkpoints/{UPDATES:06d}"
    got, want = _tensors(tmp_path / "soaked" / final), _tensors(tmp_path / "clean" / final)
    assert sorted(got) == sorted(want) and len(got) >= 5
    assert [name for name in want if got[name] != want[name]] == [], "bitwise equal to the clean run"
