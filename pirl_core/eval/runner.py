"""Run evaluation episodes through the training collector, and record what videos need.

Why the collector: evaluation must see exactly the observations, action conversion and episode
boundaries training sees, on the same ``PirlVectorEnv`` (env workers included once they exist), so
``collect_rollouts(..., deterministic=True)`` runs the episodes. :class:`RecordingEnv` wraps the env
to keep, per sub-env, the rewards of every step and (for videos) the camera frames; the
collector's per-episode lengths then cut each recording at the episode's end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pirl_core.envs.base import ChunkResult, PirlVectorEnv, StepResult
from pirl_core.eval.results import EpisodeResult
from pirl_core.seeding import derived_seed

Frame = np.ndarray


def no_frame(raw: dict[str, Any], slot: int) -> Frame | None:
    """The frame of an env family without cameras: none. A family's own is its
    ``EnvFamily.video_frame`` (:mod:`pirl_core.envs.registry`)."""
    return None


class RecordingEnv(PirlVectorEnv):
    """Delegates to ``env``; keeps per-slot rewards and env actions of every executed step and,
    for slots in ``record_slots``, the camera frame of every step.

    Chunks go through ``env.step_chunk`` with ``render_slots=record_slots``: only the sub-envs
    being recorded render every step (a video needs every frame); the others render once per
    chunk as in training."""

    def __init__(self, env: PirlVectorEnv, frame_fn: Callable[[dict[str, Any], int], Frame | None]) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.action_dim = env.action_dim
        self.max_episode_steps = env.max_episode_steps
        self.frame_fn = frame_fn
        self.record_slots: set[int] = set()
        self.rewards: list[list[float]] = []
        self.actions: list[list[np.ndarray]] = []  # env actions as stepped (agreement checks)
        self.frames: list[list[Frame]] = []

    def _keep_frames(self, raw: dict[str, Any], slots: Any) -> None:
        for slot in slots:
            frame = self.frame_fn(raw, slot)
            if frame is not None:
                self.frames[slot].append(frame)

    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        raw = self.env.reset(init_state_ids)
        self.rewards = [[] for _ in range(self.num_envs)]
        self.actions = [[] for _ in range(self.num_envs)]
        self.frames = [[] for _ in range(self.num_envs)]
        self._keep_frames(raw, self.record_slots)
        return raw

    def step(self, action: np.ndarray) -> StepResult:
        res = self.env.step(action)
        for slot, r in enumerate(np.asarray(res.reward, dtype=np.float64)):
            self.rewards[slot].append(float(r))
            self.actions[slot].append(np.array(action[slot], dtype=np.float64))
        self._keep_frames(res.obs, self.record_slots)
        return res

    def step_chunk(
        self, actions: np.ndarray, limit: np.ndarray, render_slots: frozenset[int] = frozenset()
    ) -> ChunkResult:
        res = self.env.step_chunk(actions, limit, frozenset(render_slots) | frozenset(self.record_slots))
        for slot in range(self.num_envs):
            n = int(res.executed[slot])
            self.rewards[slot].extend(float(r) for r in np.asarray(res.reward[slot, :n], dtype=np.float64))
            self.actions[slot].extend(np.array(a, dtype=np.float64) for a in actions[slot, :n])
        for s, raw in enumerate(res.step_obs or []):
            self._keep_frames(raw, [slot for slot in self.record_slots if s < int(res.executed[slot])])
        return res

    def task_descriptions(self) -> list[str]:
        return self.env.task_descriptions()

    def task_ids(self) -> list[int]:
        return self.env.task_ids()

    def num_init_states(self) -> int:
        return self.env.num_init_states()

    def time_counters(self) -> dict[str, float]:
        return self.env.time_counters()

    def close(self) -> None:
        self.env.close()


@dataclass
class Wave:
    """One reset's worth of episodes and what was recorded for them."""

    results: list[EpisodeResult]
    frames: list[list[Frame]]


def eval_generator(seed: int, wave_index: int) -> torch.Generator:
    """Sampling noise of one wave: a pure function of (seed, wave), so the same seed gives the
    same episodes (the ODE's initial noise x_1; the rest is deterministic)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derived_seed(seed, "eval", wave_index))
    return gen


def run_episodes(
    env: PirlVectorEnv,
    actor_critic,
    ids: list[int],
    n_tasks: int,
    action_steps: int,
    seed: int,
    deterministic: bool = True,
    video_slots: Callable[[list[int]], set[int]] | None = None,
    frame_fn: Callable[[dict[str, Any], int], Frame | None] = no_frame,
    on_wave: Callable[[Wave], None] | None = None,
) -> list[EpisodeResult]:
    """One episode per global init-state id, ``env.num_envs`` at a time. ``video_slots(wave_ids)``
    names the slots of a wave whose frames to keep (handed to ``on_wave``)."""
    from pirl_core.rollout import collect_rollouts

    rec = RecordingEnv(env, frame_fn)
    n_init = env.num_init_states()
    per_task = max(1, n_init // n_tasks)
    results: list[EpisodeResult] = []
    for wave_index, first in enumerate(range(0, len(ids), env.num_envs)):
        wave_ids = ids[first : first + env.num_envs]
        rec.record_slots = video_slots(wave_ids) if video_slots else set()
        gen = eval_generator(seed, wave_index)
        with torch.no_grad():
            _, stats, _ = collect_rollouts(rec, actor_critic, wave_ids, gen, action_steps, deterministic)
        wave_results = []
        frames = []
        for slot, (gid, s) in enumerate(zip(wave_ids, stats, strict=True)):
            rewards = rec.rewards[slot][: s.length]
            wave_results.append(
                EpisodeResult(
                    episode_ix=first + slot,
                    task_id=s.task_id,
                    init_state=(gid // n_tasks) % per_task,
                    success=s.success,
                    sum_reward=float(sum(rewards)),
                    max_reward=float(max(rewards)) if rewards else 0.0,
                    length=s.length,
                    seed=seed,
                )
            )
            frames.append(rec.frames[slot][: s.length + 1] if slot in rec.record_slots else [])
        results.extend(wave_results)
        if on_wave is not None:
            on_wave(Wave(wave_results, frames))
    return results
