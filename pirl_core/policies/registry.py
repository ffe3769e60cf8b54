"""Policy families, registered by name: what the rest of pirl may know about a policy (``policy.type``).

Why a registry (LeRobot registers its policy configs the same way): building a policy used to be
an ``if``-chain on ``policy.type``, and SFT checked for X-VLA by name. Now a family is one
:class:`PolicyFamily` record, registered by its own module (``pirl_core/policies/mlp_family.py``,
``pirl_core/policies/xvla/family.py``) when :mod:`pirl_core.policies` is imported, and every caller
asks :func:`policy_family` for it.

A family module must stay cheap to import: it names its model code lazily (inside the callables),
so a toy run never imports LeRobot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pirl_core.config import RunConfig
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.registry import Registry


@dataclass(frozen=True)
class SftSupport:
    """What supervised fine-tuning on demonstrations (:mod:`pirl_core.sft`) needs of a family."""

    build: Callable[[RunConfig], Any]
    """The bare policy (a LeRobot ``PreTrainedPolicy`` with its ``forward`` loss) and what its
    processors need: an object with ``policy``, ``tokenizer_path`` and ``domain_id``."""
    policy_processors: Callable[[Any, int], tuple[Any, Any]]
    """``(policy config, domain id) -> (pre, post)``: the policy's LeRobot processor pipelines."""
    demo_processor: Callable[[int], Any]
    """``camera_size -> pipeline``: the env preprocessor a rollout runs, for demonstration frames."""
    check_instructions: Callable[[Any, list[str], type[Exception]], None]
    """Refuses instructions the policy preprocessor's tokenizer cannot represent."""


@dataclass(frozen=True)
class PolicyFamily:
    """Everything family-specific the actor, the learner, evaluation and SFT need."""

    name: str  # the ``policy.type`` value
    config_sizes: tuple[str, ...]
    """``policy.size`` values built from config (random init); any other size is loaded from
    ``policy.pretrained_path``."""
    make_adapter: Callable[[RunConfig, list[str]], FlowPolicyAdapter]
    """``(cfg, task instructions) -> adapter`` on ``cfg.policy.device``, its weights a function of
    ``cfg.seed`` (learner and actors build the same policy) without touching the global RNG."""
    lerobot_type: str | None = None
    """The ``type`` LeRobot writes in a saved policy's ``config.json`` (None: not a LeRobot policy)."""
    sft: SftSupport | None = None  # None: the family cannot be trained on demonstrations


POLICY_FAMILIES: Registry[PolicyFamily] = Registry("policy.type", "policy family")
register_policy_family = POLICY_FAMILIES.register
policy_families = POLICY_FAMILIES.names
policy_family = POLICY_FAMILIES.get


def lerobot_policy_family(lerobot_type: str | None) -> PolicyFamily | None:
    """The family whose saved LeRobot ``config.json`` has ``type`` = ``lerobot_type`` (None: no
    registered family reads it)."""
    return next(
        (f for f in POLICY_FAMILIES.records() if f.lerobot_type and f.lerobot_type == lerobot_type), None
    )
