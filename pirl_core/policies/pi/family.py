"""The π0 and π0.5 policy families (``policy.type`` = "pi0" / "pi05"), registered on import of
:mod:`pirl_core.policies`. Cheap to import: LeRobot's π code loads only when a policy is built."""

from __future__ import annotations

from pirl_core.config import CONFIG_SIZES, RunConfig
from pirl_core.errors import ConfigError
from pirl_core.policies.base import FlowPolicyAdapter
from pirl_core.policies.pi import sft
from pirl_core.policies.pi.libero import DEMO_STATE_KEY
from pirl_core.policies.registry import PolicyFamily, SftSupport, register_policy_family


def make_adapter(cfg: RunConfig, task_descriptions: list[str]) -> FlowPolicyAdapter:
    if cfg.env.type != "libero":
        raise ConfigError(
            "env.type",
            cfg.env.type,
            f"'libero' for policy.type = {cfg.policy.type!r}",
            hint="π reads camera views",
        )
    from pirl_core.policies.pi.adapter import build_pi_adapter

    return build_pi_adapter(cfg, task_descriptions)


def control_mode_of(directory) -> str:
    from pirl_core.policies.pi.build import read_control_mode

    return read_control_mode(directory)


def _family(name: str) -> PolicyFamily:
    return register_policy_family(
        PolicyFamily(
            name=name,
            config_sizes=CONFIG_SIZES,
            make_adapter=make_adapter,
            lerobot_type=name,
            sft=SftSupport(
                build=sft.build,
                policy_processors=sft.policy_processors,
                demo_processor=sft.demo_processor,
                check_instructions=sft.check_instructions,
                save=sft.save,
                describe_loss=sft.describe_loss,
                demo_features=(DEMO_STATE_KEY,),
                control_mode=sft.SFT_CONTROL_MODE,
                label=sft.LABELS[name],
            ),
            control_mode_of=control_mode_of,
        )
    )


PI0 = _family("pi0")
PI05 = _family("pi05")
