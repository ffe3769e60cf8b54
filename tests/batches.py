"""Synthetic rollout batches for tests and benchmarks: the episode bookkeeping they all share."""

from __future__ import annotations

import torch
from torch import Tensor

from pirl_core.rollout import RolloutBatch


def one_chunk_episodes(
    obs: dict[str, Tensor],
    chain: Tensor,
    sde_step: Tensor,
    logp: Tensor,
    value: Tensor,
    reward: Tensor,
    *,
    terminated: bool | Tensor = False,
    success: Tensor | None = None,
    group_size: int = 1,
) -> RolloutBatch:
    """``len(reward)`` episodes of one chunk each around the given sampled tensors: GRPO groups of
    ``group_size`` consecutive episodes (default: each its own), no success unless given, no
    bootstrap value, chunk index 0."""
    n = int(reward.shape[0])
    return RolloutBatch(
        obs=obs,
        chain=chain,
        sde_step=sde_step,
        logp=logp,
        value=value,
        reward=reward,
        done=torch.ones(n, dtype=torch.bool),
        terminated=terminated
        if isinstance(terminated, Tensor)
        else torch.full((n,), terminated, dtype=torch.bool),
        success=torch.zeros(n, dtype=torch.bool) if success is None else success,
        bootstrap_value=torch.zeros(n),
        episode_id=torch.arange(n),
        group_id=torch.arange(n) // group_size,
        chunk_index=torch.zeros(n, dtype=torch.long),
    )
