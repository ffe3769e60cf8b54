"""Renderer-free toy tasks: a point must reach a goal within a few action chunks.

Why this task: the recipe needs an env that runs thousands of steps per second on one CPU core,
has a deterministic initial state per ``init_state_id`` (GRPO groups), and where a random policy
rarely succeeds but a good one always does — so a learning test can show the success rate rising.

Dynamics: position p in R^2, action a in [-1, 1]^2 (clipped), p <- p + STEP * a. The goal g lies
at distance r in [GOAL_MIN_DIST, GOAL_MAX_DIST] from the start, in a direction drawn from the
task's quadrant (task k: angles [k*pi/2, (k+1)*pi/2)). Success: |g - p| < RADIUS, which
terminates the episode. Observation ``state`` = [p, g - p] (4 floats).

* ``point_reach``: sparse reward, +1 on the (first and only) success step.
* ``point_reach_shaped``: the same +1 plus potential-based shaping, the per-step decrease of the
  distance to the goal (sums to d_start - d_end, so it does not change the optimal policy).
"""

from __future__ import annotations

import math

import numpy as np

from pirl_core.config import TOY_SUITES, EnvConfig
from pirl_core.envs.base import PirlVectorEnv, StepResult
from pirl_core.envs.shm import FieldSpec

OBS_DIM = 4
ACTION_DIM = 2
STEP = 0.15
RADIUS = 0.15
GOAL_MIN_DIST = 0.4
GOAL_MAX_DIST = 1.0
NUM_TASKS = 4
QUADRANTS = ("east-north", "north-west", "west-south", "south-east")


def observation_spec() -> list[FieldSpec]:
    """The raw observation of one sub-env: ``state`` = [p, g - p]."""
    return [FieldSpec(("state",), (OBS_DIM,), "float32")]


def task_description(task_id: int) -> str:
    return f"move the point to the goal ({QUADRANTS[task_id % NUM_TASKS]} of the start)"


def initial_state(task_id: int, init_state_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, goal) as a pure function of (task, init state id): the same id is the same episode."""
    rng = np.random.default_rng([task_id, init_state_id])
    start = rng.uniform(-1.0, 1.0, size=2)
    angle = (task_id + rng.uniform()) * (math.pi / 2)
    dist = rng.uniform(GOAL_MIN_DIST, GOAL_MAX_DIST)
    goal = start + dist * np.array([math.cos(angle), math.sin(angle)])
    return start, goal


class PointReachEnv(PirlVectorEnv):
    """``n_envs`` point-reach episodes stepped together; sub-env i runs task ``task_ids[i % len]``."""

    action_dim = ACTION_DIM

    def __init__(self, env_cfg: EnvConfig, *, slot_offset: int = 0) -> None:
        """``slot_offset``: this env holds sub-envs ``slot_offset ...`` of the actor's (an env
        worker's share), so sub-env s runs task ``task_ids[s % len]`` whatever the split."""
        if env_cfg.suite not in TOY_SUITES:
            raise ValueError(f"unknown toy suite {env_cfg.suite!r}")
        self.suite = env_cfg.suite
        self.shaped = env_cfg.suite == "point_reach_shaped"
        self.num_envs = env_cfg.n_envs
        self.max_episode_steps = env_cfg.episode_length
        n_tasks = len(env_cfg.task_ids)
        self._tasks = [env_cfg.task_ids[(slot_offset + i) % n_tasks] for i in range(self.num_envs)]
        self.pos = np.zeros((self.num_envs, 2))
        self.goal = np.zeros((self.num_envs, 2))
        self.finished = np.zeros(self.num_envs, dtype=bool)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.concatenate([self.pos, self.goal - self.pos], axis=1).astype(np.float32)}

    def reset(self, init_state_ids: list[int]) -> dict[str, np.ndarray]:
        if len(init_state_ids) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} init state ids, got {len(init_state_ids)}")
        for i, sid in enumerate(init_state_ids):
            self.pos[i], self.goal[i] = initial_state(self._tasks[i], int(sid))
        self.finished[:] = False
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64).reshape(self.num_envs, ACTION_DIM)
        norm = np.linalg.norm(action, axis=1, keepdims=True)
        action = action / np.maximum(norm, 1.0)  # clip to the unit disk: speed <= STEP
        before = np.linalg.norm(self.goal - self.pos, axis=1)
        self.pos = self.pos + STEP * action
        after = np.linalg.norm(self.goal - self.pos, axis=1)
        success = (after < RADIUS) & ~self.finished
        reward = success.astype(np.float64)
        if self.shaped:
            reward = reward + np.where(self.finished, 0.0, before - after)
        self.finished |= success
        return StepResult(obs=self._obs(), reward=reward, terminated=success.copy(), success=success)

    def observation_spec(self) -> list[FieldSpec]:
        return observation_spec()

    def task_descriptions(self) -> list[str]:
        return [task_description(t) for t in self._tasks]

    def task_ids(self) -> list[int]:
        return list(self._tasks)
