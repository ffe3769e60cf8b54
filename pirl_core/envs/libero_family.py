"""The LIBERO env family (``env.type = "libero"``), registered on import of :mod:`pirl_core.envs`.

Its simulator module, :mod:`pirl_core.envs.libero`, is imported only when one of these callables
runs: it sets ``MUJOCO_GL`` and belongs to LIBERO runs, and the core installs without the
``libero`` extra (toy runs never load MuJoCo or robosuite).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from pirl_core.config import LIBERO_SUITES, EnvConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.registry import EnvFamily, register_env_family
from pirl_core.envs.shm import FieldSpec


def _sim() -> ModuleType:
    from pirl_core.envs import libero

    return libero


def make(env_cfg: EnvConfig, *, slot_offset: int = 0, render_size: int | None = None) -> PirlVectorEnv:
    return _sim().LiberoVectorEnv(env_cfg, slot_offset=slot_offset, render_size=render_size)


def observation_spec(env_cfg: EnvConfig) -> list[FieldSpec]:
    sim = _sim()
    return sim.observation_spec(sim.render_size_for(env_cfg.camera_size))


def install_check() -> None:
    _sim().libero_benchmark()


def video_frame(raw: dict[str, Any], slot: int) -> Any:
    return _sim().video_frame(raw, slot)


LIBERO = register_env_family(
    EnvFamily(
        name="libero",
        suites=LIBERO_SUITES,
        make=make,
        observation_spec=observation_spec,
        action_dim=7,  # pirl_core.envs.libero.ACTION_DIM: xyz, axis-angle, gripper
        task_descriptions=lambda env_cfg: _sim().task_descriptions(env_cfg),
        install_check=install_check,
        default_workers=0,  # one per core: a step is physics plus two camera renders
        instructions_in_obs=True,
        video_frame=video_frame,
        # absolute control: env actions are end-effector targets in metres plus a gripper command
        action_space=lambda env_cfg: "ee_metres" if env_cfg.control_mode == "absolute" else "plain",
        standard_episode_length=lambda env_cfg: _sim().standard_episode_length(env_cfg),
    )
)
