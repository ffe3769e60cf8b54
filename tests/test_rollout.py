"""Chunk-level rollout collection against a scripted env whose episodes end at known steps."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from pirl_core.config import RecipeConfig
from pirl_core.envs.base import PirlVectorEnv, StepResult
from pirl_core.policies.mlp import MLPFlowAdapter
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.rollout import GROUP_TASK_STRIDE, RolloutBatch, collect_rollouts, concat

ACTION_STEPS = 3
MAX_STEPS = 7


class ScriptedEnv(PirlVectorEnv):
    """Reward 1 per step; init state id s terminates (successfully) after s env steps, or never
    when s == 0 (then the collector's time limit ends it). Records every action it receives."""

    action_dim = 2
    max_episode_steps = MAX_STEPS

    def __init__(self, n_envs: int) -> None:
        self.num_envs = n_envs
        self.t = np.zeros(n_envs, dtype=np.int64)
        self.term_at = np.zeros(n_envs, dtype=np.int64)
        self.actions: list[np.ndarray] = []

    def _obs(self) -> dict[str, Any]:
        idx = np.arange(self.num_envs)
        return {"state": np.stack([self.t, idx, self.term_at, np.ones_like(idx)], axis=1).astype(np.float32)}

    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        self.t[:] = 0
        self.term_at[:] = init_state_ids
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        self.actions.append(action.copy())
        self.t += 1
        done = (self.term_at > 0) & (self.t == self.term_at)
        return StepResult(self._obs(), np.ones(self.num_envs), done, done)

    def task_descriptions(self) -> list[str]:
        return [""] * self.num_envs

    def task_ids(self) -> list[int]:
        return [0, 1, 0][: self.num_envs] + [0] * max(0, self.num_envs - 3)


def make_policy(method: str = "flow_sde") -> ActorCritic:
    torch.manual_seed(0)
    adapter = MLPFlowAdapter(obs_dim=4, env_action_dim=2, chunk_size=4, action_steps=ACTION_STEPS)
    ac = build_actor_critic(adapter, dataclasses.replace(RecipeConfig(), method=method, sde_noise_level=0.5))
    assert ac.value_head is not None
    torch.nn.init.normal_(ac.value_head.net[-1].weight, std=0.5)  # non-zero values to bootstrap from
    return ac


def collect(ids: list[int], n_envs: int = 3, seed: int = 0, **kw: Any):
    env = ScriptedEnv(n_envs)
    ac = make_policy()
    batch, stats, timing = collect_rollouts(
        env, ac, ids, torch.Generator().manual_seed(seed), ACTION_STEPS, **kw
    )
    return env, ac, batch, stats, timing


def test_chunk_transitions_rewards_and_episode_ends() -> None:
    # env 0: terminates after 5 steps (inside its 2nd chunk); env 1: never -> time limit at 7
    # (inside its 3rd chunk); env 2: terminates after exactly 3 steps (end of its 1st chunk).
    env, ac, batch, stats, timing = collect([5, 0, 3])
    assert batch.episode_id.tolist() == [0, 0, 1, 1, 1, 2]
    assert batch.chunk_index.tolist() == [0, 1, 0, 1, 2, 0]
    assert batch.reward.tolist() == [3, 2, 3, 3, 1, 3]
    assert batch.done.tolist() == [False, True, False, False, True, True]
    assert batch.terminated.tolist() == [False, True, False, False, False, True]
    assert batch.success.tolist() == [False, True, False, False, False, True]
    assert [(s.ret, s.length, s.success) for s in stats] == [(5.0, 5, True), (7.0, 7, False), (3.0, 3, True)]
    assert [s.init_state_id for s in stats] == [5, 0, 3]
    assert timing["env_steps"] == 15 and timing["chunks"] == 3

    # Observations are the adapter's tensors at each chunk start (state[0] = env step count).
    assert batch.obs["state"][:, 0].tolist() == [0, 3, 0, 3, 6, 0]

    # Only the time-limited end bootstraps, from V(s_final) of the observation after step 7.
    final_state = torch.tensor([[7.0, 1.0, 0.0, 1.0]])
    with torch.no_grad():
        v_final = ac.value({"state": final_state}, torch.Generator())
    assert batch.bootstrap_value[4] == pytest.approx(float(v_final), abs=1e-6)
    assert float(v_final) != 0.0
    assert batch.bootstrap_value[[0, 1, 2, 3, 5]].abs().sum() == 0

    # Group ids: (task, init state); sub-env 1 runs task 1.
    assert batch.group_id.tolist() == [5, 5, GROUP_TASK_STRIDE, GROUP_TASK_STRIDE, GROUP_TASK_STRIDE, 3]


def test_the_env_executes_the_sampled_chunk_and_finished_envs_are_masked() -> None:
    env, _, batch, _, _ = collect([5, 0, 3])
    executed = np.stack(env.actions)  # (env steps, n_envs, 2)
    # env 1's first chunk: the first ACTION_STEPS steps of its x_0, real dims only.
    x0 = batch.chain[2, -1]
    assert np.allclose(executed[:3, 1], x0[:3, :2].numpy())
    # After env 2 finished (step 3) it receives zero actions.
    assert np.all(executed[3:, 2] == 0)
    # Each transition's chain ends at the action that was executed.
    assert torch.equal(batch.chain[:, -1], batch.chain[:, 4])


def test_short_last_wave_and_deterministic_rerun() -> None:
    _, _, a, stats, _ = collect([2, 1, 4, 2, 5], n_envs=3, seed=4)
    assert [s.init_state_id for s in stats] == [2, 1, 4, 2, 5]
    assert a.num_episodes == 5 and sorted(set(a.episode_id.tolist())) == [0, 1, 2, 3, 4]
    _, _, b, _, _ = collect([2, 1, 4, 2, 5], n_envs=3, seed=4)
    for key, value in a.to_tensors().items():
        assert torch.equal(value, b.to_tensors()[key]), key
    _, _, c, _, _ = collect([2, 1, 4, 2, 5], n_envs=3, seed=5)
    assert not torch.equal(a.chain, c.chain)


def test_wire_roundtrip_and_concat() -> None:
    _, _, a, _, _ = collect([5, 0, 3])
    _, _, b, _, _ = collect([2, 2], seed=1)
    wire = {k: v for k, v in load(save(a.to_tensors())).items()}
    back = RolloutBatch.from_tensors(wire)
    assert set(wire) >= {"obs.state", "chain", "sde_step", "logp", "value", "reward", "done", "terminated"}
    for key, value in a.to_tensors().items():
        assert torch.equal(value, back.to_tensors()[key]) and value.dtype == back.to_tensors()[key].dtype
    joined = concat([back, b])
    assert len(joined) == len(a) + len(b)
    assert joined.episode_id.tolist() == [0, 0, 1, 1, 1, 2, 3, 4]
    assert torch.equal(joined.group_id[len(a) :], b.group_id)


def test_deterministic_rollouts_have_no_log_prob() -> None:
    _, _, batch, _, _ = collect([5, 0, 3], deterministic=True)
    assert (batch.logp == 0).all() and (batch.sde_step == -1).all()
