"""Ctrl-C on either process exits 130 cleanly (the actor of an interrupted learner too); the
learner's interrupt checkpoint is complete and a resume from it finishes the run."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pirl_core.checkpoints.verify import inspect_or_raise
from pirl_core.telemetry import read_records
from tests.e2e_helpers import run_flags, start, start_long_toy_run, wait_all


@pytest.mark.slow
def test_ctrl_c_on_learner_saves_then_exits_130_and_resume_finishes(tmp_path: Path) -> None:
    out, args, learner, actor = start_long_toy_run(tmp_path)
    os.killpg(learner.pid, signal.SIGINT)
    codes = wait_all([learner, actor], timeout=60)
    learner_log = (tmp_path / "learner.log").read_text()
    assert codes == [130, 130], learner_log[-2000:]  # the actor reports the learner's stop, not success
    assert "stopping after the current step" in learner_log
    assert "learner was interrupted at step" in (tmp_path / "actor.log").read_text()

    last = out / "checkpoints" / "last"
    step = int(os.readlink(last))
    saved = [r for r in read_records(out / "telemetry" / "learner.jsonl") if r["kind"] == "metrics"]
    assert step == saved[-1]["update"] >= 2  # the last finished update, not a half-applied one
    inspect_or_raise(last.resolve())  # raises CheckpointUnreadableError when incomplete
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]

    resumed = [*args[:-2], f"--learner.updates={step + 1}", "--checkpoint.every=1000", "--resume"]
    learner = start("pirl_core.learner", resumed, tmp_path / "learner2.log")
    actor = start("pirl_core.actor", resumed[:-1], tmp_path / "actor2.log")
    assert wait_all([learner, actor], timeout=120) == [0, 0], (tmp_path / "learner2.log").read_text()[-2000:]
    assert int(os.readlink(last)) == step + 1


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_on_actor_exits_cleanly(tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "run"
    args = run_flags(out)
    actor = start("pirl_core.actor", args, tmp_path / "actor.log")  # no learner: it waits and retries
    deadline = time.monotonic() + 60
    while "connecting" not in (tmp_path / "actor.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(actor.pid, signum)
    assert wait_all([actor], timeout=30) == [code]
    assert f"interrupted: stopped cleanly (exit {code})" in (tmp_path / "actor.log").read_text()
    assert not (out / "checkpoints").exists()
