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
from pathlib import Path
from typing import Any

from pirl_core.config import RunConfig
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.registry import Registry


@dataclass(frozen=True)
class SftSupport:
    """What supervised fine-tuning on demonstrations (:mod:`pirl_core.sft`) needs of a family.

    The loop, the dataset and the checkpoint's packaging (temp dir, ``sft_info.json``, model card,
    atomic rename) are shared; what a policy is, how a demonstration becomes its batch and how its
    files are written belong to the family."""

    build: Callable[[RunConfig], Any]
    """The bare policy (a LeRobot ``PreTrainedPolicy`` with its ``forward`` loss) and what its
    processors need: an object with ``policy`` and whatever ``policy_processors`` and ``save`` read."""
    policy_processors: Callable[[Any], tuple[Any, Any]]
    """``built -> (pre, post)``: the policy's LeRobot processor pipelines, as its rollouts run them."""
    demo_processor: Callable[[int], Any]
    """``camera_size -> callable``: a collated demonstration batch (schema keys plus
    ``demo_features``) -> what the policy preprocessor takes in a rollout, plus the action chunk in
    the policy's action space."""
    check_instructions: Callable[[Any, list[str], type[Exception]], None]
    """Refuses instructions the policy preprocessor's tokenizer cannot represent."""
    save: Callable[[Any, Any, Any, Path], None]
    """``(built, pre, post, directory)``: write the trained policy as the family's checkpoint files
    (what ``policy.size = pretrained`` loads); SFT adds ``sft_info.json`` and the model card."""
    describe_loss: Callable[[dict], str] = lambda parts: ""
    """The loss parts ``forward`` returned, as a few words for the log line."""
    demo_features: tuple[str, ...] = ()
    """Dataset features the family reads beyond the schema's images, state and action: SFT refuses
    a dataset without them (an older recording) and says how to re-record."""
    control_mode: str | None = None
    """The ``env.control_mode`` the trained policy acts in (None: the profile's)."""
    label: str = ""
    """The family's name in log lines (default: ``policy.type``)."""


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
    control_mode_of: Callable[[Path], str] | None = None
    """The ``env.control_mode`` a saved checkpoint directory of this family acts in (evaluation
    of a bare checkpoint sets it); None: the profile's."""


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
