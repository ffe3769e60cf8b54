"""End to end: the real learner and actor processes, over gRPC, on the shipped profiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pirl_core.telemetry import read_records
from tests.e2e_helpers import run_flags, run_module, run_pair


def _metrics(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r["kind"] == "metrics"]


def _assert_checkpoint_tree(out: Path, updates: int) -> Path:
    ckpts = out / "checkpoints"
    last = ckpts / "last"
    assert last.is_symlink(), sorted(p.name for p in ckpts.iterdir())
    assert os.readlink(last) == f"{updates:06d}"
    final = last.resolve()
    for name in ("config.json", "model.safetensors", "train_config.json"):
        assert (final / "pretrained_model" / name).is_file(), name
    assert (final / "training_state" / "training_step.json").is_file()
    steps = sorted(p.name for p in ckpts.iterdir() if p.name != "last")
    assert steps == [f"{s:06d}" for s in range(1, updates + 1)]
    return final


@pytest.mark.slow
def test_smoke_profile_learner_first_trains_on_real_rewards(tmp_path: Path) -> None:
    """The default profile as `make smoke` runs it: from the shipped SFT checkpoint its episodes
    succeed, so an update sees non-zero returns (not only the critic's baseline) and moves X-VLA."""
    out = tmp_path / "smoke"
    # one update (of make smoke's two) keeps the suite short; its first version already succeeds
    args = run_flags(out, "--learner.updates=1", profile="smoke")
    codes, learner_log, actor_log = run_pair(args, out, timeout=900)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"

    final = _assert_checkpoint_tree(out, updates=1)
    train_config = json.loads((final / "pretrained_model" / "train_config.json").read_text())
    assert train_config["env"]["suite"] == "libero_object"

    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    policy = XVLAPolicy.from_pretrained(str(final / "pretrained_model"))
    assert policy.config.chunk_size == 16

    # the update is real: it moved the X-VLA weights away from the shipped SFT checkpoint's
    from safetensors.torch import load_file

    from pirl_core.policies.xvla.hub import local_checkpoint_dir

    shipped = load_file(local_checkpoint_dir(train_config["policy"]["pretrained_path"]) / "model.safetensors")
    trained = load_file(final / "pretrained_model" / "model.safetensors")
    assert shipped.keys() == trained.keys()
    assert any(not torch.equal(shipped[k].float(), trained[k]) for k in shipped), "X-VLA did not change"

    learner = _metrics(out / "telemetry" / "learner.jsonl")
    assert [r["update"] for r in learner] == [1]
    for record in learner:
        for key in ("version", "policy_loss", "value_loss", "approx_kl", "clip_frac", "ratio_check"):
            assert key in record, key
        assert record["ratio_check"] < 1e-4
    actor = _metrics(out / "telemetry" / "actor-0.jsonl")
    assert len(actor) == 1
    for record in actor:
        for key in ("episodes", "success_rate", "env_steps_per_s", "inference_ms"):
            assert key in record, key
    # real rewards reach the update: some episode of the run succeeded (reward 1 on that step)
    assert sum(r["success_rate"] * r["episodes"] for r in actor) >= 1
    assert all(r["grad_norm"] > 0 and r["policy_loss"] != 0 for r in learner)
    assert learner_log.strip().splitlines()[-1].startswith("[learner] done updates=1")


@pytest.mark.slow
def test_toy_run_actor_started_first(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    args = run_flags(out, "--learner.updates=3", "--checkpoint.every=2")
    codes, learner_log, actor_log = run_pair(args, out, timeout=300, actor_first=True)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["000002", "000003", "last"]
    assert os.readlink(ckpts / "last") == "000003"
    assert [r["update"] for r in _metrics(out / "telemetry" / "learner.jsonl")] == [1, 2, 3]


@pytest.mark.slow
def test_flow_sde_with_grpo_runs_on_libero(tmp_path: Path) -> None:
    """Method and algorithm are flags; the other pair (flow_noise + PPO) is the default above."""
    out = tmp_path / "sde-grpo"
    args = run_flags(
        out,
        "--recipe.method=flow_sde",
        "--recipe.algorithm=grpo",
        "--learner.updates=1",
        profile="libero_tiny",
    )
    codes, learner_log, actor_log = run_pair(args, out, timeout=600)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    _assert_checkpoint_tree(out, updates=1)
    (record,) = _metrics(out / "telemetry" / "learner.jsonl")
    assert record["ratio_check"] < 1e-4
    assert record["lr_value"] == 0.0  # GRPO trains no critic


@pytest.mark.slow
def test_launcher_runs_learner_and_two_actors_to_completion(tmp_path: Path) -> None:
    """`make smoke`'s runner: the same headless commands, one learner and the profile's actors."""
    out = tmp_path / "two-actors"
    proc = run_module("pirl_core.launch", *run_flags(out, "--learner.updates=2", "--actor.n_actors=2"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "[launch] finished:" in proc.stdout and "actor-1=0" in proc.stdout
    for actor in ("actor-0", "actor-1"):
        records = _metrics(out / "telemetry" / f"{actor}.jsonl")
        assert [r["version"] for r in records] == [0, 1]
        assert all(r["episodes"] == 32 for r in records)  # 64 per update, split over two actors
    assert [r["episodes"] for r in _metrics(out / "telemetry" / "learner.jsonl")] == [64, 128]
