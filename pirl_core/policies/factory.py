"""``make_adapter(cfg, task_descriptions)``: the policy family named by ``cfg.policy.type``.

X-VLA is imported lazily (LeRobot + transformers take seconds to import). Initial weights are
drawn from a private RNG seeded with ``cfg.seed`` so the learner and every actor build the same
policy without touching the global RNG.
"""

from __future__ import annotations

import torch

from pirl_core.config import RunConfig
from pirl_core.errors import ConfigError
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.device import check_device

COMPUTE_DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}
"""policy.dtype -> the adapter's autocast dtype (None: plain float32)."""


def make_adapter(cfg: RunConfig, task_descriptions: list[str]) -> FlowPolicyAdapter:
    if cfg.policy.type == "xvla":
        from pirl_core.policies.xvla import build_xvla_adapter

        adapter = build_xvla_adapter(cfg, task_descriptions)
    elif cfg.policy.type == "mlp":
        adapter = _make_mlp(cfg)
    else:
        raise ConfigError("policy.type", cfg.policy.type, "'xvla' or 'mlp'")
    adapter.compute_dtype = COMPUTE_DTYPES[cfg.policy.dtype]
    return adapter


def _make_mlp(cfg: RunConfig) -> FlowPolicyAdapter:
    if cfg.env.type != "toy":
        raise ConfigError(
            "policy.type",
            cfg.policy.type,
            "'xvla' when env.type is not 'toy'",
            hint="the MLP policy reads the toy env's state vector; use --policy.type=xvla for LIBERO",
        )
    if cfg.policy.size != "tiny":
        raise ConfigError(
            "policy.size", cfg.policy.size, "'tiny' for the MLP policy (it has no pretrained weights)"
        )
    from pirl_core.envs.toy import ACTION_DIM, OBS_DIM
    from pirl_core.policies.mlp import MLPFlowAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        adapter = MLPFlowAdapter(
            obs_dim=OBS_DIM,
            env_action_dim=ACTION_DIM,
            chunk_size=cfg.policy.chunk_size,
            action_steps=cfg.policy.action_steps,
            hidden_dim=cfg.policy.hidden_dim,
        )
    check_device(cfg.policy.device)
    return adapter.to(cfg.policy.device)
