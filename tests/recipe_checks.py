"""Reusable correctness checks of the recipe against any adapter (used by the tests of every
policy family, e.g. the X-VLA adapter's ratio test), plus an analytic test adapter.

* :func:`max_ratio_error`: sample chains with ``act`` and re-score them with ``evaluate``, as the
  actor and the learner do; returns max |exp(logp_new - logp_old) - 1|. On-policy this must be
  ~0 (< 1e-4 in float32): anything else means the learner does not see what the actor sampled.
* :class:`GaussianTargetAdapter`: the exact marginal velocity field of a Gaussian target
  N(mu, s^2), so sampler marginals can be checked against closed-form values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from pirl_core.policies.base import Context, CriticPlacement, FlowPolicyAdapter, Prediction, PredictionType
from pirl_core.recipe.actor_critic import ActorCritic


def max_ratio_error(actor_critic: ActorCritic, obs: dict[str, Tensor], generator: torch.Generator) -> float:
    """Rollout log-probs vs learner re-scoring on the same stored data (no parameter change)."""
    out = actor_critic.act(obs, generator)
    with torch.no_grad():
        logp, _, _ = actor_critic.evaluate(obs, out.chain, out.sde_step)
    return float((logp - out.logp).exp().sub(1.0).abs().max())


class GaussianTargetAdapter(FlowPolicyAdapter):
    """Analytic flow for a ``(chunk, dim)`` Gaussian target a ~ N(mu, s^2) (independent channels).

    With x_t = t*eps + (1-t)*a: x_t ~ N((1-t)mu, t^2 + (1-t)^2 s^2) and the marginal velocity is
    E[eps - a | x_t] = -mu + (t - (1-t)s^2) / var_t * (x_t - (1-t)mu). ``clean_action`` mode
    returns a_hat = x_t - t*v instead, exercising the recipe's conversion.
    """

    prediction_type: ClassVar[PredictionType] = "velocity"

    def __init__(
        self, mu: float, s: float, chunk_size: int = 2, action_dim: int = 3, mode: str = "velocity"
    ) -> None:
        super().__init__()
        self.mu, self.s = mu, s
        self.chunk_size, self.action_dim, self.action_steps = chunk_size, action_dim, chunk_size
        self.prediction_type = mode  # type: ignore[misc]  # instance override for the test modes
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # adapters are expected to own parameters

    def prepare_obs(self, raw_obs: dict[str, Any]) -> dict[str, Tensor]:
        return {"state": torch.as_tensor(np.asarray(raw_obs["state"]), dtype=torch.float32)}

    def encode(self, obs: dict[str, Tensor]) -> Context:
        return {"h": obs["state"]}

    def velocity(self, x_t: Tensor, t: Tensor) -> Tensor:
        tb = t.reshape(-1, 1, 1)
        var = tb**2 + (1 - tb) ** 2 * self.s**2
        return -self.mu + (tb - (1 - tb) * self.s**2) / var * (x_t - (1 - tb) * self.mu)

    def predict(self, x_t: Tensor, t: Tensor, ctx: Context) -> Prediction:
        v = self.velocity(x_t, t)
        value = v if self.prediction_type == "velocity" else x_t - t.reshape(-1, 1, 1) * v
        return Prediction(value=value, features=torch.zeros(*x_t.shape[:2], 1))

    def value_features(self, ctx: Context, placement: CriticPlacement, x_t: Tensor | None = None) -> Tensor:
        return ctx["h"]

    def value_feature_dim(self, placement: CriticPlacement) -> int:
        return 1

    @property
    def noise_feature_dim(self) -> int:
        return 1

    def sampled_mask(self) -> Tensor:
        return torch.ones(self.chunk_size, self.action_dim, dtype=torch.bool)

    def to_env_action(self, x0: Tensor, obs: dict[str, Tensor]) -> np.ndarray:
        return x0.detach().cpu().numpy()

    def save_pretrained(self, directory: Path) -> None:  # pragma: no cover - analytic, nothing to save
        raise NotImplementedError("the analytic adapter has no weights")
