"""The vector-env contract the rollout collector drives.

Why not gymnasium's VectorEnv directly: LeRobot's LIBERO envs auto-reset on termination and
never truncate, while PI-RL needs explicit episode boundaries, init-state ids (GRPO groups
episodes that share an initial state) and a success flag. Each env family wraps its simulator
into this small interface; the collector owns time limits and chunking.
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
