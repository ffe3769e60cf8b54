"""``make_env(cfg)`` and ``task_descriptions(cfg)``: the env family named by ``cfg.env.type``
(:func:`pirl_core.envs.registry.env_family`), behind :class:`PirlVectorEnv`.

Simulators are imported by their family only when used, so that toy runs (and their tests) never
load MuJoCo/robosuite, and so that the core installs without them: LIBERO is the ``libero`` extra
(``pip install -e ".[libero]"``).
"""

from __future__ import annotations

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.envs.registry import env_family
from pirl_core.envs.workers import make_vector_env


def make_env(cfg: RunConfig) -> PirlVectorEnv:
    """In-process, or spread over ``env.workers`` processes (``pirl_core.envs.workers``)."""
    env_family(cfg.env.type).install_check()  # the install hint instead of a worker's traceback
    return make_vector_env(cfg.env)


def task_descriptions(cfg: RunConfig) -> list[str]:
    """The instruction of each configured task (``cfg.env.task_ids`` order), without starting a
    simulator: the policy is built (tokenizer, task embeddings) before or without an env."""
    return env_family(cfg.env.type).task_descriptions(cfg.env)
