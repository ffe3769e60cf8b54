"""``make_env(cfg)``: the env family named by ``cfg.env.type``, behind :class:`PirlVectorEnv`.

LIBERO is imported lazily so that toy runs (and their tests) never load MuJoCo/robosuite, and
so that the core installs without it: LIBERO is the ``libero`` extra (``pip install -e ".[libero]"``).
"""

from __future__ import annotations

from types import ModuleType

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv
from pirl_core.errors import ConfigError

LIBERO_INSTALL = 'pip install -e ".[libero]"'
_SIMULATOR_PACKAGES = {"libero", "robosuite", "mujoco"}


def libero_benchmark() -> ModuleType:
    """``libero.libero.benchmark``, or exit 2 with the one line that says how to install it."""
    try:
        from libero.libero import benchmark
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _SIMULATOR_PACKAGES:
            raise
        raise ConfigError(
            "env.type",
            "libero",
            "the LIBERO simulator installed",
            hint=f"it is the `libero` extra: {LIBERO_INSTALL} (make installs it); the toy profile runs without it",
        ) from None
    return benchmark


def make_env(cfg: RunConfig) -> PirlVectorEnv:
    """In-process, or spread over ``env.workers`` processes (``pirl_core.envs.workers``)."""
    from pirl_core.envs.workers import make_vector_env

    if cfg.env.type == "libero":
        libero_benchmark()  # the install hint instead of a traceback (also before spawning workers)
    return make_vector_env(cfg.env)


def task_descriptions(cfg: RunConfig) -> list[str]:
    """The instruction of each configured task (``cfg.env.task_ids`` order), without starting a
    simulator: the policy is built (tokenizer, task embeddings) before or without an env."""
    if cfg.env.type == "toy":
        from pirl_core.envs.toy import task_description

        return [task_description(t) for t in cfg.env.task_ids]
    if cfg.env.type == "libero":
        suite = libero_benchmark().get_benchmark_dict()[cfg.env.suite]()
        return [suite.get_task(t).language for t in cfg.env.task_ids]
    raise ValueError(f"unknown env.type {cfg.env.type!r}")
