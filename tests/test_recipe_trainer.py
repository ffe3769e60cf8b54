"""PolicyTrainer on real toy rollouts: metrics, ratio check, reproducibility, GRPO specifics."""

from __future__ import annotations

import math

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.rollout import RolloutBatch, collect_rollouts
from tests.inprocess.local_loop import build_loop

EXPECTED_METRICS = {
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "ratio_check",
    "explained_variance",
    "adv_mean",
    "adv_std",
    "return_mean",
    "return_std",
    "grad_norm",
    "lr_policy",
    "lr_value",
    "lr_noise",
    "update_s",
    "samples_per_s",
}


def toy(method: str, algorithm: str, **extra: object):
    overrides = {"recipe.method": method, "recipe.algorithm": algorithm, "env.n_envs": 16, **extra}
    return build_loop(load_config("toy", overrides))


def rollout(state, ids: list[int], seed: int = 0) -> RolloutBatch:
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, ids, torch.Generator().manual_seed(seed), state.cfg.policy.action_steps
    )
    return batch


@pytest.mark.parametrize(
    ("method", "algorithm"), [("flow_noise", "ppo"), ("flow_sde", "ppo"), ("flow_sde", "grpo")]
)
def test_update_reports_every_metric_and_ratio_one(method: str, algorithm: str) -> None:
    state = toy(method, algorithm, **{"recipe.grpo_filter": False})
    ids = [i // 8 for i in range(32)] if algorithm == "grpo" else list(range(32))
    metrics = state.trainer.update(rollout(state, ids))
    assert metrics["skipped"] == 0.0
    assert set(metrics) >= EXPECTED_METRICS
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["ratio_check"] < 1e-4
    assert metrics["lr_policy"] == state.cfg.recipe.lr
    assert (metrics["lr_noise"] > 0) == (method == "flow_noise")
    assert (metrics["lr_value"] > 0) == (algorithm == "ppo")
    if algorithm == "grpo":
        assert metrics["value_loss"] == 0.0
    # The policy moved: a second update on fresh data no longer reproduces... its own data does.
    second = state.trainer.update(rollout(state, ids, seed=1))
    assert second["ratio_check"] < 1e-4


def test_update_randomness_comes_only_from_the_trainer_generator() -> None:
    params = []
    for _ in range(2):
        state = toy("flow_noise", "ppo")
        batch = rollout(state, list(range(16)))
        torch.manual_seed(12345 + len(params))  # global RNG must not matter
        state.trainer.update(batch)
        params.append(torch.cat([p.detach().flatten() for p in state.actor_critic.parameters()]))
    assert torch.equal(params[0], params[1])
    state = toy("flow_noise", "ppo")
    state.trainer.generator.manual_seed(99)
    state.trainer.update(rollout(state, list(range(16))))
    other = torch.cat([p.detach().flatten() for p in state.actor_critic.parameters()])
    assert not torch.equal(params[0], other)


def _one_group_of_uneven_episodes(batch: RolloutBatch) -> RolloutBatch:
    """The first 17 transitions of a real toy rollout, relabelled as one GRPO group: a success
    in 2 chunks and three failures of 5 chunks each (bookkeeping fields only)."""
    batch = batch.select(torch.arange(17))
    lengths, successes = [2, 5, 5, 5], [True, False, False, False]
    batch.episode_id = torch.cat([torch.full((n,), e) for e, n in enumerate(lengths)])
    batch.group_id = torch.zeros(17, dtype=torch.long)
    batch.success = torch.cat(
        [torch.tensor([False] * (n - 1) + [ok]) for n, ok in zip(lengths, successes, strict=True)]
    )
    batch.reward = batch.success.float()
    return batch


@pytest.mark.parametrize("aggregation", ["transition", "episode"])
def test_loss_aggregation_decides_whether_long_failures_outweigh_short_successes(aggregation: str) -> None:
    state = toy("flow_sde", "grpo", **{"recipe.loss_aggregation": aggregation, "recipe.grpo_filter": True})
    batch = _one_group_of_uneven_episodes(rollout(state, list(range(16))))
    metrics = state.trainer.update(batch)
    assert metrics["skipped"] == 0.0 and metrics["ratio_check"] < 1e-4
    if aggregation == "episode":
        assert metrics["adv_mean"] == pytest.approx(0.0, abs=1e-6)
    else:
        assert metrics["adv_mean"] == pytest.approx((2 * 1.5 + 15 * -0.5) / 17, abs=1e-5)


def test_grpo_filter_can_skip_an_update_without_signal() -> None:
    state = toy("flow_sde", "grpo", **{"recipe.grpo_filter": True})
    batch = rollout(state, [0] * 8)
    batch.success[:] = False  # one group, all failures: filtered out
    batch.reward[:] = 0.0
    before = [p.detach().clone() for p in state.actor_critic.parameters()]
    metrics = state.trainer.update(batch)
    assert metrics["skipped"] == 1.0 and metrics["kept_frac"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, state.actor_critic.parameters(), strict=True))
