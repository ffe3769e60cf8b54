"""The MLP policy family (``policy.type = "mlp"``), registered on import of :mod:`pirl_core.policies`.

It reads the toy env's state vector, has no pretrained weights (``policy.size = "tiny"`` only) and
no SFT.
"""

from __future__ import annotations

import torch

from pirl_core.config import RunConfig
from pirl_core.errors import ConfigError
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.device import check_device
from pirl_core.policies.registry import PolicyFamily, register_policy_family


def make_adapter(cfg: RunConfig, task_descriptions: list[str]) -> FlowPolicyAdapter:
    """An :class:`~pirl_core.policies.mlp.MLPFlowAdapter` drawn from a private RNG seeded with ``cfg.seed``."""
    if cfg.env.type != "toy":
        raise ConfigError(
            "policy.type",
            cfg.policy.type,
            "'xvla', 'pi0' or 'pi05' when env.type is not 'toy'",
            hint="the MLP policy reads the toy env's state vector; use --policy.type=xvla (or pi05) for LIBERO",
        )
    if cfg.policy.size not in MLP.config_sizes:
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


MLP = register_policy_family(PolicyFamily(name="mlp", config_sizes=("tiny",), make_adapter=make_adapter))
