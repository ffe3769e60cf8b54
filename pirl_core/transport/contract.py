"""What a rollout must look like to this learner; anything else is rejected for that request.

The checks run in the RPC handler (:class:`~pirl_core.transport.collector.RolloutCollector`),
before a payload reaches the learner's queue, so a wrong request costs the sender an
``INVALID_ARGUMENT`` and the learner nothing. Header: a
:class:`~pirl_core.transport.round_header.RoundHeader` (``version`` at most the newest published,
``actor_id`` below ``actor.n_actors``; its ``from_wire`` names every rule). Tensors: every ``RolloutBatch`` field with
its dtype, one leading length N >= 1, ``chain`` of shape (N, K+1, chunk, action_dim), and the
observation keys/shapes/dtypes of the first accepted rollout (every actor runs the same
handshake-checked policy, so they all send the same).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch

from pirl_core.rollout import OBS_PREFIX, RolloutBatch
from pirl_core.transport.round_header import RoundHeader, reject

_INT = (torch.int64,)
_FLOAT32 = (torch.float32,)
_BOOL = (torch.bool,)
_FIELD_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "chain": (torch.float32, torch.float16, torch.bfloat16, torch.float64),
    "sde_step": _INT,
    "logp": _FLOAT32,
    "value": _FLOAT32,
    "reward": _FLOAT32,
    "done": _BOOL,
    "terminated": _BOOL,
    "success": _BOOL,
    "bootstrap_value": _FLOAT32,
    "episode_id": _INT,
    "group_id": _INT,
    "chunk_index": _INT,
}
assert set(_FIELD_DTYPES) == {f.name for f in fields(RolloutBatch)} - {"obs"}


class RolloutContract:
    """Callable check for :class:`RolloutCollector`; raises TransportError naming what is wrong."""

    def __init__(
        self, n_actors: int, chain_shape: tuple[int, int, int], published: Callable[[], int] | None = None
    ) -> None:
        self.n_actors = n_actors
        # the newest version the learner has published: no honest actor can be ahead of it
        self.published = published
        self.chain_shape = tuple(chain_shape)
        self._obs: dict[str, tuple[torch.dtype, tuple[int, ...]]] | None = None
        self._lock = threading.Lock()

    def __call__(self, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        latest = None if self.published is None else self.published()
        episodes = RoundHeader.from_wire(header, latest_version=latest, n_actors=self.n_actors).episodes
        n = self._check_fields(tensors)
        found = int(torch.unique(tensors["episode_id"]).numel())
        if found != episodes:
            raise reject(f"header says {episodes} episodes, tensors hold {found} (episode_id)")
        self._check_obs(tensors, n)

    def _check_fields(self, tensors: dict[str, torch.Tensor]) -> int:
        missing = sorted(set(_FIELD_DTYPES) - set(tensors))
        if missing:
            raise reject(
                f"tensors {missing} missing (found {sorted(tensors)}); start actor and learner from the "
                "same pirl checkout"
            )
        n = tensors["reward"].shape[0] if tensors["reward"].dim() == 1 else -1
        if n < 1:
            raise reject(f"'reward' has shape {list(tensors['reward'].shape)}, expected (N,) with N >= 1")
        for name, dtypes in _FIELD_DTYPES.items():
            t = tensors[name]
            if t.dtype not in dtypes:
                raise reject(f"tensor {name!r}: dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}")
            expected = (n, *self.chain_shape) if name == "chain" else (n,)
            if tuple(t.shape) != expected:
                raise reject(f"tensor {name!r}: shape {list(t.shape)}, expected {list(expected)}")
        return n

    def _check_obs(self, tensors: dict[str, torch.Tensor], n: int) -> None:
        obs = {k: (t.dtype, tuple(t.shape[1:])) for k, t in tensors.items() if k.startswith(OBS_PREFIX)}
        extra = sorted(set(tensors) - set(_FIELD_DTYPES) - set(obs))
        if extra:
            raise reject(f"unexpected tensors {extra}")
        if not obs:
            raise reject("no observation tensors ('obs.*')")
        for key, t in tensors.items():
            if key in obs and (t.dim() == 0 or t.shape[0] != n):
                raise reject(f"tensor {key!r}: shape {list(t.shape)}, expected leading length {n}")
        with self._lock:
            if self._obs is None:
                self._obs = obs
            elif obs != self._obs:
                raise reject(f"observations {_describe(obs)} differ from this run's {_describe(self._obs)}")


def _describe(obs: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> str:
    return (
        "{"
        + ", ".join(f"{k}: {str(d).removeprefix('torch.')}{list(s)}" for k, (d, s) in sorted(obs.items()))
        + "}"
    )
