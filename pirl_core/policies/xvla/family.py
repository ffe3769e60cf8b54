"""The X-VLA policy family (``policy.type = "xvla"``), registered on import of :mod:`pirl_core.policies`.

Every callable imports its module when it runs: LeRobot and transformers take seconds to import,
and toy runs never need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pirl_core.config import CONFIG_SIZES, RunConfig
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.registry import PolicyFamily, SftSupport, register_policy_family


def make_adapter(cfg: RunConfig, task_descriptions: list[str]) -> FlowPolicyAdapter:
    from pirl_core.policies.xvla.adapter import build_xvla_adapter

    return build_xvla_adapter(cfg, task_descriptions)


def build(cfg: RunConfig) -> Any:
    from pirl_core.policies.xvla.build import build_xvla_policy, quiet_transformers

    with quiet_transformers():
        return build_xvla_policy(cfg)


def policy_processors(built: Any) -> tuple[Any, Any]:
    from pirl_core.policies.xvla.processors import make_policy_processors

    return make_policy_processors(built.policy.config, built.domain_id)


def demo_processor(camera_size: int) -> Any:
    from pirl_core.policies.xvla.processors import make_demo_processor

    return make_demo_processor(camera_size)


def check_instructions(policy_pre: Any, texts: list[str], error_cls: type[Exception]) -> None:
    from pirl_core.policies.xvla.adapter import check_instructions as check

    check(policy_pre, texts, error_cls)


def save(built: Any, policy_pre: Any, policy_post: Any, directory: Path) -> None:
    """LeRobot's files, made self-contained by :func:`pirl_core.policies.xvla.portable.finalize`
    (tokenizer copy, relative tokenizer name, image size in config.json)."""
    from pirl_core.policies.xvla.portable import finalize

    built.policy.save_pretrained(directory)
    policy_pre.save_pretrained(directory)
    policy_post.save_pretrained(directory)
    finalize(directory, built.tokenizer_path)


def describe_loss(parts: dict) -> str:
    """LeRobot's X-VLA loss parts: flow matching on position and rotation, BCE on the gripper."""
    return (
        f"(pos {parts.get('position_loss', 0):.4f} rot {parts.get('rotate6D_loss', 0):.4f} "
        f"grip {parts.get('gripper_loss', 0):.4f})"
    )


XVLA = register_policy_family(
    PolicyFamily(
        name="xvla",
        config_sizes=CONFIG_SIZES,
        make_adapter=make_adapter,
        lerobot_type="xvla",
        sft=SftSupport(
            build=build,
            policy_processors=policy_processors,
            demo_processor=demo_processor,
            check_instructions=check_instructions,
            save=save,
            describe_loss=describe_loss,
            label="X-VLA",
        ),
    )
)
