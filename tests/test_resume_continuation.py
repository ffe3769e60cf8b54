"""Exact continuation across processes, with the real learner and actor on the toy profile.

* N updates straight through vs N/2, stop, ``--resume`` (new learner and actor processes), N/2
  more: the final checkpoints hold bitwise-identical policy, head and optimizer tensors, RNG and
  trainer-generator state and counters; the resumed learner continues the step, version, sample and
  episode numbering in its telemetry, and its checkpoints land at the right steps.
* The learner SIGKILLed in the middle of writing a checkpoint: ``last`` still points at the previous
  complete one, ``--resume`` continues from it, and the run still ends bitwise where the
  uninterrupted one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pirl_core.telemetry import read_records
from tests.e2e_helpers import ROOT, SHAPED_TOY, child_env, free_port, run_pair, start, wait_all

pytestmark = pytest.mark.slow  # real learner + actor processes over gRPC

N = 4
FLAGS = ["--profile", "toy", *SHAPED_TOY, "--checkpoint.every=1"]


def _args(out: Path, updates: int, *extra: str) -> list[str]:
    return [
        *FLAGS,
        f"--output_dir={out}",
        f"--learner.port={free_port()}",
        f"--learner.updates={updates}",
        *extra,
    ]


def _run(out: Path, updates: int, *extra: str) -> str:
    codes, learner_log, actor_log = run_pair(_args(out, updates, *extra), out, timeout=240)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    return learner_log


def _tensors(ckpt: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for rel in sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*.safetensors")):
        for key, value in load_file(ckpt / rel).items():
            out[f"{rel}:{key}"] = value
    return out


def _assert_same_final_state(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    assert any(k.startswith("pretrained_model/rl_heads.safetensors:value_head") for k in ta)
    assert any(k.startswith("training_state/policy/optimizer_state.safetensors:state/") for k in ta)
    assert any(k.endswith("rng_state.safetensors:trainer_generator_state") for k in ta)
    different = [k for k in ta if not ta[k].equal(tb[k])]  # type: ignore[attr-defined]
    assert not different, f"tensors differ after resume: {different[:10]}"
    step_a = json.loads((a / "training_state" / "training_step.json").read_text())
    step_b = json.loads((b / "training_state" / "training_step.json").read_text())
    assert step_a["counters"] == step_b["counters"]
    assert (step_a["step"], step_a["policy_version"]) == (step_b["step"], step_b["policy_version"]) == (N, N)


def _metrics(out: Path) -> list[dict]:
    return [r for r in read_records(out / "telemetry" / "learner.jsonl") if r["kind"] == "metrics"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("continuation") / "straight"
    _run(out, N)
    return out


def test_resume_continues_exactly(straight: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    _run(resumed, N // 2)
    log = _run(resumed, N, "--resume")
    assert "resumed" in log

    _assert_same_final_state(straight / "checkpoints" / f"{N:06d}", resumed / "checkpoints" / f"{N:06d}")
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == [
        *(f"{s:06d}" for s in range(1, N + 1)),
        "last",
    ]
    counters = ("update", "version", "samples", "episodes")
    straight_rows = [tuple(r[k] for k in counters) for r in _metrics(straight)]
    resumed_rows = [tuple(r[k] for k in counters) for r in _metrics(resumed)]
    assert resumed_rows == straight_rows
    assert [r["update"] for r in _metrics(resumed)] == list(range(1, N + 1))
    # action_drift: the resumed learner loads the run's probe set and start actions
    # (drift_probe.pt), so its drift against the run's start continues exactly.
    drift = ("action_drift_l2", "action_drift_l2_start", "action_drift_xyz_mm_start")
    assert [[r[k] for k in drift] for r in _metrics(resumed)] == [
        [r[k] for k in drift] for r in _metrics(straight)
    ]
    assert _metrics(straight)[-1]["action_drift_l2_start"] > 0


def test_learner_killed_while_writing_a_checkpoint_resumes_exactly(straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "crashed"
    args = _args(out, N)
    learner_log = out.parent / "crashed-learner.log"
    env = {**child_env(), "PIRL_CKPT_PAUSE_S": "120", "PIRL_CKPT_PAUSE_AT": "3:training_step"}
    with learner_log.open("wb") as handle:
        learner = subprocess.Popen(
            [sys.executable, "-m", "pirl_core.learner", *args],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    actor = start("pirl_core.actor", args, out.parent / "crashed-actor.log")
    try:
        deadline = time.monotonic() + 180
        while "pirl-ckpt-event 3 training_step" not in learner_log.read_text(errors="replace"):
            assert learner.poll() is None, learner_log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "learner never reached checkpoint 3"
            time.sleep(0.1)
        os.kill(learner.pid, signal.SIGKILL)  # parked between training_step.json and the fsync/rename
        learner.wait(timeout=30)
    finally:
        if learner.poll() is None:
            learner.kill()
        actor.kill()
        wait_all([actor], timeout=30)

    root = out / "checkpoints"
    assert os.readlink(root / "last") == "000002"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "000001",
        "000002",
        "last",
    ]
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp-000003-")], (
        "the partial write is hidden"
    )

    log = _run(out, N, "--resume")
    assert "resumed" in log
    assert sorted(p.name for p in root.iterdir()) == [*(f"{s:06d}" for s in range(1, N + 1)), "last"]
    _assert_same_final_state(straight / "checkpoints" / f"{N:06d}", root / f"{N:06d}")


def test_libero_resume_continues_numbering(tmp_path: Path) -> None:
    """The real X-VLA + LIBERO path: one update, stop, --resume to two; numbering and the next
    checkpoint continue where the first process stopped."""
    out = tmp_path / "smoke"
    base = ["--profile", "libero_tiny", f"--output_dir={out}"]
    for updates, extra in ((1, []), (2, ["--resume"])):
        args = [*base, f"--learner.port={free_port()}", f"--learner.updates={updates}", *extra]
        codes, learner_log, actor_log = run_pair(args, out, timeout=600)
        assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000001", "000002", "last"]
    assert os.readlink(root / "last") == "000002"
    record = json.loads((root / "000002" / "training_state" / "training_step.json").read_text())
    assert (record["step"], record["policy_version"]) == (2, 2)
    assert record["counters"]["episodes"] == 2 * 2  # libero_tiny: 2 episodes per update, both processes
    rows = [(r["update"], r["version"], r["episodes"]) for r in _metrics(out)]
    assert rows == [(1, 1, 2), (2, 2, 4)]
    resumed = [r for r in read_records(out / "telemetry" / "learner.jsonl") if r.get("event") == "resumed"]
    assert [(r["step"], r["version"]) for r in resumed] == [(1, 1)]
    assert learner_log.strip().splitlines()[-1].startswith("[learner] done updates=2")
