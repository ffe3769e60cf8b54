"""The toy env family (``env.type = "toy"``), registered on import of :mod:`pirl_core.envs`."""

from __future__ import annotations

from pirl_core.config import TOY_SUITES, EnvConfig
from pirl_core.envs import toy
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.registry import EnvFamily, register_env_family


def make(env_cfg: EnvConfig, *, slot_offset: int = 0, render_size: int | None = None) -> PirlVectorEnv:
    if render_size is not None:
        raise ValueError("the toy env has no cameras: render_size must be None")
    return toy.PointReachEnv(env_cfg, slot_offset=slot_offset)


TOY = register_env_family(
    EnvFamily(
        name="toy",
        suites=TOY_SUITES,
        make=make,
        observation_spec=lambda env_cfg: toy.observation_spec(),
        action_dim=toy.ACTION_DIM,
        task_descriptions=lambda env_cfg: [toy.task_description(t) for t in env_cfg.task_ids],
        default_workers=1,  # steps in microseconds: a process hop would cost more than it saves
    )
)
