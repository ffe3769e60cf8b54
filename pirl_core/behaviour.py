"""The actor adopts the learner's behaviour-policy settings before it samples.

The learner sends ``checkpoints.identity.PUSHED_FIELDS`` with every parameter push (header key
``behaviour``): σ bounds, SDE noise level, the prior term, the log-prob reductions, and what
decides the episode plan (seed, episodes per update, number of actors, GRPO group size). Applying
them here, not trusting the actor's own flags, is what keeps a resumed learner with a new
``--recipe.sigma_max`` on-policy with actors that were started before it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from pirl_core.checkpoints.identity import PUSHED_FIELDS
from pirl_core.config import RunConfig, apply_override, validate
from pirl_core.errors import ConfigError, TransportError
from pirl_core.recipe.actor_critic import ActorCritic
from pirl_core.recipe.samplers import OdeSampler, make_sampler


def apply_behaviour(cfg: RunConfig, actor_critic: ActorCritic, pushed: Any, actor_id: int) -> RunConfig:
    """The actor's config with the pushed values, and ``actor_critic`` set up to sample with them.

    Returns ``cfg`` itself when nothing changed. Raises TransportError when the push lacks a
    field or carries a value this config rejects, and when ``actor_id`` falls outside the
    learner's ``actor.n_actors``.
    """
    if not isinstance(pushed, dict) or set(pushed) != set(PUSHED_FIELDS):
        raise TransportError(
            f"parameter push carries no valid 'behaviour' settings (got {pushed!r:.120}); start actor and "
            "learner from the same pirl checkout"
        )
    new = copy.deepcopy(cfg)
    try:
        for name, value in pushed.items():
            apply_override(new, name, value)
        validate(new)
    except ConfigError as exc:
        raise TransportError(f"parameter push: behaviour setting rejected: {exc.message}") from exc
    if not 0 <= actor_id < new.actor.n_actors:
        raise TransportError(
            f"this actor's --actor-id={actor_id} is outside the learner's actor.n_actors={new.actor.n_actors}; "
            f"start actors with ids 0..{new.actor.n_actors - 1}"
        )
    if new.recipe != cfg.recipe:
        _resample(actor_critic, new)
    return new if new != cfg else cfg


def _resample(actor_critic: ActorCritic, cfg: RunConfig) -> None:
    """Rebuild the samplers (and the noise head's σ range) from ``cfg.recipe``; weights untouched."""
    recipe = cfg.recipe
    actor_critic.recipe = recipe
    head = actor_critic.noise_head
    if head is not None:
        head.logvar_min = 2.0 * math.log(recipe.sigma_min)
        head.logvar_max = 2.0 * math.log(recipe.sigma_max)
    actor_critic.sampler = make_sampler(recipe, head)
    actor_critic.eval_sampler = OdeSampler(
        recipe.denoise_steps, recipe.logprob_action_reduction, recipe.logprob_step_reduction
    )
