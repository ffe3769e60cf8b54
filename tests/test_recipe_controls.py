"""Lift controls and schedules: the filtered-BC control (``recipe.advantage_mode``)."""

from __future__ import annotations

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.recipe.advantages import success_advantages
from pirl_core.rollout import collect_rollouts
from tests.inprocess.local_loop import build_loop, train_in_process

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_success_only_advantages_are_one_on_successful_episodes_only() -> None:
    episode_id = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    success = torch.tensor([0, 0, 1, 0, 0, 1, 0, 0], dtype=torch.bool)  # success in the last chunk
    assert success_advantages(episode_id, success).tolist() == [1, 1, 1, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_success_only_mode_feeds_the_trainer_unnormalised_0_1_advantages(algorithm: str) -> None:
    state = build_loop(
        load_config("toy", {"recipe.algorithm": algorithm, "recipe.advantage_mode": "success_only"})
    )
    ids = [i // 8 for i in range(32)]
    batch, stats, _ = collect_rollouts(
        state.env, state.actor_critic, ids, torch.Generator().manual_seed(0), state.cfg.policy.action_steps
    )
    adv, _, keep = state.trainer.advantages(batch)
    assert keep.all()  # no group filter: failures stay in the mean with advantage 0
    assert adv.tolist() == success_advantages(batch.episode_id, batch.success).tolist()
    assert 0 < sum(s.success for s in stats) < len(stats)
    metrics = state.trainer.update(batch)
    assert metrics["ratio_check"] < 1e-4 and metrics["skipped"] == 0.0


def test_filtered_bc_control_raises_toy_success() -> None:
    """The control of issue 19: advantages that are only the successes, through the same PPO
    code, must raise deterministic success (here 0.09 -> ~0.3-0.5 in 9 updates, seconds)."""
    cfg = load_config("toy", {"recipe.method": "flow_sde", "recipe.advantage_mode": "success_only"})
    history = train_in_process(cfg, 9, eval_every=9, eval_episodes=128)
    start, end = history[0]["eval_success"], history[-1]["eval_success"]
    assert end >= start + 0.15, (start, end)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_critic_warmup_trains_the_critic_only_and_leaves_the_actor_bitwise_unchanged() -> None:
    cfg = load_config(
        "toy", {"recipe.critic_warmup_updates": 2, "env.n_envs": 16, "recipe.method": "flow_noise"}
    )
    state = build_loop(cfg)
    ac = state.actor_critic
    policy0, noise0, value0 = _params(ac.adapter), _params(ac.noise_head), _params(ac.value_head)
    for update in range(2):
        batch, _, _ = collect_rollouts(
            state.env, ac, list(range(16)), torch.Generator().manual_seed(update), cfg.policy.action_steps
        )
        metrics = state.trainer.update(batch, update_index=update)
        assert metrics["critic_warmup"] == 1.0 and metrics["minibatch_steps"] > 0
        assert metrics["approx_kl"] < 1e-10 and metrics["action_drift_l2_start"] == 0.0
    assert all(torch.equal(v, policy0[k]) for k, v in _params(ac.adapter).items())
    assert all(torch.equal(v, noise0[k]) for k, v in _params(ac.noise_head).items())
    assert any(not torch.equal(v, value0[k]) for k, v in _params(ac.value_head).items())
    # the third update (update index 2, e.g. right after a resume at step 2) trains the actor
    batch, _, _ = collect_rollouts(
        state.env, ac, list(range(16)), torch.Generator().manual_seed(2), cfg.policy.action_steps
    )
    metrics = state.trainer.update(batch, update_index=2)
    assert metrics["critic_warmup"] == 0.0
    assert any(not torch.equal(v, policy0[k]) for k, v in _params(ac.adapter).items())


def test_critic_warmup_needs_a_critic() -> None:
    from pirl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="recipe.critic_warmup_updates"):
        load_config("toy", {"recipe.algorithm": "grpo", "recipe.critic_warmup_updates": 2})
    with pytest.raises(ConfigError, match="recipe.grpo_filter_range"):
        load_config("toy", {"recipe.grpo_filter_range": [0.9, 0.1]})
