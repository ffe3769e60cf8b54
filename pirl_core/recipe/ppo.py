"""The PPO / GRPO loss, top to bottom (CleanRL style).

GRPO uses the same clipped surrogate with group-normalised advantages and no critic term.
The log-probs are chain log-likelihoods from the sampler (all K transitions for Flow-Noise, the
one stochastic step for Flow-SDE); the loss does not care which. They are (B,) in
``recipe.ratio_mode = "chunk"`` (one ratio per transition) or (B, E) in "element" mode (one ratio
per executed chunk step x action dim, each transition's advantage shared by its elements): the
surrogate, approx_kl and clip_frac are then means over all elements (a token-mean; every
transition has the same E, so it equals the mean over transitions of per-transition means).
``clip`` may be a (B,) tensor (``recipe.clip_per_denoise_step``: one clip per transition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

VALUE_COEF = 0.5
"""Weight of the value loss in the summed loss. Only matters when the critic shares trainable
inputs with the policy (``recipe.critic_detach = false``): each parameter group has its own
AdamW, which is invariant to a constant loss scale."""


@dataclass
class LossOutput:
    loss: Tensor  # scalar to backpropagate
    policy_loss: Tensor
    value_loss: Tensor
    entropy: Tensor
    approx_kl: Tensor
    clip_frac: Tensor
    ratio: Tensor  # (B,) detached, for the ratio-equals-one check


def ppo_loss(
    new_logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    entropy: Tensor,
    clip: float | Tensor,
    entropy_coef: float,
    new_value: Tensor | None = None,
    old_value: Tensor | None = None,
    returns: Tensor | None = None,
    value_clip: float = 0.2,
) -> LossOutput:
    """Clipped surrogate + clipped value loss - entropy bonus. Pass ``new_value=None`` for GRPO."""
    # Probability ratio of the new policy to the rollout policy, per transition (or element).
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    if new_logp.dim() > 1:  # element ratios: each transition's advantage (and clip) per element
        advantages = advantages.unsqueeze(-1)
    if isinstance(clip, Tensor) and clip.dim() < ratio.dim():
        clip = clip.reshape(clip.shape + (1,) * (ratio.dim() - clip.dim()))

    # Clipped surrogate: pessimistic (max of the two losses) so the update gains nothing by
    # moving the ratio outside [1 - clip, 1 + clip] in the advantage's favour.
    pg_loss_unclipped = -advantages * ratio
    pg_loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)  # type: ignore[arg-type]
    policy_loss = torch.max(pg_loss_unclipped, pg_loss_clipped).mean()

    # Clipped value loss: the new value may move at most value_clip from the rollout's value
    # before the clipped branch (which has no gradient past the bound) takes over.
    if new_value is not None:
        assert old_value is not None and returns is not None
        v_clipped = old_value + torch.clamp(new_value - old_value, -value_clip, value_clip)
        v_loss_unclipped = (new_value - returns) ** 2
        v_loss_clipped = (v_clipped - returns) ** 2
        value_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        value_loss = torch.zeros((), device=new_logp.device)

    # Entropy bonus (meaningful for Flow-Noise, whose sigma is learned).
    entropy_mean = entropy.mean()
    loss = policy_loss + VALUE_COEF * value_loss - entropy_coef * entropy_mean

    with torch.no_grad():
        # k3 estimator of KL(old || new): unbiased, always >= 0 (Schulman, "Approximating KL").
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_frac = ((ratio - 1.0).abs() > clip).float().mean()
    return LossOutput(loss, policy_loss, value_loss, entropy_mean, approx_kl, clip_frac, ratio.detach())
