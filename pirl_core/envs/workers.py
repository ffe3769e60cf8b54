"""Env workers: the actor's ``env.n_envs`` sub-envs spread over ``env.workers`` processes.

Why processes: a LIBERO step is physics plus two camera renders, all single-threaded C under the
GIL-free-but-serial Python loop of one process; the actor would use one core whatever the machine
has. Each worker owns a contiguous block of sub-envs as an in-process env of the same family
(``slot_offset`` keeps the global slot -> task assignment), so reset/step semantics — explicit
init states, no hidden resets, task switching by rebuilding a slot — are exactly the in-process
ones, and a sub-env's trajectory does not depend on which worker holds it (determinism across
worker counts).

Data path: observations, rewards and flags are written by the workers into one shared-memory
segment (:mod:`pirl_core.envs.shm`); single-step actions go out through it too. The pipes carry
only small commands and replies (init-state ids, task strings, timings, errors). A chunk step
(:meth:`WorkerVectorEnv.step_chunk`) crosses each pipe once per chunk: the chunk's actions and
step limits go out in the command (k x 7 floats per sub-env), the per-step rewards and flags come
back in the reply, and the one observation the chunk returns goes through shared memory.

Processes start with ``spawn``: EGL/MuJoCo contexts and torch thread pools do not survive
``fork``. Workers ignore SIGINT (the terminal's Ctrl-C reaches the whole process group); the
actor gets the KeyboardInterrupt and its ``close`` stops them and unlinks the segment. A worker
that dies is reported as :class:`EnvWorkerError` (exit code 5) naming the worker, its sub-envs,
their tasks and init states; it is not restarted (a restarted LIBERO worker would not reproduce
the lost episodes' simulator state mid-episode).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from pirl_core.config import EnvConfig
from pirl_core.envs.base import ChunkResult, PirlVectorEnv, StepResult
from pirl_core.envs.registry import env_family
from pirl_core.envs.shm import FieldSpec, SharedArrays, flatten, unflatten
from pirl_core.errors import ExitCode, PirlError

START_METHOD = "spawn"
CLOSE_TIMEOUT_S = 10.0


class EnvWorkerError(PirlError):
    """An env worker died or failed; the round it was stepping cannot be completed exactly."""

    exit_code = ExitCode.TRANSPORT


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's or taskset's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(env_cfg: EnvConfig) -> int:
    """``env.workers``, with 0 meaning the family's default (:attr:`EnvFamily.default_workers`),
    and a default of 0 meaning the cores the actor may use; capped by ``env.n_envs``.

    A step waits for the busiest worker, so the cores default is the fewest workers that reach the
    smallest possible share per worker (20 sub-envs on 16 cores: 10 workers of 2, not 16 with
    four of them holding 2). The toy env steps in microseconds; process hops would cost more
    than they save, so its default is in-process (an explicit count is honoured, e.g. for tests)."""
    n_envs = env_cfg.n_envs
    workers = env_cfg.workers or env_family(env_cfg.type).default_workers
    if workers > 0:
        return min(workers, n_envs)
    per_worker = -(-n_envs // max(1, min(available_cores(), n_envs)))
    return -(-n_envs // per_worker)


def split_slots(n_envs: int, workers: int) -> list[range]:
    """Contiguous, balanced blocks of sub-env slots, one per worker."""
    base, extra = divmod(n_envs, workers)
    blocks, start = [], 0
    for w in range(workers):
        size = base + (1 if w < extra else 0)
        blocks.append(range(start, start + size))
        start += size
    return blocks


def make_local_env(env_cfg: EnvConfig, slot_offset: int = 0) -> PirlVectorEnv:
    """The in-process env of ``env_cfg.type`` (what a worker runs, and the ``workers=1`` path)."""
    return env_family(env_cfg.type).make(env_cfg, slot_offset=slot_offset)


def step_fields(action_dim: int) -> list[FieldSpec]:
    """Shared-memory fields besides the observation: the action in, the step's outcome out."""
    return [
        FieldSpec(("_action",), (action_dim,), "float64"),
        FieldSpec(("_reward",), (), "float64"),
        FieldSpec(("_terminated",), (), "bool"),
        FieldSpec(("_success",), (), "bool"),
    ]


# ---------------------------------------------------------------------------------------- worker


def _worker_main(
    conn: Connection, env_cfg: EnvConfig, slots: range, shm_name: str, fields: list[FieldSpec]
) -> None:
    """Runs in the worker process: build the share of sub-envs, then serve reset/step/close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the actor's to handle
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for libraries imported below
    # Mesa's software EGL (llvmpipe) rasterises with one thread per core by default; with one
    # worker per core those threads only fight each other. Measured here (loaded 2-core box):
    # two 64 px cameras in 107 ms with one thread vs ~200 ms with the default. Bit-identical
    # images; ignored by GPU EGL. Set LP_NUM_THREADS yourself to override.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    if "torch" in sys.modules:  # spawn re-imported the actor's main module, which imports torch
        sys.modules["torch"].set_num_threads(1)
    shm: SharedArrays | None = None
    env: PirlVectorEnv | None = None
    rows = slice(slots.start, slots.stop)
    try:
        shm = SharedArrays.attach(shm_name, fields, n_envs=env_cfg.n_envs)
        env = make_local_env(
            dataclasses.replace(env_cfg, n_envs=len(slots), workers=1), slot_offset=slots.start
        )
        obs_paths = {f.path for f in fields if not f.path[0].startswith("_")}
        conn.send(("ready", {"num_init_states": env.num_init_states()}))
        while True:
            try:
                cmd, arg = conn.recv()
            except EOFError:  # the actor is gone
                return
            try:
                if cmd == "close":
                    return
                if cmd == "reset":
                    raw = env.reset(list(arg))
                    raw = dict(raw)
                    tasks = raw.pop("task", [""] * len(slots))
                    shm.write(rows, _checked(flatten(raw), obs_paths))
                    conn.send(("ok", {"task_ids": env.task_ids(), "tasks": tasks, **env.time_counters()}))
                elif cmd == "step":
                    res = env.step(shm.arrays[("_action",)][rows])
                    raw = dict(res.obs)
                    raw.pop("task", None)
                    shm.write(rows, _checked(flatten(raw), obs_paths))
                    shm.write(
                        rows,
                        {
                            ("_reward",): np.asarray(res.reward, dtype=np.float64),
                            ("_terminated",): np.asarray(res.terminated, dtype=bool),
                            ("_success",): np.asarray(res.success, dtype=bool),
                        },
                    )
                    conn.send(("ok", env.time_counters()))
                elif cmd == "step_chunk":
                    actions, limit, render_slots = arg
                    res = env.step_chunk(actions, limit, render_slots)
                    raw = dict(res.obs)
                    raw.pop("task", None)
                    shm.write(rows, _checked(flatten(raw), obs_paths))
                    step_obs = None
                    if res.step_obs is not None:  # videos: every frame of the recorded sub-envs
                        step_obs = [{k: v for k, v in o.items() if k != "task"} for o in res.step_obs]
                    conn.send(
                        (
                            "ok",
                            {
                                "reward": res.reward,
                                "terminated": res.terminated,
                                "success": res.success,
                                "executed": res.executed,
                                "step_obs": step_obs,
                                "counters": env.time_counters(),
                            },
                        )
                    )
                else:
                    conn.send(("error", f"unknown command {cmd!r}"))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        with contextlib.suppress(OSError, EOFError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if env is not None:
            env.close()
        if shm is not None:
            shm.close()


def _checked(
    leaves: dict[tuple[str, ...], Any], expected: set[tuple[str, ...]]
) -> dict[tuple[str, ...], Any]:
    if set(leaves) != expected:
        extra = sorted(".".join(p) for p in set(leaves) - expected)
        missing = sorted(".".join(p) for p in expected - set(leaves))
        raise ValueError(
            f"observation keys differ from the env family's observation_spec (extra {extra}, missing {missing})"
        )
    return leaves


# ---------------------------------------------------------------------------------------- actor side


class WorkerVectorEnv(PirlVectorEnv):
    """``env_cfg.n_envs`` sub-envs in ``workers`` processes, behind the in-process contract.

    Construction returns at once: workers import and build their simulators in the background
    (overlapping the actor's policy build and connection); the first ``reset`` waits for them.
    """

    def __init__(self, env_cfg: EnvConfig, workers: int) -> None:
        if not 1 <= workers <= env_cfg.n_envs:
            raise ValueError(f"workers must be in [1, n_envs={env_cfg.n_envs}], got {workers}")
        self.cfg = env_cfg
        self.num_envs = int(env_cfg.n_envs)
        self.max_episode_steps = int(env_cfg.episode_length)
        family = env_family(env_cfg.type)
        obs_fields, self.action_dim = family.observation_spec(env_cfg), family.action_dim
        self._instructions_in_obs = family.instructions_in_obs
        self._obs_paths = [f.path for f in obs_fields]
        self._fields = obs_fields + step_fields(self.action_dim)
        self.blocks = split_slots(self.num_envs, workers)
        n_tasks = len(env_cfg.task_ids)
        self._task_ids = [env_cfg.task_ids[s % n_tasks] for s in range(self.num_envs)]
        self._tasks: list[str] = [""] * self.num_envs
        self._init_ids: list[int | None] = [None] * self.num_envs
        self._counters = [dict.fromkeys(("step_s", "render_s", "reset_s"), 0.0) for _ in self.blocks]
        self._ready = [False] * workers
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._closed = False
        self._n_init: int | None = None
        self.shm = SharedArrays.create(self._fields, self.num_envs)
        atexit.register(_close_ref, weakref.ref(self))
        try:
            ctx = mp.get_context(START_METHOD)
            for index, slots in enumerate(self.blocks):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker_main,
                    args=(child, env_cfg, slots, self.shm.name, self._fields),
                    name=f"pirl-env-worker-{index}",
                    daemon=True,
                )
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ contract

    @property
    def workers(self) -> int:
        return len(self.blocks)

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self._procs]

    def task_ids(self) -> list[int]:
        return list(self._task_ids)

    def task_descriptions(self) -> list[str]:
        return list(self._tasks)

    def num_init_states(self) -> int:
        self._await_ready()
        assert self._n_init is not None
        return self._n_init

    def observation_spec(self) -> list[FieldSpec]:
        return [f for f in self._fields if f.path in set(self._obs_paths)]

    def time_counters(self) -> dict[str, float]:
        return {k: sum(c[k] for c in self._counters) for k in ("step_s", "render_s", "reset_s")}

    def reset(self, init_state_ids: list[int]) -> dict[str, Any]:
        if len(init_state_ids) != self.num_envs:
            raise ValueError(f"reset needs {self.num_envs} init-state ids, got {len(init_state_ids)}")
        self._init_ids = [int(g) for g in init_state_ids]
        self._await_ready()
        for w, slots in enumerate(self.blocks):
            self._send(w, ("reset", self._init_ids[slots.start : slots.stop]), "resetting")
        for w, slots in enumerate(self.blocks):
            reply = self._receive(w, "resetting")
            self._task_ids[slots.start : slots.stop] = reply.pop("task_ids")
            self._tasks[slots.start : slots.stop] = reply.pop("tasks")
            self._counters[w].update(reply)
        return self._observation()

    def step(self, action: np.ndarray) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.action_dim)}, got {action.shape}")
        self.shm.arrays[("_action",)][...] = action
        for w in range(self.workers):
            self._send(w, ("step", None), "stepping")
        for w in range(self.workers):
            self._counters[w].update(self._receive(w, "stepping"))
        out = self.shm.read([("_reward",), ("_terminated",), ("_success",)])
        return StepResult(
            obs=self._observation(),
            reward=out[("_reward",)],
            terminated=out[("_terminated",)],
            success=out[("_success",)],
        )

    def step_chunk(
        self, actions: np.ndarray, limit: np.ndarray, render_slots: frozenset[int] = frozenset()
    ) -> ChunkResult:
        """One command and one reply per worker for the whole chunk; each worker runs its share
        with its in-process ``step_chunk`` (what is rendered when is decided there)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 3 or actions.shape[0] != self.num_envs or actions.shape[2] != self.action_dim:
            raise ValueError(
                f"actions must have shape ({self.num_envs}, k, {self.action_dim}), got {actions.shape}"
            )
        limit = np.asarray(limit, dtype=np.int64)
        k = actions.shape[1]
        # A worker whose sub-envs all have no steps left is not asked: its observations in the
        # shared segment are already the ones to return.
        busy = [w for w, slots in enumerate(self.blocks) if limit[slots.start : slots.stop].any()]
        for w in busy:
            slots = self.blocks[w]
            local = frozenset(s - slots.start for s in render_slots if s in slots)
            self._send(
                w,
                ("step_chunk", (actions[slots.start : slots.stop], limit[slots.start : slots.stop], local)),
                "stepping",
            )
        reward = np.zeros((self.num_envs, k), dtype=np.float32)
        terminated = np.zeros((self.num_envs, k), dtype=bool)
        success = np.zeros((self.num_envs, k), dtype=bool)
        executed = np.zeros(self.num_envs, dtype=np.int64)
        step_obs: list[dict[str, Any]] | None = None
        for w in busy:
            slots = self.blocks[w]
            reply = self._receive(w, "stepping")
            self._counters[w].update(reply["counters"])
            rows = slice(slots.start, slots.stop)
            reward[rows], terminated[rows], success[rows] = (
                reply["reward"],
                reply["terminated"],
                reply["success"],
            )
            executed[rows] = reply["executed"]
            if reply["step_obs"]:
                step_obs = step_obs if step_obs is not None else []
                for s, local in enumerate(reply["step_obs"]):
                    if s == len(step_obs):
                        step_obs.append(_blank_like(local, self.num_envs, rows))
                    _put_rows(step_obs[s], rows, local)
        if step_obs is not None and self._instructions_in_obs:
            for o in step_obs:
                o["task"] = self.task_descriptions()
        return ChunkResult(self._observation(), reward, terminated, success, executed, step_obs)

    def close(self) -> None:
        """Stop the workers (politely, then by force) and unlink the segment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for conn, proc in zip(self._conns, self._procs, strict=False):
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("close", None))
        for proc in self._procs:
            proc.join(CLOSE_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join(CLOSE_TIMEOUT_S)
        for conn in self._conns:
            conn.close()
        self.shm.unlink()

    # ------------------------------------------------------------------ plumbing

    def _observation(self) -> dict[str, Any]:
        raw = unflatten(self.shm.read(self._obs_paths))
        if self._instructions_in_obs:
            raw["task"] = self.task_descriptions()  # the in-process layout: instructions ride along
        return raw

    def _await_ready(self) -> None:
        for w, ready in enumerate(self._ready):
            if not ready:
                info = self._receive(w, "starting", expect="ready")
                self._n_init = int(info["num_init_states"])
                self._ready[w] = True

    def _send(self, w: int, message: tuple[str, Any], doing: str) -> None:
        if self._closed:
            raise EnvWorkerError("env workers are closed: the env was closed before this call")
        try:
            self._conns[w].send(message)
        except (OSError, ValueError) as exc:
            proc = self._procs[w]
            proc.join(1.0)  # a dead worker breaks the pipe: say how it died, not just that it did
            what = _death(proc.exitcode) if proc.exitcode is not None else f"its pipe is broken ({exc})"
            self._fail(w, doing, what)

    def _receive(self, w: int, doing: str, expect: str = "ok") -> Any:
        conn, proc = self._conns[w], self._procs[w]
        while True:
            ready = wait([conn, proc.sentinel])
            if conn in ready:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    proc.join(1.0)
                    self._fail(w, doing, _death(proc.exitcode))
                if kind == expect:
                    return payload
                lines = str(payload).strip().splitlines() or ["?"]
                self._fail(w, doing, f"it raised {lines[-1]}", detail=str(payload))
            if not proc.is_alive():
                self._fail(w, doing, _death(proc.exitcode))

    def _fail(self, w: int, doing: str, what: str, detail: str = "") -> None:
        """Close everything (segment unlinked) and raise one line naming the worker and its share;
        a worker's traceback goes to ``detail``."""
        slots = self.blocks[w]
        tasks = self._task_ids[slots.start : slots.stop]
        inits = self._init_ids[slots.start : slots.stop]
        pid = self._procs[w].pid
        self.close()
        raise EnvWorkerError(
            f"env worker {w} (pid {pid}) failed while {doing} sub-envs {list(slots)} (tasks {tasks}, "
            f"init-state ids {inits}): {what}. The round cannot be completed exactly; the actor stops. "
            "Check the worker's output above (and dmesg for the OOM killer), then restart the run "
            "(lower env.workers or env.n_envs if memory is short)",
            detail=detail,
        )


def _blank_like(local: Any, n_envs: int, rows: slice) -> Any:
    """A zero batch of ``n_envs`` rows shaped like one worker's ``local`` batch."""
    if isinstance(local, dict):
        return {k: _blank_like(v, n_envs, rows) for k, v in local.items()}
    local = np.asarray(local)
    return np.zeros((n_envs, *local.shape[1:]), dtype=local.dtype)


def _put_rows(batch: Any, rows: slice, local: Any) -> None:
    if isinstance(batch, dict):
        for k in batch:
            _put_rows(batch[k], rows, local[k])
    else:
        batch[rows] = local


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            return f"it was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"it was killed by signal {-exitcode}"
    return f"it exited with code {exitcode}"


def _close_ref(ref: weakref.ref) -> None:
    env = ref()
    if env is not None:
        env.close()


def make_vector_env(env_cfg: EnvConfig) -> PirlVectorEnv:
    """In-process for one worker (measured: a worker process buys nothing there, see README's
    throughput section), else :class:`WorkerVectorEnv`."""
    workers = resolve_workers(env_cfg)
    if workers <= 1:
        return make_local_env(env_cfg)
    return WorkerVectorEnv(env_cfg, workers)
