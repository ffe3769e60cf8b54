"""Learner and actors as real processes (toy profile, learner on port 0): the handshake, the
behaviour push after a resume, a restarted actor rejoining exactly, and a lost actor stopping
the run cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pirl_core.errors import ExitCode
from tests.transport_run import ToyRun, checkpoint_tensors, event, records, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def runs():
    made: list[ToyRun] = []

    def make(out: Path, *extra: str) -> ToyRun:
        run = ToyRun(out, list(extra))
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


def test_mismatched_actor_exits_5_naming_the_field_and_the_learner_keeps_serving(
    tmp_path: Path, runs
) -> None:
    """Before: the learner died with a raw IndexError (exit 1) and the actor waited 300 s."""
    run = runs(tmp_path / "run", "--learner.updates=2", "--recipe.denoise_steps=8")
    run.learner()
    run.actor("--recipe.denoise_steps=4", name="wrong")
    assert run.wait("wrong")["wrong"] == ExitCode.TRANSPORT
    first = run.log("wrong").strip().splitlines()[-1]
    assert first.startswith("error: ") and "recipe.denoise_steps: learner 8, actor 4" in first
    run.actor()  # same flags as the learner
    assert run.wait("learner", "actor-0") == {"learner": 0, "actor-0": 0}


def test_resumed_learner_pushes_new_sigma_to_the_running_actor(tmp_path: Path, runs) -> None:
    """Before: after `--resume --recipe.sigma_max=0.5` the old actor kept the old σ range and the
    ratio check jumped (0.81 -> 2.19) while everything exited 0."""
    out = tmp_path / "run"
    run = runs(out, "--learner.updates=60")
    run.learner()
    run.actor()
    wait_for(out, event("checkpoint"))
    run.kill("learner")  # kill -9: no finish(), the actor keeps waiting for a learner
    # Where the resume starts is what `last` says once the learner is dead: the killed learner may
    # have saved (or logged the metrics of) a later update after the event seen above.
    step = int((out / "checkpoints" / "last").resolve().name)
    resume = ["--resume", f"--learner.updates={step + 3}", "--recipe.sigma_max=0.5"]
    run.learner(*resume, f"--learner.port={run.port}", name="resumed")  # where the actor looks
    assert run.wait("resumed", "actor-0") == {"resumed": 0, "actor-0": 0}, run.log("resumed")
    learner_records = records(out)
    start = max(i for i, r in enumerate(learner_records) if r.get("event") == "run")  # the resumed one's
    mine = learner_records[start:]
    assert [r["step"] for r in mine if r.get("event") == "resumed"] == [step]
    after = [r for r in mine if r["kind"] == "metrics"]
    assert [r["step"] for r in after] == [step + 1, step + 2, step + 3]
    assert all(r["ratio_check"] < 1e-3 for r in after), [r["ratio_check"] for r in after]
    pushed = [r for r in records(out, "actor-0") if r.get("event") == "behaviour"]
    assert [r["changed"].get("recipe.sigma_max") for r in pushed] == [0.5], pushed


def test_restarted_actor_rejoins_and_the_run_is_exactly_the_clean_one(
    tmp_path: Path, runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = runs(tmp_path / "clean", "--learner.updates=4")
    clean.learner()
    clean.actor()
    assert clean.wait("learner", "actor-0") == {"learner": 0, "actor-0": 0}

    out = tmp_path / "rejoin"
    run = runs(out, "--learner.updates=4")
    # The kill lands wherever the learner is after checkpoint 1 (a toy update takes ~0.1 s), but
    # never after its last gather: it is parked before checkpoint 3, before it publishes version 3,
    # until the new actor is started. Before, a late kill (a busy machine) found the run finished
    # and the new actor waited for a learner that was gone.
    release = tmp_path / "release"
    monkeypatch.setenv("PIRL_CKPT_PAUSE_S", "120")
    monkeypatch.setenv("PIRL_CKPT_PAUSE_AT", "3:start")
    monkeypatch.setenv("PIRL_CKPT_RELEASE", str(release))
    run.learner()
    run.actor()
    wait_for(out, event("checkpoint"), timeout=60)
    run.kill("actor-0")
    run.actor(name="actor-0-again")  # same --actor-id
    release.touch()  # update 4 still needs version 3's rollouts: only the new actor can send them
    assert run.wait("learner", "actor-0-again") == {"learner": 0, "actor-0-again": 0}, run.log("learner")
    expected, got = checkpoint_tensors(clean.out, 4), checkpoint_tensors(out, 4)
    assert expected.keys() == got.keys() and expected
    assert all(torch.equal(expected[k], got[k]) for k in expected), [
        k for k in expected if not torch.equal(expected[k], got[k])
    ]
    last = [r for r in records(out) if r["kind"] == "metrics"][-1]
    assert last["samples"] == [r for r in records(clean.out) if r["kind"] == "metrics"][-1]["samples"]


def test_lost_actor_stops_the_learner_naming_it_and_keeps_the_last_update(tmp_path: Path, runs) -> None:
    out = tmp_path / "run"
    run = runs(out, "--learner.updates=50", "--actor.n_actors=2", "--learner.actor_timeout_s=10")
    run.learner("--checkpoint.every=1000")  # the stop must save the last completed update itself
    run.actor(actor_id=0)
    run.actor(actor_id=1)
    wait_for(out, lambda r: r["kind"] == "metrics" and r["step"] >= 2)
    run.kill("actor-1")
    assert run.wait("learner")["learner"] == ExitCode.TRANSPORT
    line = next(ln for ln in run.log("learner").splitlines() if ln.startswith("error: "))
    assert "actor 1 sent nothing" in line and "--actor-id=1" in line and "--resume" in line
    lost = wait_for(out, event("actor_lost"))
    assert lost["actor_ids"] == [1] and lost["connected_actors"] == ["0"] and lost["waited_s"] >= 10
    completed = max(r["step"] for r in records(out) if r["kind"] == "metrics")
    assert (out / "checkpoints" / "last").resolve().name == f"{completed:06d}"
    assert f"update {completed} is saved" in line
