"""The two RL-only heads the recipe adds on top of a policy: a critic and (Flow-Noise) a
learnable noise scale. Both are plain MLPs on features the adapter exposes, so they work for any
policy family; both are dropped after fine-tuning (evaluation samples with the ODE)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

VALUE_HIDDEN: tuple[int, ...] = (512, 256, 128)
"""Critic widths. The PI-RL paper found a 4-layer critic clearly better than a linear one."""
NOISE_HIDDEN: tuple[int, ...] = (128, 64)
"""Noise-head widths, as in the reference implementation (tanh activations)."""


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class ValueHead(nn.Module):
    """V(s) from the adapter's critic features (pooled VLM output or action-head output).

    The last layer starts at zero so that initial values are 0 and the first GAE targets are
    just discounted rewards, instead of noise from a random projection."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = VALUE_HIDDEN) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, 1, nn.GELU)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)


class NoiseHead(nn.Module):
    """Flow-Noise's per-channel std sigma_phi(features at (x_t, t), t), bounded in [sigma_min, sigma_max].

    The head reads the adapter's per-horizon-token features (already a function of x_t and t) plus
    t itself, and outputs a log-variance per action dim squashed into [log sigma_min^2,
    log sigma_max^2] with a sigmoid. Bounding keeps exploration alive (sigma >= sigma_min) and the
    likelihood ratio well conditioned (sigma <= sigma_max). The last layer starts at zero, i.e. at
    the middle of the log-variance range.
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        sigma_min: float,
        sigma_max: float,
        hidden: Sequence[int] = NOISE_HIDDEN,
    ) -> None:
        super().__init__()
        self.net = mlp(feature_dim + 1, hidden, action_dim, nn.Tanh)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.logvar_min = 2.0 * math.log(sigma_min)
        self.logvar_max = 2.0 * math.log(sigma_max)

    def forward(self, features: Tensor, t: Tensor) -> Tensor:
        """features (B, C, F), t (B,) -> std (B, C, D)."""
        t_tok = t.to(features.dtype).reshape(-1, 1, 1).expand(features.shape[0], features.shape[1], 1)
        raw = self.net(torch.cat([features, t_tok], dim=-1))
        logvar = self.logvar_min + (self.logvar_max - self.logvar_min) * torch.sigmoid(raw)
        return torch.exp(0.5 * logvar)
