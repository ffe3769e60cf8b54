"""The LeRobot processor chain between a raw LIBERO observation and π0/π0.5, and back to an action.

    raw LIBERO obs batch + "task" strings
      -> lerobot.envs.utils.preprocess_observation        (CHW float [0, 1], torch)
      -> env preprocessor    [LiberoProcessorStep: flip both views, 8-dim state]
                             (what ``make_env_pre_post_processors`` builds for LIBERO)
      -> policy preprocessor [LeRobot's π pipeline: rename -> add batch -> normalise
                              -> (π0.5: state bins into the prompt) -> tokenizer -> device]
      -> π0/π0.5 (resize with padding to the model's image size, [-1, 1])
      -> policy postprocessor [unnormalise -> cpu]          -> 7-dim LIBERO action, clipped to the
                                                             bounds of env.control_mode (relative:
                                                             [-1, 1]; absolute: workspace, +-pi, +-1)

The policy pipelines are LeRobot's own (``make_pi05_pre_post_processors`` /
``make_pi0_pre_post_processors``) with one substitution: the tokenizer step is pirl's
:class:`~pirl_core.policies.embedded_tokenizer.EmbeddedTokenizerStep`, which carries the tokenizer
files inside the saved pipeline, so ``PI05Policy.from_pretrained`` + the saved processors run a
pirl checkpoint on a machine without hub access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.processor import PolicyProcessorPipeline

from pirl_core.policies.embedded_tokenizer import EmbeddedTokenizerStep
from pirl_core.policies.pi.libero import ACTION_DIM, action_bounds, normalisation_stats


def _tensor_stats(stats: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, torch.Tensor]]:
    return {k: {s: torch.tensor(v, dtype=torch.float32) for s, v in d.items()} for k, d in stats.items()}


def make_policy_processors(
    policy_type: str,
    config: Any,
    tokenizer_dir: str,
    stats: dict | None = None,
    control_mode: str = "relative",
) -> tuple[PolicyProcessorPipeline, PolicyProcessorPipeline]:
    """LeRobot's π pre/post-processors for ``config`` with ``stats`` (default: pirl's LIBERO bounds
    for ``control_mode``, :mod:`pirl_core.policies.pi.libero`) and the tokenizer of
    ``tokenizer_dir`` embedded.

    LeRobot's factory is called as it is; only the tokenizer step it constructs is pirl's (the
    factory's ``TokenizerProcessorStep`` name is rebound for the call): LeRobot's would download
    ``google/paligemma-3b-pt-224`` while being constructed."""
    if policy_type == "pi05":
        from lerobot.policies.pi05 import processor_pi05 as module

        make = module.make_pi05_pre_post_processors
    else:
        from lerobot.policies.pi0 import processor_pi0 as module

        make = module.make_pi0_pre_post_processors

    def embedded_tokenizer(*, tokenizer_name: str, **kwargs: Any) -> EmbeddedTokenizerStep:
        del tokenizer_name
        return EmbeddedTokenizerStep(
            tokenizer_name=Path(tokenizer_dir).name,  # a label in the saved JSON and in errors
            tokenizer_dir=tokenizer_dir,
            **kwargs,
        )

    saved = module.TokenizerProcessorStep
    module.TokenizerProcessorStep = embedded_tokenizer
    try:
        return make(config, dataset_stats=_tensor_stats(stats or normalisation_stats(control_mode)))
    finally:
        module.TokenizerProcessorStep = saved


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
LEROBOT_TOKENIZER_STEP = "tokenizer_processor"  # the registry name LeRobot's TokenizerProcessorStep saves


def checkpoint_tokenizer_source(ckpt: Path, saved_name: str, explicit: str) -> str:
    """Where a LeRobot π checkpoint's tokenizer comes from, never a download: ``policy.tokenizer``
    when set; else the checkpoint's own tokenizer files (in it or in ``tokenizer/``); else the name
    its preprocessor saved (``google/paligemma-3b-pt-224``), if the local Hugging Face cache has it."""
    from pirl_core.policies.xvla.hub import resolve_local_tokenizer

    if explicit:
        return resolve_local_tokenizer(explicit)
    for candidate in (ckpt, ckpt / "tokenizer"):
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return str(candidate)
    return resolve_local_tokenizer(saved_name)


def checkpoint_processors(
    ckpt: Path, device: str, tokenizer: str = ""
) -> tuple[PolicyProcessorPipeline, PolicyProcessorPipeline]:
    """A checkpoint's own pre/post-processors (its statistics, its prompt format), on ``device``.

    pirl's checkpoints carry their tokenizer inside (``EmbeddedTokenizerStep``); a LeRobot one names
    it, and :func:`checkpoint_tokenizer_source` finds it locally (``tokenizer``: ``policy.tokenizer``)."""
    import json

    config = json.loads((ckpt / "policy_preprocessor.json").read_text())
    overrides: dict[str, dict[str, Any]] = {"device_processor": {"device": device}}
    for step in config.get("steps", []):
        if step.get("registry_name") == LEROBOT_TOKENIZER_STEP:
            saved = str(step.get("config", {}).get("tokenizer_name", ""))
            overrides[LEROBOT_TOKENIZER_STEP] = {
                "tokenizer_name": checkpoint_tokenizer_source(ckpt, saved, tokenizer)
            }
    pre = PolicyProcessorPipeline.from_pretrained(str(ckpt), "policy_preprocessor.json", overrides=overrides)
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    post = PolicyProcessorPipeline.from_pretrained(
        str(ckpt),
        "policy_postprocessor.json",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return pre, post


def make_env_preprocessor() -> PolicyProcessorPipeline:
    """LeRobot's LIBERO env preprocessor (flip both views, 8-dim state), as ``lerobot-eval`` builds it."""
    from lerobot.processor.env_processor import LiberoProcessorStep

    return PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
        steps=[LiberoProcessorStep()], name="env_preprocessor"
    )


@dataclass
class PiProcessors:
    """The pipelines, applied in LeRobot's order."""

    env_pre: PolicyProcessorPipeline
    policy_pre: PolicyProcessorPipeline
    policy_post: PolicyProcessorPipeline
    control_mode: str = "relative"  # env.control_mode: what an action means, and its clip bounds
    bounds: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.bounds = np.asarray(action_bounds(self.control_mode), dtype=np.float32)

    def observation(self, raw_obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Raw LIBERO obs batch (with ``task``: the instructions) -> π input tensors."""
        from pirl_core.policies.lerobot_obs import through_pipelines

        return through_pipelines(raw_obs, self.env_pre, self.policy_pre)

    def action(self, actions: torch.Tensor) -> np.ndarray:
        """(N, D) normalised actions -> (N, 7) LIBERO actions, clipped to the control mode's bounds
        (relative: LIBERO's [-1, 1]; absolute: the workspace, +-pi, the gripper's +-1)."""
        act = self.policy_post(actions[..., :ACTION_DIM])
        act = act.detach().cpu().numpy().astype(np.float32)
        return act.clip(self.bounds[:, 0], self.bounds[:, 1])
