"""The LeRobot processor chain between a raw LIBERO observation and X-VLA, and back to a 7-dim action.

The chain (the one LeRobot's own ``lerobot-eval`` runs, minus one trap):

    raw LIBERO obs batch (numpy, HWC uint8, nested robot_state) + "task" strings
      -> lerobot.envs.utils.preprocess_observation       (CHW float [0, 1], torch)
      -> env preprocessor   [LiberoProcessorStep (flip, 20-dim state) -> ImageNet normalisation
                             -> domain id]                (= LeRobot's make_xvla_libero_pre_post_processors)
      -> policy preprocessor [rename -> add batch -> tokenizer -> domain id 3 -> device -> normaliser]
      -> X-VLA  (resizes every view to ``config.resize_imgs_with_padding`` first)
      -> policy postprocessor [unnormaliser -> cpu]
      -> env postprocessor   [rot6d -> axis-angle, gripper sigmoid > 0.5 -> +-1]  -> 7-dim env action

Trap avoided: ``make_xvla_pre_post_processors`` also converts images to float and applies ImageNet
normalisation, which the X-VLA LIBERO env preprocessor has already done; the doubled chain fails
("values outside [0, 255]"). The policy preprocessor here is LeRobot's, built from the same step
classes, without those two image steps.

Camera size: LeRobot's ``LiberoEnv`` renders at its constructor's size (256 by default; the
``LiberoEnv`` *config* never forwards ``observation_height/width``). pirl renders at
``env.camera_size`` (up to 256). The resize to the policy's image size is the policy's own:
``XVLAConfig.resize_imgs_with_padding`` (set by :func:`pirl_core.policies.xvla.build.make_portable`),
applied inside ``XVLAPolicy`` — so pirl, ``lerobot-eval`` and ``XVLAPolicy.from_pretrained`` resize
the same way with nothing but the checkpoint, and a frame that already has the policy's size (pirl's
own renders) is passed through untouched. Resizing after the ImageNet step instead of before it is
the same linear map (bilinear weights sum to 1; the normalisation is per-channel affine), equal to
float round-off (tests/test_checkpoint_portable.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    ObservationProcessorStep,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    RenameObservationsProcessorStep,
    TokenizerProcessorStep,
    UnnormalizerProcessorStep,
)
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.constants import (
    OBS_IMAGES,
    POLICY_POSTPROCESSOR_DEFAULT_NAME,
    POLICY_PREPROCESSOR_DEFAULT_NAME,
)


@dataclass
@ProcessorStepRegistry.register(name="pirl_resize_images")
class ResizeImagesProcessorStep(ObservationProcessorStep):
    """Resize every ``observation.images.*`` (B, C, H, W) float image to ``size`` x ``size``.

    Antialiased bilinear (a convex filter: values stay in [0, 1]). A no-op when the image already
    has the target size. No longer part of pirl's chain (the policy resizes itself, see the module
    docstring); kept registered so processor files that name it still load, and as the reference
    filter the render-size tests compare against.
    """

    size: int = 256

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        out = dict(observation)
        for key, img in observation.items():
            if not key.startswith(f"{OBS_IMAGES}.") or not isinstance(img, torch.Tensor):
                continue
            if img.shape[-2:] == (self.size, self.size):
                continue
            squeeze = img.ndim == 3
            batch = img.unsqueeze(0) if squeeze else img
            resized = F.interpolate(
                batch.float(),
                size=(self.size, self.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            ).clamp_(0.0, 1.0)
            out[key] = resized.squeeze(0) if squeeze else resized
        return out

    def transform_features(self, features):
        return features

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size}


def make_policy_processors(config, domain_id: int) -> tuple[PolicyProcessorPipeline, PolicyProcessorPipeline]:
    """X-VLA's policy pre/post-processors, built from LeRobot's step classes without the image steps
    the LIBERO env preprocessor already applies (see module docstring)."""
    from lerobot.policies.xvla.processor_xvla import XVLAAddDomainIdProcessorStep

    features = {**config.input_features, **config.output_features}
    pre = PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
        steps=[
            RenameObservationsProcessorStep(rename_map={}),
            AddBatchDimensionProcessorStep(),
            TokenizerProcessorStep(
                tokenizer_name=config.tokenizer_name,
                max_length=config.tokenizer_max_length,
                padding=config.pad_language_to,
                padding_side=config.tokenizer_padding_side,
            ),
            XVLAAddDomainIdProcessorStep(domain_id=domain_id),
            DeviceProcessorStep(device=config.device),
            NormalizerProcessorStep(features=features, norm_map=config.normalization_mapping, stats=None),
        ],
        name=POLICY_PREPROCESSOR_DEFAULT_NAME,
    )
    post = PolicyProcessorPipeline(
        steps=[
            UnnormalizerProcessorStep(
                features=config.output_features, norm_map=config.normalization_mapping, stats=None
            ),
            DeviceProcessorStep(device="cpu"),
        ],
        name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    return pre, post


def make_env_processors(
    camera_size: int | None = None,
) -> tuple[PolicyProcessorPipeline, PolicyProcessorPipeline]:
    """LeRobot's X-VLA LIBERO env processors (``make_xvla_libero_pre_post_processors``) unchanged:
    exactly what ``lerobot-eval`` builds for an X-VLA policy. They assume ``control_mode=absolute``
    and ``action_mode=ee6d``. ``camera_size`` is accepted for older callers and not needed: the
    resize to it is the policy's (``resize_imgs_with_padding``)."""
    from lerobot.policies.xvla.processor_xvla import make_xvla_libero_pre_post_processors

    del camera_size
    return make_xvla_libero_pre_post_processors()


def make_demo_processor(camera_size: int | None = None) -> PolicyProcessorPipeline:
    """The env preprocessor a rollout runs, minus ``LiberoProcessorStep``: for demonstration batches
    (``pirl_core.recipe.demo_schema``) whose images are already flipped and whose state is already X-VLA's
    20-dim proprio. Derived from :func:`make_env_processors`, so SFT and rollouts cannot drift apart
    (ImageNet normalisation -> domain id, then the policy preprocessor; the policy resizes)."""
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    pre, _ = make_env_processors(camera_size)
    pre.steps = [s for s in pre.steps if not isinstance(s, LiberoProcessorStep)]
    return pre


@dataclass
class XVLAProcessors:
    """The four pipelines, applied in LeRobot's order."""

    env_pre: PolicyProcessorPipeline
    policy_pre: PolicyProcessorPipeline
    policy_post: PolicyProcessorPipeline
    env_post: PolicyProcessorPipeline

    def observation(self, raw_obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Raw LIBERO obs batch (with ``task``: list of instructions) -> X-VLA input tensors."""
        from pirl_core.policies.lerobot_obs import through_pipelines

        return through_pipelines(raw_obs, self.env_pre, self.policy_pre)

    def action(self, actions: torch.Tensor) -> np.ndarray:
        """(N, 20) ee6d actions with gripper probabilities -> (N, 7) LIBERO absolute actions."""
        act = self.policy_post(actions)
        act = self.env_post({"action": act})["action"]
        return act.detach().cpu().numpy().astype(np.float32)
