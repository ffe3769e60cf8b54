"""The trainer's :class:`pirl_core.recipe.reducer.Reducer` under ``torchrun``: collectives.

Every rank runs the same update on the same broadcast batch and minibatch order, and evaluates
only its contiguous shard of each minibatch. Loss terms are minibatch means, so a shard's loss is
weighted by its share of the global minibatch; DDP and FSDP average gradients over ranks, so the
weight is multiplied by the world size (``grad_scale``) and the averaged gradient equals the
one-process gradient up to float summation order. The statistics that decide something (approx_kl
for the early stop, the ratio check, the loss finiteness, the log-prob mismatch bound) are
all-reduced before any rank decides, so every rank takes the same branch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pirl_core.distributed.group import ProcessGroup


class CollectiveReducer:
    """DDP replicas: one forward per minibatch per rank (an empty shard still joins the reduction),
    gradients all-reduced by the backward of the minibatch's last chunk."""

    def __init__(self, group: ProcessGroup, module: nn.Module) -> None:
        self.group = group
        self.module = module  # the DDP/FSDP-wrapped forward the trainer calls
        self.grad_scale = float(group.world_size)

    def shard(self, index: Tensor) -> Tensor:
        """This rank's contiguous part of a minibatch (sizes differ by at most one row)."""
        return index.tensor_split(self.group.world_size)[self.group.rank]

    def forwards(self, index: Tensor, micro_batch_size: int) -> int:
        return 1

    def syncing(self, sync: bool) -> AbstractContextManager[None]:
        return contextlib.nullcontext() if sync else self.module.no_sync()

    def reduce(self, sums: Mapping[str, float], maxima: Mapping[str, float]) -> dict[str, float]:
        """Sum the weighted statistics and take the maximum of the others, over all ranks."""
        device = self.group.device()
        out: dict[str, float] = {}
        for values, op in ((sums, dist.ReduceOp.SUM), (maxima, dist.ReduceOp.MAX)):
            if not values:
                continue
            t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=op)
            out.update(zip(values, t.cpu().tolist(), strict=True))
        return out

    def reduce_rows(self, rows: Tensor) -> Tensor:
        t = rows.to(self.group.device(), torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to("cpu", rows.dtype)

    def gather_cat(self, tensor: Tensor) -> Tensor:
        parts: list[Any] = [None] * self.group.world_size
        dist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)

    def norm(self, norm: Tensor) -> float:
        return float(norm)


class ShardedReducer(CollectiveReducer):
    """FSDP shards: every forward all-gathers the parameters, so every rank runs the busiest rank's
    number of forwards per minibatch; gradients accumulate unsharded and the minibatch's last
    backward reduce-scatters them; a gradient norm is a DTensor already reduced over the shards."""

    def forwards(self, index: Tensor, micro_batch_size: int) -> int:
        rows = [part.numel() for part in index.tensor_split(self.group.world_size)]
        if micro_batch_size <= 0:
            return 1
        return max(1, *(math.ceil(n / micro_batch_size) for n in rows))

    def syncing(self, sync: bool) -> AbstractContextManager[None]:
        return self._gradient_sync(sync)

    @contextlib.contextmanager
    def _gradient_sync(self, sync: bool) -> Iterator[None]:
        self.module.set_requires_gradient_sync(sync)
        yield

    def norm(self, norm: Tensor) -> float:
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
