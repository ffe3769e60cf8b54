"""What a rollout must look like to this learner; anything else is rejected for that request.

The checks run in the RPC handler (:class:`~pirl_core.transport.collector.RolloutCollector`),
before a payload reaches the learner's queue, so a wrong request costs the sender an
``INVALID_ARGUMENT`` and the learner nothing. Header: ``version`` (int in [0, newest published];
an older one is well-formed and left to the learner's staleness rule), ``actor_id`` (int in
``[0, actor.n_actors)``), ``round`` (int >= 0), ``episodes`` (int >= 1), ``learner_epoch`` (str, optional) and ``stats`` (one dict
per episode with numeric ``return`` and ``success``). Tensors: every ``RolloutBatch`` field with
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

from pirl_core.errors import TransportError
from pirl_core.rollout import OBS_PREFIX, RolloutBatch

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


def _reject(message: str) -> TransportError:
    return TransportError(f"rollout rejected: {message}")


def header_int(header: dict[str, Any], key: str, minimum: int, maximum: int | None = None) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _reject(f"header {key!r}: got {value!r} ({type(value).__name__}), expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise _reject(f"header {key!r}: got {value}, expected {bound}")
    return value


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
        header_int(header, "version", 0, latest)
        header_int(header, "actor_id", 0, self.n_actors - 1)
        header_int(header, "round", 0)
        episodes = header_int(header, "episodes", 1)
        epoch = header.get("learner_epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise _reject(f"header 'learner_epoch': got {epoch!r}, expected a string")
        stats = header.get("stats")
        if not isinstance(stats, list) or len(stats) != episodes:
            raise _reject(f"header 'stats': expected a list of {episodes} episode records, got {stats!r:.80}")
        for record in stats:
            if not isinstance(record, dict) or not all(
                isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)
                for k in ("return", "success")
            ):
                raise _reject(
                    f"header 'stats': each record needs numeric 'return' and 'success', got {record!r:.80}"
                )
        n = self._check_fields(tensors)
        found = int(torch.unique(tensors["episode_id"]).numel())
        if found != episodes:
            raise _reject(f"header says {episodes} episodes, tensors hold {found} (episode_id)")
        self._check_obs(tensors, n)

    def _check_fields(self, tensors: dict[str, torch.Tensor]) -> int:
        missing = sorted(set(_FIELD_DTYPES) - set(tensors))
        if missing:
            raise _reject(
                f"tensors {missing} missing (found {sorted(tensors)}); start actor and learner from the "
                "same pirl checkout"
            )
        n = tensors["reward"].shape[0] if tensors["reward"].dim() == 1 else -1
        if n < 1:
            raise _reject(f"'reward' has shape {list(tensors['reward'].shape)}, expected (N,) with N >= 1")
        for name, dtypes in _FIELD_DTYPES.items():
            t = tensors[name]
            if t.dtype not in dtypes:
                raise _reject(f"tensor {name!r}: dtype {t.dtype}, expected {' or '.join(map(str, dtypes))}")
            expected = (n, *self.chain_shape) if name == "chain" else (n,)
            if tuple(t.shape) != expected:
                raise _reject(f"tensor {name!r}: shape {list(t.shape)}, expected {list(expected)}")
        return n

    def _check_obs(self, tensors: dict[str, torch.Tensor], n: int) -> None:
        obs = {k: (t.dtype, tuple(t.shape[1:])) for k, t in tensors.items() if k.startswith(OBS_PREFIX)}
        extra = sorted(set(tensors) - set(_FIELD_DTYPES) - set(obs))
        if extra:
            raise _reject(f"unexpected tensors {extra}")
        if not obs:
            raise _reject("no observation tensors ('obs.*')")
        for key, t in tensors.items():
            if key in obs and (t.dim() == 0 or t.shape[0] != n):
                raise _reject(f"tensor {key!r}: shape {list(t.shape)}, expected leading length {n}")
        with self._lock:
            if self._obs is None:
                self._obs = obs
            elif obs != self._obs:
                raise _reject(f"observations {_describe(obs)} differ from this run's {_describe(self._obs)}")


def _describe(obs: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> str:
    return (
        "{"
        + ", ".join(f"{k}: {str(d).removeprefix('torch.')}{list(s)}" for k, (d, s) in sorted(obs.items()))
        + "}"
    )
