"""Env families, registered by name: what the rest of pirl may know about an env (``env.type``).

Why a registry (LeRobot registers its env configs the same way): the factory, the env workers and
the evaluator used to dispatch on ``env.type`` with ``if``-chains in several modules, so a new env
family meant editing each of them. Now a family is one :class:`EnvFamily` record, registered by
its own module (``pirl_core/envs/toy_family.py``, ``pirl_core/envs/libero_family.py``) when
``pirl_core.envs`` is imported, and every caller asks :func:`env_family` for it.

A family module must stay cheap to import: it names its simulator module lazily (inside the
callables), so a toy run never imports a simulator it does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pirl_core.config import EnvConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.shm import FieldSpec
from pirl_core.registry import Registry

Frame = Any  # an (H, W, 3) uint8 image, or None where the observation has no camera for it


def _installed() -> None:
    """The install check of a family that needs nothing beyond pirl's core."""


@dataclass(frozen=True)
class EnvFamily:
    """Everything family-specific the factory, the env workers and the evaluator need."""

    name: str  # the ``env.type`` value
    suites: Mapping[str, int]  # suite name -> number of tasks (config validation reads the same table)
    make: Callable[..., PirlVectorEnv]
    """``make(env_cfg, *, slot_offset=0, render_size=None)``: the in-process env (what an env worker
    runs); ``slot_offset`` is the worker's first global sub-env, ``render_size`` a camera override."""
    observation_spec: Callable[[EnvConfig], list[FieldSpec]]
    """Per-sub-env raw observation layout, without a simulator: env workers lay out shared memory."""
    action_dim: int  # env action width
    task_descriptions: Callable[[EnvConfig], list[str]]
    """The instruction of each of ``env_cfg.task_ids``, without starting a simulator (the policy's
    tokenizer and task embeddings are built before, or without, an env)."""
    install_check: Callable[[], None] = _installed
    """Raises :class:`ConfigError` (exit 2) with the install line when the simulator is missing;
    called before env workers spawn, so the hint comes instead of a worker's traceback."""
    default_workers: int = 0
    """``env.workers = 0`` means this: 0 = one worker per core the actor may use (capped by
    ``n_envs``); 1 = in-process (envs whose step costs less than a process hop)."""
    instructions_in_obs: bool = False
    """The raw observation carries ``task`` (instruction strings) for a language-conditioned policy."""
    video_frame: Callable[[dict[str, Any], int], Frame] | None = None
    """Sub-env ``slot``'s camera frame of a raw observation batch (evaluation videos); None: the
    family has no cameras (no videos, no ``--render-size``)."""
    action_space: Callable[[EnvConfig], str] = lambda env_cfg: "plain"
    """What an env action means, for the drift probe's distances (:mod:`pirl_core.recipe.drift`):
    ``"ee_metres"`` (end-effector targets in metres, then a gripper command) or ``"plain"``."""
    standard_episode_length: Callable[[EnvConfig], int] | None = None
    """The episode limit of the benchmark's own evaluator for ``env_cfg.suite`` (None: the
    configured ``env.episode_length``)."""


ENV_FAMILIES: Registry[EnvFamily] = Registry("env.type", "env family")
register_env_family = ENV_FAMILIES.register
env_families = ENV_FAMILIES.names
env_family = ENV_FAMILIES.get
