"""Where the update's numbers meet across processes: the trainer's one boundary to distribution.

Why a small object instead of ``if distributed`` branches: the PPO update is the same algorithm in
one process and under ``torchrun`` (RLinf keeps FSDP in the worker and the algorithm ignorant of
it). Everything that differs is the answer to six questions, asked by :class:`PolicyTrainer` at
fixed points of every minibatch: which rows of a minibatch are mine (:meth:`Reducer.shard`), how
many forwards every process runs (:meth:`Reducer.forwards`), how a shard's loss is scaled
(``grad_scale``), whether a forward's backward reduces gradients (:meth:`Reducer.syncing`), and
how statistics, re-scored rows, log-prob differences and gradient norms are combined
(:meth:`Reducer.reduce`, :meth:`Reducer.reduce_rows`, :meth:`Reducer.gather_cat`,
:meth:`Reducer.norm`). :class:`LocalReducer` answers them for one process (identity everywhere);
``pirl_core.distributed.reducer.CollectiveReducer`` answers them with collectives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

from torch import Tensor


class Reducer(Protocol):
    """What the trainer asks of its process group (see the module docstring)."""

    grad_scale: float
    """Multiplier of every shard's loss: shard weights are shares of the *global* minibatch, and
    DDP/FSDP average (not sum) gradients over ranks."""

    def shard(self, index: Tensor) -> Tensor:
        """This process's rows of a minibatch (possibly none)."""
        ...

    def forwards(self, index: Tensor, micro_batch_size: int) -> int:
        """How many forwards every process runs on this minibatch (fewer chunks pad with weight 0)."""
        ...

    def syncing(self, sync: bool) -> AbstractContextManager[None]:
        """Around a forward: its backward reduces gradients (``sync``) or only accumulates them."""
        ...

    def reduce(self, sums: Mapping[str, float], maxima: Mapping[str, float]) -> dict[str, float]:
        """Weighted sums added and maxima taken over all processes (one dict, both kinds)."""
        ...

    def reduce_rows(self, rows: Tensor) -> Tensor:
        """Rows computed by exactly one process each (zeros elsewhere), summed into the full tensor."""
        ...

    def gather_cat(self, tensor: Tensor) -> Tensor:
        """Every process's tensor, concatenated in rank order."""
        ...

    def norm(self, norm: Tensor) -> float:
        """A gradient norm from ``clip_grad_norm_`` as the global number."""
        ...


class LocalReducer:
    """One process: every row is mine, one forward per chunk, nothing to combine."""

    grad_scale = 1.0

    def shard(self, index: Tensor) -> Tensor:
        return index

    def forwards(self, index: Tensor, micro_batch_size: int) -> int:
        return 1

    def syncing(self, sync: bool) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def reduce(self, sums: Mapping[str, float], maxima: Mapping[str, float]) -> dict[str, float]:
        return {**sums, **maxima}

    def reduce_rows(self, rows: Tensor) -> Tensor:
        return rows

    def gather_cat(self, tensor: Tensor) -> Tensor:
        return tensor

    def norm(self, norm: Tensor) -> float:
        return float(norm)
