"""Learner and actor in one process, for tests and benchmarks (not part of the package).

The same pieces the two processes use — ``make_env``, ``actor_critic_for`` (the one builder of
the actor-critic), ``rollout_plan.version_rounds`` (episode plan + rollout generator +
``collect_rollouts``) and ``PolicyTrainer.update`` — minus gRPC. Success is measured with
deterministic (ODE) rollouts on init states held out of training exactly as a run with periodic
evaluation holds them out (pirl_core/init_states.py: the last states of every task), which is
what a fine-tuned policy is deployed with. Ids that merely lie "far above" the training ids are
not held out: envs wrap ids modulo their init-state count (LIBERO: 50 per task).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.factory import make_env
from pirl_core.errors import ConfigError
from pirl_core.init_states import held_out_per_task, held_out_states, split_configured, state_ids
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.recipe.actor_critic import ActorCritic, actor_critic_for
from pirl_core.recipe.trainer import PolicyTrainer, trainer_for
from pirl_core.rollout import collect_rollouts, concat
from pirl_core.rollout_plan import version_rounds


def holding_out(cfg: RunConfig, episodes: int) -> RunConfig:
    """``cfg`` with enough per-task init states held out of training for ``episodes`` evaluation
    episodes: periodic evaluation on (``eval.every``) over the last ``eval.episodes_per_task``
    states of every task, as in a run. ``cfg`` itself is left as it is."""
    if episodes <= 0:
        return cfg
    if split_configured(cfg):
        raise ConfigError(
            "eval.val_init_states",
            cfg.eval.val_init_states,
            "unset in the in-process loop (it holds out the last init states of every task)",
        )
    per_task = math.ceil(episodes / len(cfg.env.task_ids))
    if held_out_per_task(cfg) >= per_task:
        return cfg
    held = copy.deepcopy(cfg)
    held.eval.every = cfg.eval.every or 1
    held.eval.episodes_per_task = per_task
    return held


def eval_ids(cfg: RunConfig, num_init_states: int, episodes: int) -> list[int]:
    """Global ids of ``episodes`` held-out evaluation episodes, state-major (every task in turn);
    refuses more than ``cfg`` holds out of training."""
    n_tasks = len(cfg.env.task_ids)
    per_task = math.ceil(episodes / n_tasks)
    held = held_out_per_task(cfg) if not split_configured(cfg) else 0
    if per_task > held:
        raise ValueError(
            f"{episodes} evaluation episodes need {per_task} held-out init states per task, the loop holds "
            f"out {held}: build_loop(..., eval_episodes={episodes})"
        )
    states = held_out_states(num_init_states, n_tasks, held)[:per_task]
    return state_ids(num_init_states, n_tasks, states)[:episodes]


@dataclass
class LoopState:
    cfg: RunConfig  # the run's config with the evaluation's init states held out of training
    env: PirlVectorEnv
    actor_critic: ActorCritic
    trainer: PolicyTrainer


def build_loop(
    cfg: RunConfig, adapter: FlowPolicyAdapter | None = None, *, eval_episodes: int = 0
) -> LoopState:
    """Env, actor-critic and trainer for ``cfg``; ``adapter`` replaces the factory's policy
    (benchmarks compare parameterisations with it). ``eval_episodes`` > 0 holds out the init
    states :func:`evaluate` runs: train with ``version_rounds(state.cfg, ...)``."""
    actor_critic = actor_critic_for(cfg, adapter)
    return LoopState(
        holding_out(cfg, eval_episodes), make_env(cfg), actor_critic, trainer_for(cfg, actor_critic)
    )


def evaluate(state: LoopState, episodes: int) -> float:
    """Deterministic success rate on the held-out initial states."""
    ids = eval_ids(state.cfg, state.env.num_init_states(), episodes)
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
    state = build_loop(cfg, adapter, eval_episodes=max(eval_episodes, final_eval_episodes))
    history = [{"update": 0, "eval_success": evaluate(state, eval_episodes), "wall_s": 0.0}]
    if on_update:
        on_update(history[-1])
    wall = 0.0
    for version in range(updates):
        started = time.perf_counter()
        batches, stats = [], []
        for batch, round_stats, _ in version_rounds(state.cfg, state.env, state.actor_critic, 0, version):
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
