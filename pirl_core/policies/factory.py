"""``make_adapter(cfg, task_descriptions)``: the policy family named by ``cfg.policy.type``
(:func:`pirl_core.policies.registry.policy_family`), with its compute precision set.

Families import their model code lazily (LeRobot + transformers take seconds to import). Initial
weights are drawn from a private RNG seeded with ``cfg.seed`` so the learner and every actor build
the same policy without touching the global RNG.
"""

from __future__ import annotations

import torch

from pirl_core.config import RunConfig
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.registry import policy_family

COMPUTE_DTYPES: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}
"""policy.dtype -> the adapter's autocast dtype (None: plain float32)."""


def make_adapter(cfg: RunConfig, task_descriptions: list[str]) -> FlowPolicyAdapter:
    adapter = policy_family(cfg.policy.type).make_adapter(cfg, task_descriptions)
    adapter.compute_dtype = COMPUTE_DTYPES[cfg.policy.dtype]
    return adapter
