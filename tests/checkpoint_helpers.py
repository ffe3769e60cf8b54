"""Shared helpers for the checkpoint and resume tests.

Everything is the real code path: the toy profile, the lead's ``build_trainer`` (adapter ->
actor-critic -> PolicyTrainer), H1's toy env and rollout collector, real PPO updates.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pirl_core.config import RunConfig, load_config

SMALL_TOY = {
    "env.suite": "point_reach_shaped",  # dense reward: every update moves every tensor
    "env.n_envs": 4,
    "env.episode_length": 6,
    "learner.episodes_per_update": 4,
    "recipe.update_epochs": 1,
    "recipe.minibatches": 2,
    "policy.hidden_dim": 32,
}


def toy_config(output_dir: Path, **overrides: Any) -> RunConfig:
    return load_config("toy", {**SMALL_TOY, "output_dir": str(output_dir), **overrides})


def make_trainer(cfg: RunConfig):
    from pirl_core.learner import build_trainer

    return build_trainer(cfg)


def train(cfg: RunConfig, trainer, versions: range) -> None:
    """Real rollouts on the toy env (version-derived generators, as the actor does) + updates."""
    from pirl_core.envs.factory import make_env
    from pirl_core.rollout import collect_rollouts
    from pirl_core.rollout_plan import episode_plan, rollout_generator

    env = make_env(cfg)
    try:
        for version in versions:
            ids = episode_plan(cfg, 0, version)
            batch, _stats, _timing = collect_rollouts(
                env, trainer.actor_critic, ids, rollout_generator(cfg, 0, version, 0), cfg.policy.action_steps
            )
            trainer.update(batch)
            # consume the global RNGs too, so their restore is observable
            random.random()
            np.random.rand()
            torch.rand(1)
    finally:
        env.close()


def counters(step: int) -> dict[str, int]:
    return {"step": step, "version": step, "samples": 24 * step, "episodes": 4 * step, "dropped_stale": 0}


def snapshot(trainer) -> dict[str, torch.Tensor]:
    """Every tensor a resume must reproduce: model (policy + heads), optimizer state, generator."""
    out = {f"model/{k}": v.detach().clone() for k, v in trainer.actor_critic.state_dict().items()}
    for name, opt in trainer.optimizers.items():
        for idx, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    out[f"optim/{name}/{idx}/{key}"] = value.detach().clone()
    out["generator"] = trainer.generator.get_state().clone()
    return out


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), f"{key} differs"


def global_rng_state() -> tuple[Any, ...]:
    return (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state())


def tree_digest(root: Path) -> str:
    """Hash of a directory tree: names (hidden ones too), types, link targets, file bytes, sizes."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                h.update(f"L {rel} -> {os.readlink(path)}\n".encode())
            elif path.is_dir():
                h.update(f"D {rel}\n".encode())
            else:
                h.update(f"F {rel} {path.stat().st_size}\n".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def saved_run(tmp_path: Path, steps: tuple[int, ...] = (1, 2), **overrides: Any) -> tuple[RunConfig, Any]:
    """An output dir holding checkpoints at ``steps`` of a real toy run; returns (cfg, trainer)."""
    from pirl_core.checkpoints import resume

    cfg = toy_config(tmp_path / "run", **overrides)
    assert resume.prepare_run(cfg, resume=False) is None
    trainer = make_trainer(cfg)
    done = 0
    for step in steps:
        train(cfg, trainer, range(done, step))
        done = step
        resume.save(cfg, step, trainer, counters(step))
    return cfg, trainer
