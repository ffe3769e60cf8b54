"""What the learner and the actor must agree on, in one place.

Both processes build the same actor-critic from the same config, move parameters as flat
tensor dicts, and derive rollout randomness and initial states from (seed, actor id, policy
version). Deriving them — rather than drawing from a process-global RNG — is what makes a
resumed run reproduce exactly the rollouts the uninterrupted run would have collected.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from pirl_core.config import RunConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def limit_threads() -> None:
    """One torch thread per process unless the user says otherwise: learner and actor share
    the machine, and oversubscribed BLAS threads make both slower."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // 2)))


def derived_seed(*parts: int | str) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


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


def version_rounds(cfg: RunConfig, env, actor_critic, actor_id: int, version: int) -> Iterator[tuple]:
    """This actor's episodes for one policy version, ``env.num_envs`` at a time.

    Yields ``collect_rollouts``'s ``(batch, episode_stats, timing)`` per round. The actor ships
    each round as it comes; the in-process loop concatenates them. One function for both, so the
    tests and benchmarks that use the in-process loop see exactly the actor's rollouts.
    """
    from pirl_core.rollout import collect_rollouts

    plan = episode_plan(cfg, actor_id, version)
    n_envs = env.num_envs
    for round_index, first in enumerate(range(0, len(plan), n_envs)):
        generator = rollout_generator(cfg, actor_id, version, round_index)
        with torch.no_grad():  # only around the collection: the caller's code between rounds keeps its mode
            result = collect_rollouts(
                env, actor_critic, plan[first : first + n_envs], generator, cfg.policy.action_steps
            )
        yield result


def parameters_to_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """Flat, contiguous CPU copies for the wire (safetensors refuses shared or strided storage)."""
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in module.state_dict().items()}


def load_parameters(module: torch.nn.Module, tensors: dict[str, Tensor]) -> None:
    from pirl_core.errors import TransportError

    fix = "start learner and actor with the same --profile and overrides"
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise TransportError(f"parameter push does not fit this actor's policy ({first}); {fix}") from exc
    if missing or unexpected:
        raise TransportError(
            f"parameter push does not match this actor's policy (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); {fix}"
        )
