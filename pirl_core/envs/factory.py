"""``make_env(cfg)``: the env family named by ``cfg.env.type``, behind :class:`PirlVectorEnv`.

LIBERO is imported lazily so that toy runs (and their tests) never load MuJoCo/robosuite.
"""

from __future__ import annotations

from pirl_core.config import RunConfig
from pirl_core.envs.base import PirlVectorEnv


def make_env(cfg: RunConfig) -> PirlVectorEnv:
    """In-process, or spread over ``env.workers`` processes (``pirl_core.envs.workers``)."""
    from pirl_core.envs.workers import make_vector_env

    return make_vector_env(cfg.env)


def task_descriptions(cfg: RunConfig) -> list[str]:
    """The instruction of each configured task (``cfg.env.task_ids`` order), without starting a
    simulator: the policy is built (tokenizer, task embeddings) before or without an env."""
    if cfg.env.type == "toy":
        from pirl_core.envs.toy import task_description

        return [task_description(t) for t in cfg.env.task_ids]
    if cfg.env.type == "libero":
        from libero.libero import benchmark

        suite = benchmark.get_benchmark_dict()[cfg.env.suite]()
        return [suite.get_task(t).language for t in cfg.env.task_ids]
    raise ValueError(f"unknown env.type {cfg.env.type!r}")
