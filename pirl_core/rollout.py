"""Chunk-level rollout collection and the batch format that travels actor -> learner.

One *transition* is one policy call: the observation, the denoising chain the policy sampled, its
log-prob and value, and the reward summed over the ``action_steps`` env steps the chunk executed.

Episode boundaries (the collector owns them, not the env):

* ``terminated``: the env ended the task inside the chunk (success) -> no bootstrap, the future
  is worth 0.
* time limit: the episode reached ``env.max_episode_steps`` inside the chunk -> ``done`` but not
  ``terminated``. The time limit is not part of the state the policy sees, so the learner
  bootstraps from V(s_final) (Pardo et al. 2018, "Time limits in RL"): the collector evaluates
  the critic on the observation after the last executed step and stores it as
  ``bootstrap_value`` (0 for terminated transitions, unused for non-final ones).
* Finished sub-envs of a vector env are masked: no policy call, no transition after ``done``.

Observations are stored as the adapter's ``prepare_obs`` tensors ("obs.<key>"), so the learner
re-scores exactly the inputs the actor's policy saw. Within a batch, each episode's transitions
are contiguous and in time order (GAE relies on it); ``concat`` keeps that and renumbers
episode ids, while ``group_id`` (task, initial state) is global so GRPO groups can span actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pirl_core.envs.base import ChunkResult, PirlVectorEnv
from pirl_core.recipe.actor_critic import ActorCritic

OBS_PREFIX = "obs."
GROUP_TASK_STRIDE = 1 << 32
"""group_id = task_id * GROUP_TASK_STRIDE + (init_state_id mod num_init_states)."""


@dataclass
class RolloutBatch:
    """N chunk-level transitions, episode-contiguous. All tensors on CPU, leading dim N."""

    obs: dict[str, Tensor]
    chain: Tensor  # (N, K+1, C, D) float
    sde_step: Tensor  # (N,) long
    logp: Tensor  # (N,) float, rollout log-prob (the PPO "old" log-prob)
    value: Tensor  # (N,) float, rollout V(s)
    reward: Tensor  # (N,) float, summed over the executed chunk
    done: Tensor  # (N,) bool, the episode ended inside this chunk
    terminated: Tensor  # (N,) bool, ended by the task (success), not by the time limit
    success: Tensor  # (N,) bool, success happened inside this chunk
    bootstrap_value: Tensor  # (N,) float, V(s_final) for time-limit ends, else 0
    episode_id: Tensor  # (N,) long, batch-local
    group_id: Tensor  # (N,) long, global (task, initial state)
    chunk_index: Tensor  # (N,) long, position of the chunk in its episode

    def __len__(self) -> int:
        return int(self.reward.shape[0])

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat name -> tensor dict (safetensors-ready: contiguous CPU tensors)."""
        out = {f"{OBS_PREFIX}{k}": v.contiguous() for k, v in self.obs.items()}
        for f in fields(self):
            if f.name != "obs":
                out[f.name] = getattr(self, f.name).contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> RolloutBatch:
        obs = {k[len(OBS_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OBS_PREFIX)}
        names = [f.name for f in fields(cls) if f.name != "obs"]
        missing = [n for n in names if n not in tensors]
        if missing:
            from pirl_core.errors import TransportError

            raise TransportError(
                f"rollout payload: fields {missing} missing (found {sorted(tensors)}); actor and learner "
                "run different pirl versions: start both from the same pirl checkout"
            )
        return cls(obs=obs, **{n: tensors[n] for n in names})

    def select(self, index: Tensor) -> RolloutBatch:
        """Rows ``index`` (a minibatch). Not episode-contiguous any more: only for the loss."""
        return RolloutBatch(
            obs={k: v[index] for k, v in self.obs.items()},
            **{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "obs"},
        )

    @property
    def num_episodes(self) -> int:
        return int(torch.unique(self.episode_id).numel())


def concat(batches: list[RolloutBatch]) -> RolloutBatch:
    """Join batches (e.g. from several actors or rounds); episode ids are renumbered so they stay
    unique, group ids are kept (they are global)."""
    if not batches:
        raise ValueError("concat needs at least one batch")
    offset = 0
    renumbered = []
    for b in batches:
        ep = b.episode_id
        if len(b):
            _, local = torch.unique(ep, return_inverse=True)
            ep = local + offset
            offset = int(ep.max()) + 1
        renumbered.append(ep)
    keys = batches[0].obs.keys()
    return RolloutBatch(
        obs={k: torch.cat([b.obs[k] for b in batches]) for k in keys},
        episode_id=torch.cat(renumbered),
        **{
            f.name: torch.cat([getattr(b, f.name) for b in batches])
            for f in fields(RolloutBatch)
            if f.name not in ("obs", "episode_id")
        },
    )


@dataclass(frozen=True)
class Progress:
    """Where a collection stands: episodes finished of those planned, env steps so far, and the
    env steps of the episodes still running (how far into the time limit they are)."""

    episodes_done: int
    episodes_planned: int
    env_steps: int
    elapsed_s: float
    running_steps: int = 0


@dataclass
class EpisodeStats:
    ret: float  # undiscounted episode return
    length: int  # env steps
    success: bool
    task_id: int
    init_state_id: int


def _to(obs: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in obs.items()}


def collect_rollouts(
    env: PirlVectorEnv,
    actor_critic: ActorCritic,
    init_state_ids: list[int],
    generator: torch.Generator,
    action_steps: int,
    deterministic: bool = False,
    *,
    render_slots: frozenset[int] = frozenset(),
    on_chunk: Callable[[ChunkResult, np.ndarray], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[RolloutBatch, list[EpisodeStats], dict[str, float]]:
    """Run one episode per entry of ``init_state_ids`` (in waves of ``env.num_envs``).

    All sampling randomness comes from ``generator``; with a deterministic env the result is a
    pure function of (parameters, init_state_ids, generator state). ``deterministic`` samples
    with the ODE (evaluation; logp is 0). Returns the batch, per-episode stats (in
    ``init_state_ids`` order) and timings: env_steps, chunks, inference_ms_per_chunk, env_ms,
    collect_s, and the wall-time split of :data:`TIME_PARTS` (``reset_s``, ``env_step_s``,
    ``render_s``, ``inference_s``; see :func:`time_breakdown`).

    Each chunk is one ``env.step_chunk``. ``render_slots`` names sub-envs rendered every step
    (evaluation videos); ``on_chunk(result, active)`` sees every chunk's result (the evaluator
    records per-step rewards and frames with it); ``on_progress`` gets a :class:`Progress` after
    every chunk (the actor reports it while a round runs).
    """
    if not init_state_ids:
        raise ValueError("collect_rollouts needs at least one init state id")
    started = time.perf_counter()
    adapter = actor_critic.adapter
    device = actor_critic.device
    n_envs = env.num_envs
    max_steps = env.max_episode_steps
    n_init = env.num_init_states()
    records: list[dict[str, Any]] = []
    stats: list[EpisodeStats] = []
    timing = {
        "env_steps": 0.0,
        "chunks": 0.0,
        "inference_ms": 0.0,
        "env_ms": 0.0,
        "reset_s": 0.0,
        "prep_s": 0.0,
    }
    counters_before = env.time_counters()

    for wave_start in range(0, len(init_state_ids), n_envs):
        wave = list(init_state_ids[wave_start : wave_start + n_envs])
        m = len(wave)
        # Unused sub-envs (a short last wave) are reset to a valid state and masked out.
        t0 = time.perf_counter()
        raw = env.reset(wave + [wave[-1]] * (n_envs - m))
        timing["reset_s"] += time.perf_counter() - t0
        task_ids = list(env.task_ids())
        active = np.zeros(n_envs, dtype=bool)
        active[:m] = True
        steps = np.zeros(n_envs, dtype=np.int64)
        ret = np.zeros(n_envs, dtype=np.float64)
        solved = np.zeros(n_envs, dtype=bool)
        chunk_index = 0
        while active.any():
            idx = np.flatnonzero(active)
            idx_t = torch.as_tensor(idx)
            t0 = time.perf_counter()
            obs = {k: v[idx_t] for k, v in adapter.prepare_obs(raw).items()}
            timing["prep_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            obs_dev = _to(obs, device)
            out = actor_critic.act(obs_dev, generator, deterministic=deterministic)
            env_actions = adapter.to_env_action(out.x0, obs_dev)
            timing["inference_ms"] += (time.perf_counter() - t0) * 1e3
            timing["chunks"] += 1
            n_exec = min(action_steps, env_actions.shape[1])
            full = np.zeros((n_envs, n_exec, env_actions.shape[2]), dtype=np.float32)
            full[idx] = env_actions[:, :n_exec]

            # One chunk step: each active sub-env executes its actions until the chunk ends, its
            # episode terminates or its time limit is reached; only the observation read next is
            # rendered (envs/base.py ``step_chunk``).
            limit = np.where(active, max_steps - steps, 0)
            t0 = time.perf_counter()
            res = env.step_chunk(full, limit, render_slots)
            timing["env_ms"] += (time.perf_counter() - t0) * 1e3
            raw = res.obs
            executed = np.where(active, np.asarray(res.executed, dtype=np.int64), 0)
            reward = np.where(active, np.asarray(res.reward, dtype=np.float64).sum(axis=1), 0.0)
            steps += executed
            timing["env_steps"] += float(executed.sum())
            succ = active & np.asarray(res.success, dtype=bool).any(axis=1)
            term = active & np.asarray(res.terminated, dtype=bool).any(axis=1)
            ended = term | (active & (steps >= max_steps))
            if on_chunk is not None:
                on_chunk(res, active)

            bootstrap = np.zeros(n_envs, dtype=np.float32)
            truncated = idx[(ended & ~term)[idx]]
            if truncated.size and actor_critic.value_head is not None and not deterministic:
                t0 = time.perf_counter()
                final_obs = {k: v[torch.as_tensor(truncated)] for k, v in adapter.prepare_obs(raw).items()}
                bootstrap[truncated] = (
                    actor_critic.value(_to(final_obs, device), generator).float().cpu().numpy()
                )
                timing["prep_s"] += time.perf_counter() - t0

            ret += reward
            solved |= succ
            records.append(
                {
                    "obs": {k: v.cpu() for k, v in obs.items()},
                    "chain": out.chain.cpu(),
                    "sde_step": out.sde_step.cpu(),
                    "logp": out.logp.float().cpu(),
                    "value": out.value.float().cpu(),
                    "reward": torch.as_tensor(reward[idx], dtype=torch.float32),
                    "done": torch.as_tensor(ended[idx]),
                    "terminated": torch.as_tensor(term[idx]),
                    "success": torch.as_tensor(succ[idx]),
                    "bootstrap_value": torch.as_tensor(bootstrap[idx]),
                    "episode_id": torch.as_tensor(wave_start + idx, dtype=torch.long),
                    "group_id": torch.as_tensor(
                        [task_ids[i] * GROUP_TASK_STRIDE + wave[i] % n_init for i in idx], dtype=torch.long
                    ),
                    "chunk_index": torch.full((idx.size,), chunk_index, dtype=torch.long),
                }
            )
            active &= ~ended
            chunk_index += 1
            if on_progress is not None:
                on_progress(
                    Progress(
                        episodes_done=len(stats) + int((~active[:m]).sum()),
                        episodes_planned=len(init_state_ids),
                        env_steps=int(timing["env_steps"]),
                        elapsed_s=time.perf_counter() - started,
                        running_steps=int(steps[active].sum()),
                    )
                )
        for i in range(m):
            stats.append(
                EpisodeStats(float(ret[i]), int(steps[i]), bool(solved[i]), int(task_ids[i]), int(wave[i]))
            )

    batch = _assemble(records)
    chunks = max(timing["chunks"], 1.0)
    step_wall_s = timing["env_ms"] / 1e3
    render_share = _render_share(counters_before, env.time_counters())
    info = {
        "env_steps": timing["env_steps"],
        "chunks": timing["chunks"],
        "inference_ms_per_chunk": timing["inference_ms"] / chunks,
        "env_ms": timing["env_ms"],
        "collect_s": time.perf_counter() - started,
        "reset_s": timing["reset_s"],
        "env_step_s": step_wall_s * (1.0 - render_share),
        "render_s": step_wall_s * render_share,
        "inference_s": timing["inference_ms"] / 1e3 + timing["prep_s"],
    }
    return batch, stats, info


TIME_PARTS = ("env_step", "render", "reset", "inference", "send", "idle")
"""Where an actor round's wall time goes; telemetry fields are ``time_<part>_s``."""


def _render_share(before: dict[str, float], after: dict[str, float]) -> float:
    """Fraction of the env's step time spent rendering (0 when the env does not measure it).
    With env workers the collector waits on several processes at once, so their summed render
    and step seconds give the share and the collector's own wall time the seconds."""
    step = after.get("step_s", 0.0) - before.get("step_s", 0.0)
    render = after.get("render_s", 0.0) - before.get("render_s", 0.0)
    return min(max(render / step, 0.0), 1.0) if step > 0 else 0.0


def time_breakdown(timing: dict[str, float], send_s: float, round_s: float) -> dict[str, float]:
    """One round's wall seconds by part (``time_<part>_s``, :data:`TIME_PARTS`).

    env_step and render: waiting for env steps (split by the simulators' own render clock);
    reset: waiting for resets; inference: observation preprocessing and policy/critic calls;
    send: shipping the payload; idle: the rest of the round (bookkeeping, batch assembly,
    waiting that no part claims). ``round_s`` is the actor's wall time for the whole round."""
    parts = {
        "time_env_step_s": float(timing.get("env_step_s", 0.0)),
        "time_render_s": float(timing.get("render_s", 0.0)),
        "time_reset_s": float(timing.get("reset_s", 0.0)),
        "time_inference_s": float(timing.get("inference_s", 0.0)),
        "time_send_s": float(send_s),
    }
    parts["time_idle_s"] = max(0.0, float(round_s) - sum(parts.values()))
    return parts


def _assemble(records: list[dict[str, Any]]) -> RolloutBatch:
    """Stack per-chunk records and order them episode-major (stable, so chunks keep time order)."""
    cols: dict[str, Tensor] = {}
    for name in records[0]:
        if name == "obs":
            continue
        cols[name] = torch.cat([r[name] for r in records])
    obs = {k: torch.cat([r["obs"][k] for r in records]) for k in records[0]["obs"]}
    order = torch.sort(cols["episode_id"], stable=True).indices
    return RolloutBatch(obs={k: v[order] for k, v in obs.items()}, **{k: v[order] for k, v in cols.items()})
