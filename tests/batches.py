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
    terminated: bool = False,
) -> RolloutBatch:
    """``len(reward)`` episodes of one chunk each (each its own GRPO group), around the given
    sampled tensors: no success, no bootstrap value, chunk index 0."""
    n = int(reward.shape[0])
    return RolloutBatch(
        obs=obs,
        chain=chain,
        sde_step=sde_step,
        logp=logp,
        value=value,
        reward=reward,
        done=torch.ones(n, dtype=torch.bool),
        terminated=torch.full((n,), terminated, dtype=torch.bool),
        success=torch.zeros(n, dtype=torch.bool),
        bootstrap_value=torch.zeros(n),
        episode_id=torch.arange(n),
        group_id=torch.arange(n),
        chunk_index=torch.zeros(n, dtype=torch.long),
    )
