"""The lift's control experiment without LIBERO's cost: does the PPO update move the SFT X-VLA's
deterministic action where the rewarded samples are?

Issue 19 asks for a control that separates "the gradient is wrong" from "the step is too big":
an update whose advantages are only the successes (filtered behaviour cloning through the same
PPO code) must raise success. On LIBERO that control is confounded by the task itself (which
samples succeed, how many, how often). Here the reward is synthetic and known, everything else
is the product's own path:

* the real SFT X-VLA (``libero_small``'s policy), real LIBERO first frames of the training and
  validation init states, the actor's sampler (Flow-Noise chain, masks, executed steps), the
  learner's trainer (ratios, clipping, GRPO groups, success-only advantages) through
  ``version_rounds`` / ``collect_rollouts`` / ``PolicyTrainer.update``;
* an episode is one chunk (``action_steps`` env steps) on a frozen first frame; it *succeeds*
  when the chunk's mean commanded target moves along ``--axis`` by more than ``--tau-mm`` beyond
  the SFT policy's own deterministic chunk at that state. The SFT policy's deterministic success
  is 0 by construction; about a sixth of its noisy samples succeed (``--tau-mm`` defaults to one
  standard deviation of the sampled shift).

A correct log-likelihood gradient moves the deterministic chunk along the axis on *held-out*
states (validation ids) and raises their deterministic success; a wrong one moves it elsewhere.
Printed per update: held-out deterministic success, the mean shift along the axis and across it
(mm), the stochastic success that fed the update, approx_kl, clip fraction.

    OMP_NUM_THREADS=2 MUJOCO_GL=egl python benchmarks/gradient_control.py --updates 12 \\
        --set recipe.advantage_mode=success_only --set recipe.lr=5e-6
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import RunConfig, load_config, parse_override, split_states  # noqa: E402
from pirl_core.envs.base import PirlVectorEnv, StepResult  # noqa: E402
from pirl_core.envs.factory import make_env  # noqa: E402
from pirl_core.process_env import configure_process  # noqa: E402
from pirl_core.recipe.actor_critic import actor_critic_for  # noqa: E402
from pirl_core.recipe.trainer import trainer_for  # noqa: E402
from pirl_core.rollout import collect_rollouts, concat  # noqa: E402
from pirl_core.rollout_plan import version_rounds  # noqa: E402

AXES = {"x": 0, "y": 1, "z": 2}
# The E-series settings (README, "The E-series"): GRPO groups of 8 with the [0.1, 0.9] filter,
# 24 episodes per update, element ratios, the action expert only.
BASE = {
    "recipe.algorithm": "grpo",
    "recipe.grpo_group_size": 8,
    "recipe.grpo_filter": True,
    "learner.episodes_per_update": 24,
    "recipe.lr": 5e-6,
    "recipe.update_epochs": 2,
    "recipe.minibatches": 2,
    "recipe.train_vlm": False,
    "recipe.loss_aggregation": "episode",
    "recipe.ratio_mode": "element",
    "env.workers": 0,
}


class ChunkTargetEnv(PirlVectorEnv):
    """LIBERO's first frame of each init state, frozen; one chunk per episode, rewarded by where
    the chunk's commanded target goes (see the module docstring). Observation, tasks and init
    states are the wrapped LIBERO env's own."""

    def __init__(self, inner: PirlVectorEnv, horizon: int, axis: int, tau_m: float) -> None:
        self.inner = inner
        self.num_envs = inner.num_envs
        self.action_dim = inner.action_dim
        self.max_episode_steps = horizon
        self.horizon = horizon
        self.axis = axis
        self.tau_m = tau_m
        self.reference: dict[int, np.ndarray] = {}  # global init id -> SFT deterministic mean target
        self.last_mean: dict[int, np.ndarray] = {}  # global init id -> last chunk's mean target
        self._obs: dict[str, Any] = {}
        self._ids: list[int] = []
        self._t = np.zeros(self.num_envs, dtype=int)
        self._sum = np.zeros((self.num_envs, 3))

    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        self._obs = self.inner.reset(init_state_ids)
        self._ids = list(init_state_ids)
        self._t[:] = 0
        self._sum[:] = 0.0
        return self._obs

    def step(self, action: np.ndarray) -> StepResult:
        self._t += 1
        self._sum += action[:, :3]
        done = self._t >= self.horizon
        success = np.zeros(self.num_envs, dtype=bool)
        for slot in np.flatnonzero(done):
            gid = self._ids[slot]
            mean = self._sum[slot] / self._t[slot]
            self.last_mean[gid] = mean
            ref = self.reference.get(gid)
            success[slot] = ref is not None and mean[self.axis] - ref[self.axis] > self.tau_m
        return StepResult(obs=self._obs, reward=success.astype(np.float32), terminated=done, success=success)

    def task_descriptions(self) -> list[str]:
        return self.inner.task_descriptions()

    def task_ids(self) -> list[int]:
        return self.inner.task_ids()

    def num_init_states(self) -> int:
        return self.inner.num_init_states()

    def observation_spec(self) -> list[Any]:
        return self.inner.observation_spec()

    def close(self) -> None:
        self.inner.close()


def global_ids(states: list[int], n_tasks: int) -> list[int]:
    return [s * n_tasks + t for s in states for t in range(n_tasks)]


def chunk_means(
    env: ChunkTargetEnv, actor_critic, ids: list[int], seed: int, deterministic: bool
) -> np.ndarray:
    """(len(ids), 3) mean commanded target of one chunk per id."""
    gen = torch.Generator().manual_seed(seed)
    _, stats, _ = collect_rollouts(env, actor_critic, ids, gen, env.horizon, deterministic=deterministic)
    return np.stack([env.last_mean[g] for g in ids]), stats


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/gradient_control.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=12)
    p.add_argument("--axis", choices=sorted(AXES), default="z")
    p.add_argument("--tau-mm", type=float, default=None, help="default: 1 std of the sampled shift")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="profile override")
    p.add_argument("--out", type=Path, default=None, help="JSON with every update's record")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    configure_process()
    args = parse(argv)
    overrides: dict[str, Any] = dict(BASE)
    overrides.update(dict(parse_override(s) for s in args.set))
    cfg: RunConfig = load_config("libero_small", overrides)
    cfg.env.episode_length = cfg.policy.action_steps
    n_tasks = len(cfg.env.task_ids)
    split = split_states(cfg)
    train_ids = global_ids(split["env.train_init_states"], n_tasks)
    val_ids = global_ids(split["eval.val_init_states"], n_tasks)
    torch.manual_seed(cfg.seed)
    actor_critic = actor_critic_for(cfg)
    trainer = trainer_for(cfg, actor_critic)
    axis = AXES[args.axis]
    env = ChunkTargetEnv(make_env(cfg), cfg.policy.action_steps, axis, tau_m=0.0)

    started = time.perf_counter()
    ref, _ = chunk_means(env, actor_critic, train_ids + val_ids, cfg.seed, deterministic=True)
    env.reference = {g: ref[i] for i, g in enumerate(train_ids + val_ids)}
    sampled, _ = chunk_means(env, actor_critic, train_ids, cfg.seed + 1, deterministic=False)
    shift = sampled[:, axis] - ref[: len(train_ids), axis]
    env.tau_m = args.tau_mm / 1000 if args.tau_mm is not None else float(shift.std())
    print(
        f"sampled shift along {args.axis}: mean {shift.mean() * 1e3:+.2f} mm, std {shift.std() * 1e3:.2f} mm; "
        f"tau {env.tau_m * 1e3:.2f} mm; fraction of samples over tau {(shift > env.tau_m).mean():.2f}"
    )
    print(
        f"{'update':>6} {'val_det_success':>15} {'along_mm':>8} {'across_mm':>9} {'train_success':>13} "
        f"{'approx_kl':>9} {'clip_frac':>9} {'wall_s':>6}"
    )
    records = []
    for update in range(args.updates + 1):
        det, _ = chunk_means(env, actor_critic, val_ids, cfg.seed, deterministic=True)
        base = np.stack([env.reference[g] for g in val_ids])
        moved = det - base
        along = moved[:, axis]
        across = np.linalg.norm(np.delete(moved, axis, axis=1), axis=1)
        record: dict[str, Any] = {
            "update": update,
            "val_det_success": float((along > env.tau_m).mean()),
            "along_mm": float(along.mean() * 1e3),
            "across_mm": float(across.mean() * 1e3),
        }
        if update < args.updates:
            batches, stats = [], []
            for batch, round_stats, _ in version_rounds(cfg, env, actor_critic, 0, update):
                batches.append(batch)
                stats.extend(round_stats)
            metrics = trainer.update(concat(batches))
            record["train_success"] = sum(s.success for s in stats) / len(stats)
            record.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        record["wall_s"] = time.perf_counter() - started
        records.append(record)
        print(
            f"{update:>6} {record['val_det_success']:>15.2f} {record['along_mm']:>+8.2f} "
            f"{record['across_mm']:>9.2f} {record.get('train_success', float('nan')):>13.2f} "
            f"{record.get('approx_kl', float('nan')):>9.5f} {record.get('clip_frac', float('nan')):>9.3f} "
            f"{record['wall_s']:>6.0f}",
            flush=True,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"argv": argv, "tau_m": env.tau_m, "records": records}, indent=1))
    env.close()


if __name__ == "__main__":
    main()
