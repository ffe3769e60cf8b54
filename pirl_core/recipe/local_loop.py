"""Learner and actor in one process, for tests and benchmarks.

The same pieces the two processes use — ``make_env`` / ``make_adapter`` / ``build_actor_critic``,
``runtime.version_rounds`` (episode plan + rollout generator + ``collect_rollouts``) and
``PolicyTrainer.update`` — minus gRPC. Success is measured with
deterministic (ODE) rollouts on a fixed set of held-out initial states, which is what a
fine-tuned policy is deployed with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.factory import make_env, task_descriptions
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.factory import make_adapter
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.recipe.trainer import PolicyTrainer, trainer_for
from pirl_core.rollout import collect_rollouts, concat
from pirl_core.runtime import version_rounds

EVAL_INIT_STATE_BASE = 10_000_000
"""Evaluation initial states: far above any id a training plan reaches, so they are held out."""


@dataclass
class LoopState:
    cfg: RunConfig
    env: PirlVectorEnv
    actor_critic: ActorCritic
    trainer: PolicyTrainer


def build_loop(cfg: RunConfig, adapter: FlowPolicyAdapter | None = None) -> LoopState:
    """Env, actor-critic and trainer for ``cfg``; ``adapter`` replaces the factory's policy
    (benchmarks compare parameterisations with it)."""
    adapter = adapter if adapter is not None else make_adapter(cfg, task_descriptions(cfg))
    actor_critic = build_actor_critic(adapter, cfg.recipe, seed=cfg.seed)
    return LoopState(cfg, make_env(cfg), actor_critic, trainer_for(cfg, actor_critic))


def evaluate(state: LoopState, episodes: int) -> float:
    """Deterministic success rate on the held-out initial states."""
    ids = [EVAL_INIT_STATE_BASE + i for i in range(episodes)]
    gen = torch.Generator().manual_seed(state.cfg.seed)
    _, stats, _ = collect_rollouts(
        state.env, state.actor_critic, ids, gen, state.cfg.policy.action_steps, deterministic=True
    )
    return sum(s.success for s in stats) / len(stats)


def train_in_process(
    cfg: RunConfig,
    updates: int,
    *,
    eval_every: int = 1,
    eval_episodes: int = 64,
    stop_at_success: float | None = None,
    final_eval_episodes: int = 0,
    adapter: FlowPolicyAdapter | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``updates`` collect+update iterations; return one record per evaluation point.

    Record 0 is the untrained policy. Each record: update, eval_success, train_success (of the
    stochastic rollouts that fed the update), wall_s (cumulative, excluding evaluation), and the
    trainer's metrics. ``stop_at_success`` ends early once eval success reaches it;
    ``final_eval_episodes`` > 0 re-measures the final policy on that many held-out episodes
    (``final_eval_success`` in the last record), so a lucky small evaluation cannot pass alone.
    """
    state = build_loop(cfg, adapter)
    history = [{"update": 0, "eval_success": evaluate(state, eval_episodes), "wall_s": 0.0}]
    if on_update:
        on_update(history[-1])
    wall = 0.0
    for version in range(updates):
        started = time.perf_counter()
        batches, stats = [], []
        for batch, round_stats, _ in version_rounds(cfg, state.env, state.actor_critic, 0, version):
            batches.append(batch)
            stats.extend(round_stats)
        metrics = state.trainer.update(concat(batches))
        wall += time.perf_counter() - started
        update = version + 1
        if update % eval_every == 0 or update == updates:
            record = {
                "update": update,
                "eval_success": evaluate(state, eval_episodes),
                "train_success": sum(s.success for s in stats) / len(stats),
                "wall_s": wall,
                **metrics,
            }
            history.append(record)
            if on_update:
                on_update(record)
            if stop_at_success is not None and record["eval_success"] >= stop_at_success:
                break
    if final_eval_episodes > 0:
        history[-1]["final_eval_success"] = evaluate(state, final_eval_episodes)
    return history
