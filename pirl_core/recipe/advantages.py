"""Advantage estimators: GAE over chunk steps (PPO) and group-normalised returns (GRPO).

Both read an episode-contiguous :class:`~pirl_core.rollout.RolloutBatch`-style layout: flat (N,)
tensors where each episode's transitions are consecutive and in time order, and the last one of
every episode has ``done`` set.
"""

from __future__ import annotations

import torch
from torch import Tensor

GRPO_STD_EPS = 1e-6
GRPO_FILTER_RANGE = (0.1, 0.9)
"""Groups whose mean episode success lies outside this closed interval are dropped (RLinf's
LIBERO GRPO filter); for groups of up to 10 episodes it drops exactly the all-fail/all-success
groups."""


def gae(
    reward: Tensor,
    value: Tensor,
    done: Tensor,
    bootstrap_value: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over chunk-level transitions.

    delta_i = r_i + gamma * V_next_i - V_i with V_next_i = V_{i+1} inside an episode and
    ``bootstrap_value_i`` at its last transition (0 after termination, V(s_final) after a time
    limit); A_i = delta_i + gamma * lam * A_{i+1} inside an episode. Returns (advantages,
    returns = advantages + values), both (N,) float32.
    """
    n = reward.shape[0]
    reward, value, boot = reward.double(), value.double(), bootstrap_value.double()
    done = done.bool()
    adv = torch.zeros(n, dtype=torch.float64)
    running = 0.0
    for i in range(n - 1, -1, -1):
        if bool(done[i]):
            next_value, running = float(boot[i]), 0.0
        else:
            next_value = float(value[i + 1])
        delta = float(reward[i]) + gamma * next_value - float(value[i])
        running = delta + gamma * lam * running
        adv[i] = running
    return adv.float(), (adv + value).float()


def episode_returns(reward: Tensor, episode_id: Tensor) -> tuple[Tensor, Tensor]:
    """Undiscounted return per episode: (unique episode ids, returns), ids ascending."""
    ids, inverse = torch.unique(episode_id, return_inverse=True)
    totals = torch.zeros(ids.shape[0], dtype=torch.float64).index_add_(0, inverse, reward.double())
    return ids, totals


def grpo_advantages(
    reward: Tensor,
    episode_id: Tensor,
    group_id: Tensor,
    success: Tensor,
    filter_groups: bool,
    keep_range: tuple[float, float] = GRPO_FILTER_RANGE,
) -> tuple[Tensor, Tensor]:
    """GRPO: every transition of an episode gets its episode's group-normalised return.

    A_e = (R_e - mean_g R) / (std_g R + 1e-6) over the episodes of its group g (std with Bessel's
    correction, as torch.std). With ``filter_groups``, groups whose mean episode success lies
    outside ``keep_range`` (closed; default [0.1, 0.9]) are dropped: all-fail and all-success
    groups carry no ranking signal, only noise in the loss mean.
    Returns (advantages (N,), keep mask (N,) bool).
    """
    ep_ids, ep_inverse = torch.unique(episode_id, return_inverse=True)
    n_ep = ep_ids.shape[0]
    ep_return = torch.zeros(n_ep, dtype=torch.float64).index_add_(0, ep_inverse, reward.double())
    ep_success = torch.zeros(n_ep, dtype=torch.bool)
    ep_success[ep_inverse[success.bool()]] = True
    ep_group = torch.zeros(n_ep, dtype=torch.long)
    ep_group[ep_inverse] = group_id.long()

    ep_adv = torch.zeros(n_ep, dtype=torch.float64)
    ep_keep = torch.ones(n_ep, dtype=torch.bool)
    for g in torch.unique(ep_group):
        members = ep_group == g
        r = ep_return[members]
        std = r.std() if r.numel() > 1 else torch.zeros((), dtype=torch.float64)
        ep_adv[members] = (r - r.mean()) / (std + GRPO_STD_EPS)
        rate = ep_success[members].double().mean()
        if filter_groups and not (keep_range[0] <= float(rate) <= keep_range[1]):
            ep_keep[members] = False
    return ep_adv[ep_inverse].float(), ep_keep[ep_inverse]


def success_advantages(episode_id: Tensor, success: Tensor) -> Tensor:
    """Filtered behaviour cloning (``recipe.advantage_mode = "success_only"``): 1.0 on every
    transition of an episode that succeeded (its ``success`` flag set on any transition), 0.0
    elsewhere, (N,) float32. Through the clipped surrogate this maximises the likelihood of the
    successful chunks only, a control with no critic, baseline or normalisation in it."""
    _, inverse = torch.unique(episode_id, return_inverse=True)
    ep_success = torch.zeros(int(inverse.max()) + 1 if inverse.numel() else 0, dtype=torch.bool)
    ep_success[inverse[success.bool()]] = True
    return ep_success[inverse].float()


def episode_weights(episode_id: Tensor, keep: Tensor) -> Tensor:
    """Per-transition weights (N,) under which every kept episode counts once in a mean over kept
    transitions: 1 / (episode length) scaled so the kept weights average 1 (dropped rows get 0).

    Scaling a transition's advantage by its weight turns the transition-mean surrogate into an
    episode-mean one (the clipped surrogate is positively homogeneous in the advantage), so
    GRPO's group-normalised advantages, which sum to zero over a group's episodes, also sum to
    zero over its transitions whatever the episode lengths."""
    _, inverse, lengths = torch.unique(episode_id, return_inverse=True, return_counts=True)
    weights = torch.zeros(episode_id.shape[0], dtype=torch.float64)
    kept = keep.bool()
    if not bool(kept.any()):
        return weights.float()
    raw = 1.0 / lengths[inverse].double()
    weights[kept] = raw[kept] / raw[kept].mean()
    return weights.float()


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """1 - Var(target - predicted) / Var(target); nan when the target has no variance."""
    var = target.double().var(unbiased=False)
    if float(var) == 0.0:
        return float("nan")
    return float(1.0 - (target.double() - predicted.double()).var(unbiased=False) / var)
