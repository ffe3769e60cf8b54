"""What one actor collects for one policy version, derived rather than drawn.

The learner and every actor compute the same plan from (config, actor id, version): which
initial states each actor runs (:func:`episode_plan`, held-out evaluation states removed by
:func:`pirl_core.init_states.training_plan`) and the sampling noise of each round
(:func:`rollout_generator`). Deriving them — rather than drawing from a process-global RNG — is
what makes a resumed run reproduce exactly the rollouts the uninterrupted run would have
collected. :func:`version_rounds` runs the plan: the actor ships each round as it comes, the
in-process loop (tests/inprocess/local_loop.py) concatenates them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.init_states import training_plan
from pirl_core.recipe.actor_critic import ActorCritic
from pirl_core.rollout import EpisodeStats, Progress, RolloutBatch, collect_rollouts
from pirl_core.seeding import derived_seed


def rollout_generator(cfg: RunConfig, actor_id: int, version: int, round_index: int) -> torch.Generator:
    """The only source of sampling noise for one collection round of one actor."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derived_seed(cfg.seed, "rollout", actor_id, version, round_index))
    return gen


def episodes_per_actor(cfg: RunConfig) -> int:
    return math.ceil(cfg.learner.episodes_per_update / cfg.actor.n_actors)


def episode_plan(cfg: RunConfig, actor_id: int, version: int) -> list[int]:
    """Initial-state ids this actor runs for one policy version.

    GRPO needs every group (episodes sharing an initial state) inside one update, so ids
    repeat ``grpo_group_size`` times consecutively; PPO uses distinct ids.
    """
    share = episodes_per_actor(cfg)
    block = version * cfg.actor.n_actors + actor_id
    if cfg.recipe.algorithm == "grpo":
        # Interleaved (g0, g1, ..., g0, g1, ...) so that env slot k keeps meeting the same
        # group, hence the same task: switching a LIBERO slot to another task rebuilds its sim.
        size = cfg.recipe.grpo_group_size
        groups = max(1, share // size)
        return [block * groups + i % groups for i in range(groups * size)]
    return [block * share + i for i in range(share)]


Round = tuple[RolloutBatch, list[EpisodeStats], dict[str, float]]
"""One round's ``collect_rollouts`` result: (batch, episode stats, timing)."""


def version_rounds(
    cfg: RunConfig,
    env: PirlVectorEnv,
    actor_critic: ActorCritic,
    actor_id: int,
    version: int,
    on_progress: Callable[[Progress], None] | None = None,
) -> Iterator[Round]:
    """This actor's episodes for one policy version, ``env.num_envs`` at a time.

    Yields ``collect_rollouts``'s ``(batch, episode_stats, timing)`` per round. The actor ships
    each round as it comes; the in-process loop concatenates them. One function for both, so the
    tests and benchmarks that use the in-process loop see exactly the actor's rollouts.
    ``on_progress`` sees the whole version's :class:`~pirl_core.rollout.Progress` after every
    chunk: episodes of earlier rounds counted, ``elapsed_s`` since the first round began (the
    sends between rounds included).
    """
    # evaluation's init states (validation and test) are held out of training (pirl_core/init_states.py)
    plan = training_plan(cfg, episode_plan(cfg, actor_id, version), env.num_init_states())
    n_envs = env.num_envs
    started = time.perf_counter()
    steps_before = 0
    for round_index, first in enumerate(range(0, len(plan), n_envs)):
        generator = rollout_generator(cfg, actor_id, version, round_index)
        report = None
        if on_progress is not None:

            def report(p: Progress, first: int = first, steps_before: int = steps_before) -> None:
                on_progress(
                    Progress(
                        episodes_done=first + p.episodes_done,
                        episodes_planned=len(plan),
                        env_steps=steps_before + p.env_steps,
                        elapsed_s=time.perf_counter() - started,
                        running_steps=p.running_steps,
                    )
                )

        # no_grad around the collection only: a generator suspended inside it would leave grad
        # mode off in its caller between rounds (the in-process loop's update would not learn)
        with torch.no_grad():
            result = collect_rollouts(
                env,
                actor_critic,
                plan[first : first + n_envs],
                generator,
                cfg.policy.action_steps,
                on_progress=report,
            )
        steps_before += int(result[2].get("env_steps", 0))
        yield result
