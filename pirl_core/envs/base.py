"""The vector-env contract the rollout collector drives.

Why not gymnasium's VectorEnv directly: LeRobot's LIBERO envs auto-reset on termination and
never truncate, while PI-RL needs explicit episode boundaries, init-state ids (GRPO groups
episodes that share an initial state) and a success flag. Each env family wraps its simulator
into this small interface; the collector owns time limits and chunking.

Why a chunk step: the policy reads an observation once per action chunk, but stepping the env
one action at a time renders the cameras after every step, and rendering is most of a LIBERO
step. :meth:`PirlVectorEnv.step_chunk` executes a whole chunk and renders only the observation it
returns (after the last executed step, or where the episode ended). :meth:`PirlVectorEnv.step`
stays for code that needs every frame (demonstration recording).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class StepResult:
    obs: dict[str, Any]  # raw observation batch, consumed by the adapter's prepare_obs
    reward: np.ndarray  # (n_envs,) float
    terminated: np.ndarray  # (n_envs,) bool: task ended (success or failure), no bootstrap
    success: np.ndarray  # (n_envs,) bool: task solved at this step


@dataclass
class ChunkResult:
    """What ``step_chunk`` returns. Per-step arrays are ``(n_envs, k)``; entries past a sub-env's
    ``executed`` steps are 0/False."""

    obs: dict[str, Any]  # raw obs batch after each sub-env's last executed step
    reward: np.ndarray  # (n_envs, k) float
    terminated: np.ndarray  # (n_envs, k) bool
    success: np.ndarray  # (n_envs, k) bool
    executed: np.ndarray  # (n_envs,) int: steps each sub-env executed in this chunk
    # Raw obs batch of every executed step, one per step, only when ``step_chunk`` was asked to
    # render every step for some sub-envs (``render_slots``; videos). Rows of other sub-envs in
    # these dicts are not meaningful.
    step_obs: list[dict[str, Any]] | None = None


def take_row(batch: Any, row: int) -> Any:
    """Row ``row`` of a (nested dict of) batched arrays, with its leading axis kept (length 1);
    lists (e.g. ``task`` strings) are sliced the same way."""
    if isinstance(batch, dict):
        return {k: take_row(v, row) for k, v in batch.items()}
    if isinstance(batch, list):
        return batch[row : row + 1]
    return np.array(batch[row : row + 1])


def put_row(batch: Any, row: int, value: Any) -> None:
    """Write a one-row value (as :func:`take_row` returns) into row ``row`` of ``batch`` in place."""
    if isinstance(batch, dict):
        for k in batch:
            put_row(batch[k], row, value[k])
    elif isinstance(batch, list):
        batch[row] = value[0]
    else:
        batch[row] = value[0]


class PirlVectorEnv(ABC):
    """``num_envs`` simulators stepped together. Raw observations are dicts of batched arrays
    (plus ``task``: list of instruction strings for language-conditioned envs)."""

    num_envs: int
    action_dim: int  # env action width (7 for LIBERO)
    max_episode_steps: int

    @abstractmethod
    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        """Reset env i to initial state ``init_state_ids[i]``; return the raw obs batch."""

    @abstractmethod
    def step(self, action: np.ndarray) -> StepResult:
        """action: (num_envs, action_dim). Envs whose episode ended may be stepped; results ignored."""

    def step_chunk(
        self, actions: np.ndarray, limit: np.ndarray, render_slots: frozenset[int] = frozenset()
    ) -> ChunkResult:
        """Execute up to ``k`` actions per sub-env (``actions``: ``(num_envs, k, action_dim)``).

        Sub-env ``i`` executes at most ``limit[i]`` steps (0: not stepped; the collector passes
        the steps left before its time limit) and stops after a step that terminates its episode.
        The returned observation of each sub-env is the one after its last executed step (its
        previous observation when it executed none). This default steps the batch one action at a
        time through :meth:`step`, which renders every step; envs whose observations cost
        something to produce override it to produce only the frames that are read."""
        actions = np.asarray(actions)
        k = actions.shape[1]
        limit = np.asarray(limit, dtype=np.int64)
        reward = np.zeros((self.num_envs, k), dtype=np.float32)
        terminated = np.zeros((self.num_envs, k), dtype=bool)
        success = np.zeros((self.num_envs, k), dtype=bool)
        executed = np.zeros(self.num_envs, dtype=np.int64)
        alive = limit > 0
        if not alive.any():
            raise ValueError("step_chunk: no sub-env has steps left (limit is all 0)")
        final: dict[int, Any] = {}
        step_obs: list[dict[str, Any]] = []
        for s in range(k):
            if not alive.any():
                break
            res = self.step(actions[:, s])
            if render_slots:
                step_obs.append(res.obs)
            reward[alive, s] = np.asarray(res.reward, dtype=np.float32)[alive]
            success[alive, s] = np.asarray(res.success, dtype=bool)[alive]
            terminated[alive, s] = np.asarray(res.terminated, dtype=bool)[alive]
            executed[alive] += 1
            stop = alive & (terminated[:, s] | (executed >= limit))
            for i in np.flatnonzero(stop):
                final[int(i)] = take_row(res.obs, int(i))
            alive &= ~stop
            last = res.obs  # sub-envs that ran to the chunk's end keep this step's observation
        obs = last
        for i, row in final.items():
            put_row(obs, i, row)
        return ChunkResult(obs, reward, terminated, success, executed, step_obs if render_slots else None)

    @abstractmethod
    def task_descriptions(self) -> list[str]:
        """The instruction of each sub-env (empty strings when not language-conditioned)."""

    def task_ids(self) -> list[int]:
        """Suite task id of each sub-env (per-task stats; GRPO groups share task and init state)."""
        return [0] * self.num_envs

    def num_init_states(self) -> int:
        """How many distinct initial states exist (ids wrap modulo this)."""
        return 1 << 30

    def observation_spec(self) -> list[Any]:
        """Per-sub-env shape and dtype of every raw observation array (``shm.FieldSpec`` list),
        without a simulator step: env workers lay out shared memory from it. Families that
        cannot say run in-process only."""
        raise NotImplementedError(
            f"{type(self).__name__} has no observation_spec: it cannot run in env workers"
        )

    def time_counters(self) -> dict[str, float]:
        """Cumulative seconds inside ``step`` (``step_s``) and, of those, rendering (``render_s``),
        and inside ``reset`` (``reset_s``). The actor splits its wall time with them; envs that
        do not measure report nothing."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook: envs without resources need not override
        """Release simulators (EGL contexts must close before interpreter shutdown)."""
