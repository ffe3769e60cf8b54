"""Periodic evaluation during training: actor 0, between two policy versions.

Every ``eval.every`` versions (version 0 included: the untrained policy's figure), actor 0 runs
``eval.episodes_per_task`` deterministic (ODE) episodes per configured task on the held-out init
states (pirl_core/init_states.py) with its own env, *before* collecting that version's training
episodes, and writes one ``kind=eval`` telemetry record (``step`` = version). The learner reads
it from ``telemetry/actor-0.jsonl`` (pirl_core/eval/best.py). Only actor 0 evaluates: the
other actors keep collecting, and one file holds the whole result. The same init states and the
same sampling seed every time, so versions are compared on identical episodes. Episodes run with
the training env's ``env.episode_length``; ``python -m pirl_core.eval`` uses the suite's standard
limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.eval.results import summarize, telemetry_fields
from pirl_core.eval.runner import run_episodes
from pirl_core.init_states import state_ids, validation_states
from pirl_core.telemetry import Telemetry

EVAL_HEADLINE = ("success_rate", "episodes", "eval_s")


def due(cfg: RunConfig, actor_id: int, version: int) -> bool:
    return actor_id == 0 and cfg.eval.every > 0 and version % cfg.eval.every == 0


def periodic_ids(cfg: RunConfig, env: PirlVectorEnv) -> list[int]:
    n_tasks = len(cfg.env.task_ids)
    n_init = env.num_init_states()
    return state_ids(n_init, n_tasks, validation_states(cfg, n_init))


def evaluate_version(
    cfg: RunConfig,
    env: PirlVectorEnv,
    actor_critic,
    version: int,
    telemetry: Telemetry,
    heartbeat: Callable[[], object] | None = None,
) -> None:
    """``heartbeat`` runs before the evaluation and after every wave of ``env.num_envs`` episodes:
    the learner counts an actor silent for ``learner.actor_timeout_s`` as lost, and an evaluation
    sends no rollouts (measured: 30 LIBERO episodes took 545 s of a 600 s timeout)."""
    started = time.monotonic()
    if heartbeat is not None:
        heartbeat()
    episodes = run_episodes(
        env,
        actor_critic,
        periodic_ids(cfg, env),
        len(cfg.env.task_ids),
        cfg.policy.action_steps,
        seed=cfg.seed,
        deterministic=True,
        on_wave=(lambda _wave: heartbeat()) if heartbeat is not None else None,
    )
    tasks = summarize(episodes, {})
    fields = telemetry_fields(tasks, episodes)
    fields.update(version=version, eval_s=time.monotonic() - started, init_states="held-out", sampling="ode")
    telemetry.evaluation(version, headline=EVAL_HEADLINE, **fields)
