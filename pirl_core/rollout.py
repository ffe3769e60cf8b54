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

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pirl_core.envs.base import ChunkResult, PirlVectorEnv
from pirl_core.recipe.actor_critic import ActorCritic, ActOutput
from pirl_core.stopwatch import Stopwatch

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


def stack(batches: list[RolloutBatch]) -> RolloutBatch:
    """The rows of ``batches`` one after the other, every field as it is (ids not renumbered)."""
    return RolloutBatch(
        obs={k: torch.cat([b.obs[k] for b in batches]) for k in batches[0].obs},
        **{
            f.name: torch.cat([getattr(b, f.name) for b in batches])
            for f in fields(RolloutBatch)
            if f.name != "obs"
        },
    )


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
        renumbered.append(replace(b, episode_id=ep))
    return stack(renumbered)


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
    collection = _Collection(env, actor_critic, generator, action_steps, deterministic, len(init_state_ids))
    counters_before = env.time_counters()
    for start in range(0, len(init_state_ids), env.num_envs):
        wave = list(init_state_ids[start : start + env.num_envs])
        collection.run_wave(start, wave, render_slots, on_chunk, on_progress)
    chunks = stack(collection.chunks)
    # episode-major, stable: each episode's chunks stay in time order
    batch = chunks.select(torch.sort(chunks.episode_id, stable=True).indices)
    return batch, collection.stats, collection.timing(counters_before, env.time_counters())


@dataclass
class _Wave:
    """The sub-envs of one wave: slot i < ``len(ids)`` runs init state ``ids[i]``; the others
    (a short last wave) are reset to a valid state and masked out from the start."""

    start: int  # position of ids[0] in the collection (its batch-local episode id)
    ids: list[int]
    group_ids: Tensor  # (len(ids),) global (task, initial state)
    task_ids: list[int]
    active: np.ndarray
    steps: np.ndarray
    ret: np.ndarray
    solved: np.ndarray
    chunk_index: int = 0

    @classmethod
    def reset(cls, start: int, ids: list[int], task_ids: list[int], n_envs: int, n_init: int) -> _Wave:
        active = np.zeros(n_envs, dtype=bool)
        active[: len(ids)] = True
        groups = [task_ids[i] * GROUP_TASK_STRIDE + g % n_init for i, g in enumerate(ids)]
        return cls(
            start,
            ids,
            torch.as_tensor(groups, dtype=torch.long),
            task_ids,
            active,
            steps=np.zeros(n_envs, dtype=np.int64),
            ret=np.zeros(n_envs, dtype=np.float64),
            solved=np.zeros(n_envs, dtype=bool),
        )

    def episode_stats(self) -> list[EpisodeStats]:
        return [
            EpisodeStats(
                float(self.ret[i]), int(self.steps[i]), bool(self.solved[i]), int(self.task_ids[i]), int(g)
            )
            for i, g in enumerate(self.ids)
        ]


class _Collection:
    """One ``collect_rollouts`` call: the chunks and episode stats gathered so far, and where its
    time went (:class:`~pirl_core.stopwatch.Stopwatch` parts ``reset``, ``prep`` (observation
    preprocessing, bootstrap values), ``inference`` (policy call and action decoding), ``env``)."""

    def __init__(
        self,
        env: PirlVectorEnv,
        actor_critic: ActorCritic,
        generator: torch.Generator,
        action_steps: int,
        deterministic: bool,
        planned: int,
    ) -> None:
        self.watch = Stopwatch()
        self.env = env
        self.actor_critic = actor_critic
        self.generator = generator
        self.action_steps = action_steps
        self.deterministic = deterministic
        self.planned = planned
        self.n_init = env.num_init_states()
        self.chunks: list[RolloutBatch] = []
        self.stats: list[EpisodeStats] = []
        self.env_steps = 0

    def run_wave(
        self,
        start: int,
        ids: list[int],
        render_slots: frozenset[int],
        on_chunk: Callable[[ChunkResult, np.ndarray], None] | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        env = self.env
        with self.watch("reset"):
            raw = env.reset(ids + [ids[-1]] * (env.num_envs - len(ids)))
        wave = _Wave.reset(start, ids, list(env.task_ids()), env.num_envs, self.n_init)
        while wave.active.any():
            raw = self._chunk(raw, wave, render_slots, on_chunk)
            if on_progress is not None:
                on_progress(self._progress(wave))
        self.stats.extend(wave.episode_stats())

    def _progress(self, wave: _Wave) -> Progress:
        return Progress(
            episodes_done=len(self.stats) + int((~wave.active[: len(wave.ids)]).sum()),
            episodes_planned=self.planned,
            env_steps=self.env_steps,
            elapsed_s=self.watch.elapsed(),
            running_steps=int(wave.steps[wave.active].sum()),
        )

    def _chunk(
        self,
        raw: Any,
        wave: _Wave,
        render_slots: frozenset[int],
        on_chunk: Callable[[ChunkResult, np.ndarray], None] | None,
    ) -> Any:
        """One policy call for the active sub-envs and one ``env.step_chunk``: each active
        sub-env executes its actions until the chunk ends, its episode terminates or its time
        limit is reached; only the observation read next is rendered (envs/base.py
        ``step_chunk``). Records the chunk's transitions; returns the next raw observation."""
        n_envs, max_steps = self.env.num_envs, self.env.max_episode_steps
        active = wave.active
        idx = np.flatnonzero(active)
        obs, out, full = self._act(raw, idx)
        with self.watch("env"):
            res = self.env.step_chunk(full, np.where(active, max_steps - wave.steps, 0), render_slots)
        executed = np.where(active, np.asarray(res.executed, dtype=np.int64), 0)
        reward = np.where(active, np.asarray(res.reward, dtype=np.float64).sum(axis=1), 0.0)
        wave.steps += executed
        self.env_steps += int(executed.sum())
        succ = active & np.asarray(res.success, dtype=bool).any(axis=1)
        term = active & np.asarray(res.terminated, dtype=bool).any(axis=1)
        ended = term | (active & (wave.steps >= max_steps))
        if on_chunk is not None:
            on_chunk(res, active)
        bootstrap = self._bootstrap(res.obs, idx[(ended & ~term)[idx]], n_envs)
        wave.ret += reward
        wave.solved |= succ
        self.chunks.append(
            RolloutBatch(
                obs={k: v.cpu() for k, v in obs.items()},
                chain=out.chain.cpu(),
                sde_step=out.sde_step.cpu(),
                logp=out.logp.float().cpu(),
                value=out.value.float().cpu(),
                reward=torch.as_tensor(reward[idx], dtype=torch.float32),
                done=torch.as_tensor(ended[idx]),
                terminated=torch.as_tensor(term[idx]),
                success=torch.as_tensor(succ[idx]),
                bootstrap_value=torch.as_tensor(bootstrap[idx]),
                episode_id=torch.as_tensor(wave.start + idx, dtype=torch.long),
                group_id=wave.group_ids[torch.as_tensor(idx)],
                chunk_index=torch.full((idx.size,), wave.chunk_index, dtype=torch.long),
            )
        )
        wave.active &= ~ended
        wave.chunk_index += 1
        return res.obs

    def _act(self, raw: Any, idx: np.ndarray) -> tuple[dict[str, Tensor], ActOutput, np.ndarray]:
        """The policy's chunk for the sub-envs ``idx``: their prepared observations (CPU), the
        sampled chain, and every sub-env's actions for the steps to execute (0 for the others)."""
        adapter = self.actor_critic.adapter
        with self.watch("prep"):
            obs = {k: v[torch.as_tensor(idx)] for k, v in adapter.prepare_obs(raw).items()}
        with self.watch("inference"):
            obs_dev = _to(obs, self.actor_critic.device)
            out = self.actor_critic.act(obs_dev, self.generator, deterministic=self.deterministic)
            env_actions = adapter.to_env_action(out.x0, obs_dev)
        n_exec = min(self.action_steps, env_actions.shape[1])
        full = np.zeros((self.env.num_envs, n_exec, env_actions.shape[2]), dtype=np.float32)
        full[idx] = env_actions[:, :n_exec]
        return obs, out, full

    def _bootstrap(self, raw: Any, truncated: np.ndarray, n_envs: int) -> np.ndarray:
        """V(s_final) for the sub-envs whose episode hit the time limit (0 elsewhere, and when
        there is no critic or the sampling is deterministic)."""
        bootstrap = np.zeros(n_envs, dtype=np.float32)
        ac = self.actor_critic
        if truncated.size and ac.value_head is not None and not self.deterministic:
            with self.watch("prep"):
                final_obs = {k: v[torch.as_tensor(truncated)] for k, v in ac.adapter.prepare_obs(raw).items()}
                bootstrap[truncated] = (
                    ac.value(_to(final_obs, ac.device), self.generator).float().cpu().numpy()
                )
        return bootstrap

    def timing(self, before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """``collect_rollouts``'s timings (see its docstring)."""
        seconds = self.watch.seconds
        chunks = float(len(self.chunks))
        render_share = _render_share(before, after)
        return {
            "env_steps": float(self.env_steps),
            "chunks": chunks,
            "inference_ms_per_chunk": seconds["inference"] * 1e3 / max(chunks, 1.0),
            "env_ms": seconds["env"] * 1e3,
            "collect_s": self.watch.elapsed(),
            "reset_s": seconds["reset"],
            "env_step_s": seconds["env"] * (1.0 - render_share),
            "render_s": seconds["env"] * render_share,
            "inference_s": seconds["inference"] + seconds["prep"],
        }


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
