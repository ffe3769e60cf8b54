"""Flow-matching arithmetic shared by every sampler: the time grid, the prediction-to-velocity
conversion, and the ODE / SDE transition moments.

Convention (LeRobot X-VLA, openpi): time runs from t=1 (noise) to t=0 (action),
x_t = t * eps + (1 - t) * a, so the velocity is v = dx_t/dt = eps - a. K steps on the uniform grid
t_k = 1 - k/K (k = 0..K), step Delta = 1/K. Every formula lives here once, so the rollout sampler
and the learner's re-scoring cannot drift apart.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pirl_core.policies.base import PredictionType

LOG_2PI = math.log(2.0 * math.pi)


def time_grid(steps: int, device: torch.device | str = "cpu") -> Tensor:
    """(K+1,) float32 grid [1, 1 - 1/K, ..., 1/K, 0]. Index k is the time of chain[:, k]."""
    if steps < 1:
        raise ValueError(f"denoising steps must be >= 1, got {steps}")
    k = torch.arange(steps + 1, dtype=torch.float32, device=device)
    return 1.0 - k / steps


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    """Per-sample time (B,) -> broadcastable against (B, C, D)."""
    return t.reshape(t.shape + (1,) * (like.dim() - t.dim()))


def to_velocity(prediction: Tensor, x_t: Tensor, t: Tensor, prediction_type: PredictionType) -> Tensor:
    """The ONE place where a clean-action prediction becomes a velocity.

    From x_t = t*eps + (1-t)*a and v = eps - a: a = x_t - t*v, hence v = (x_t - a_hat) / t.
    Safe on the sampling grid because every evaluated t is >= Delta > 0.
    """
    if prediction_type == "velocity":
        return prediction
    if prediction_type == "clean_action":
        return (x_t - prediction) / _bcast(t, x_t)
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def ode_mean(x_t: Tensor, v: Tensor, dt: float) -> Tensor:
    """Euler step of the probability-flow ODE: x_{t-Delta} = x_t - Delta * v.

    Equals (1-(t-Delta)) * a_hat + (t-Delta) * eps_hat; at the last step (t = Delta) it is a_hat.
    """
    return x_t - dt * v


def sde_sigma(t: Tensor, noise_level: float, steps: int) -> Tensor:
    """Flow-SDE diffusion scale sigma_t = a * sqrt(t / (1 - t)).

    At t = 1 the formula diverges; like the reference implementation we use 1 - t_1 = Delta in
    the denominator there, which gives std = sigma_t * sqrt(Delta) = a at the first step.
    """
    dt = 1.0 / steps
    denom = torch.where(t >= 1.0, torch.full_like(t, dt), 1.0 - t)
    return noise_level * torch.sqrt(t / denom)


def sde_moments(
    x_t: Tensor, v: Tensor, t: Tensor, dt: float, noise_level: float, steps: int
) -> tuple[Tensor, Tensor]:
    """Mean and std of one Flow-SDE transition (same marginals as the ODE, Flow-GRPO form).

    mean = x_t - Delta*v - (sigma_t^2 * Delta / (2t)) * (x_t + (1-t)*v),  std = sigma_t * sqrt(Delta).
    The drift correction is the score term: x_t + (1-t)*v is eps_hat, and -eps_hat/t is the score
    of the marginal, so adding noise of variance sigma_t^2*Delta is compensated in expectation.
    Returns mean (B, C, D) and std broadcastable to it (B, 1, 1).
    """
    sigma = _bcast(sde_sigma(t, noise_level, steps), x_t)
    tb = _bcast(t, x_t)
    eps_hat = x_t + (1.0 - tb) * v
    mean = x_t - dt * v - (sigma**2 * dt / (2.0 * tb)) * eps_hat
    std = sigma * math.sqrt(dt)
    return mean, std


def gaussian_logpdf(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Elementwise log N(x; mean, std^2), written out (not via torch.distributions) so that the
    exact same expression runs at rollout and at update; tests compare it to torch's Normal."""
    var = std * std
    return -((x - mean) ** 2) / (2.0 * var) - torch.log(std) - 0.5 * LOG_2PI


def gaussian_entropy(std: Tensor) -> Tensor:
    """Elementwise differential entropy 1/2 * log(2*pi*e*sigma^2)."""
    return 0.5 * (LOG_2PI + 1.0) + torch.log(std)
