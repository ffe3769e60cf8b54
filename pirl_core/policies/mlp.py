"""A tiny MLP flow-matching policy: the second adapter behind the contract.

It proves the recipe is policy-agnostic and makes the learning tests fast: an observation
encoder (the "expensive" pass, run once per observation), a velocity network on
(encoding, x_t, t), a per-horizon-token feature projection for the Flow-Noise head, and the
same save/load shape as a LeRobot policy (``config.json`` + ``model.safetensors``).

Two prediction modes exercise both conversion paths of the recipe: :class:`MLPFlowAdapter`
predicts the velocity v = eps - a, :class:`MLPCleanActionAdapter` predicts the clean action a_hat.
``pad_dims`` adds generated-but-unexecuted action dims (like a VLA's padded action width), so
``sampled_mask`` has something to exclude on both axes (chunk steps after ``action_steps``, and
padded dims).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from pirl_core.policies.base import Context, CriticPlacement, FlowPolicyAdapter, Prediction, PredictionType

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TIME_FREQS = 4


def time_embedding(t: Tensor) -> Tensor:
    """(B,) -> (B, 1 + 2*TIME_FREQS): t plus sin/cos features, so the net can tell steps apart."""
    freqs = (2.0 ** torch.arange(TIME_FREQS, device=t.device, dtype=torch.float32)) * math.pi
    angles = t.float().unsqueeze(-1) * freqs
    return torch.cat([t.float().unsqueeze(-1), torch.sin(angles), torch.cos(angles)], dim=-1)


class MLPFlowAdapter(FlowPolicyAdapter):
    """Velocity-predicting MLP flow policy over a state vector (``obs["state"]``)."""

    prediction_type: ClassVar[PredictionType] = "velocity"
    family: ClassVar[str] = "mlp"

    def __init__(
        self,
        obs_dim: int,
        env_action_dim: int,
        chunk_size: int,
        action_steps: int,
        hidden_dim: int = 64,
        pad_dims: int = 0,
        feature_dim: int = 32,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= action_steps <= chunk_size:
            raise ValueError(f"action_steps must be in [1, chunk_size={chunk_size}], got {action_steps}")
        self.obs_dim = obs_dim
        self.env_action_dim = env_action_dim
        self.pad_dims = pad_dims
        self.chunk_size = chunk_size
        self.action_steps = action_steps
        self.action_dim = env_action_dim + pad_dims
        self.hidden_dim = hidden_dim
        self.feature_dim = feature_dim
        self.freeze_encoder = freeze_encoder
        flat = chunk_size * self.action_dim
        self.encoder = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.Tanh()
        )
        self.trunk = nn.Sequential(
            nn.Linear(hidden_dim + flat + 1 + 2 * TIME_FREQS, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(hidden_dim, flat)
        # Linear path from x_t to the output, starting at zero: lets the policy learn quickly how
        # much of the initial noise to carry into the action (a random MLP carries most of it).
        self.skip = nn.Linear(flat, flat, bias=False)
        nn.init.zeros_(self.skip.weight)
        self.features = nn.Linear(hidden_dim, chunk_size * feature_dim)
        mask = torch.zeros(chunk_size, self.action_dim, dtype=torch.bool)
        mask[:action_steps, :env_action_dim] = True
        self.register_buffer("_mask", mask, persistent=False)
        self.set_rl_mode()

    # ------------------------------------------------------------------ contract

    def prepare_obs(self, raw_obs: dict[str, Any]) -> dict[str, Tensor]:
        return {"state": torch.as_tensor(np.asarray(raw_obs["state"]), dtype=torch.float32)}

    def encode(self, obs: dict[str, Tensor]) -> Context:
        return {"h": self.encoder(obs["state"])}

    def _trunk(self, x_t: Tensor, t: Tensor, ctx: Context) -> Tensor:
        return self.trunk(torch.cat([ctx["h"], x_t.flatten(1), time_embedding(t)], dim=-1))

    def predict(self, x_t: Tensor, t: Tensor, ctx: Context) -> Prediction:
        z = self._trunk(x_t, t, ctx)
        b = x_t.shape[0]
        value = (self.head(z) + self.skip(x_t.flatten(1))).view(b, self.chunk_size, self.action_dim)
        features = torch.tanh(self.features(z)).view(b, self.chunk_size, self.feature_dim)
        return Prediction(value=value, features=features)

    def value_features(self, ctx: Context, placement: CriticPlacement, x_t: Tensor | None = None) -> Tensor:
        if placement == "after_vlm":
            return ctx["h"]
        if x_t is None:
            raise ValueError("action_head critic features need x_t (the chain's x_1)")
        return self._trunk(x_t, torch.ones(x_t.shape[0], device=x_t.device), ctx)

    def value_feature_dim(self, placement: CriticPlacement) -> int:
        return self.hidden_dim

    @property
    def noise_feature_dim(self) -> int:
        return self.feature_dim

    def sampled_mask(self) -> Tensor:
        return self._mask

    def to_env_action(self, x0: Tensor, obs: dict[str, Tensor]) -> np.ndarray:
        # No post-processing: the toy env clips to its action bounds itself.
        return x0[:, : self.action_steps, : self.env_action_dim].detach().float().cpu().numpy()

    def set_rl_mode(self) -> None:
        super().set_rl_mode()
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "family": self.family, **self.config()}

    # ------------------------------------------------------------------ persistence

    def config(self) -> dict[str, Any]:
        return {
            "prediction_type": self.prediction_type,
            "obs_dim": self.obs_dim,
            "env_action_dim": self.env_action_dim,
            "chunk_size": self.chunk_size,
            "action_steps": self.action_steps,
            "hidden_dim": self.hidden_dim,
            "pad_dims": self.pad_dims,
            "feature_dim": self.feature_dim,
            "freeze_encoder": self.freeze_encoder,
        }

    def save_pretrained(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps({"type": self.family, **self.config()}, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))

    @staticmethod
    def from_pretrained(directory: Path | str) -> MLPFlowAdapter:
        """Load either prediction mode from a ``save_pretrained`` directory."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG_NAME).read_text())
        config.pop("type", None)
        kind = config.pop("prediction_type", "velocity")
        cls = MLPCleanActionAdapter if kind == "clean_action" else MLPFlowAdapter
        adapter = cls(**config)
        adapter.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        return adapter


class MLPCleanActionAdapter(MLPFlowAdapter):
    """Same network, but its output is read as the clean action a_hat (like X-VLA)."""

    prediction_type: ClassVar[PredictionType] = "clean_action"
