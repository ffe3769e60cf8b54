"""π0 / π0.5 supervised fine-tuning on pirl's demonstrations (``SftSupport`` of the π families).

The loss is LeRobot's own (``PI05Policy.forward`` / ``PI0Policy.forward``: flow matching towards the
clean chunk). What is π-specific is how a demonstration batch becomes the batch a rollout gives π
(docs/design.md, "SFT"). pirl's datasets (``pirl_core.recipe.demo_schema``) store X-VLA's view:

* **images**: the agentview as X-VLA's ``LiberoProcessorStep`` leaves it (rotated by 180 degrees),
  the wrist view *as rendered*. π's rollouts run LeRobot's generic ``LiberoProcessorStep``, which
  rotates *both* views: :class:`PiDemoProcessor` rotates the wrist view, the agentview is already
  what π sees.
* **state**: X-VLA's 20-dim proprio has no gripper opening. The recorder also stores the generic
  step's 8-dim state (``observation.libero_state``), which becomes ``observation.state``; a dataset
  recorded before that feature existed is refused by SFT (re-record).
* **actions**: the recorded 20-dim ee6d targets become LIBERO's 7-dim *absolute* action through
  LeRobot's own ``XVLARotation6DToAxisAngleProcessorStep`` (what X-VLA's env postprocessor sends
  the env; ``pirl_core/demos/ee6d.py``: ``env_post(to_ee6d(a)) == a``). So π trained here acts in
  ``env.control_mode = "absolute"``, normalised with the absolute bounds of
  :func:`pirl_core.policies.pi.libero.action_bounds`. Relative (delta) actions cannot be recovered
  exactly from absolute targets (they depend on the controller's gains and the arm's lag), so
  pirl does not train π in relative control from these datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pirl_core.config import RunConfig
from pirl_core.policies.pi.libero import ACTION_DIM, ACTION_KEY, DEMO_STATE_KEY, IMAGE_KEYS, STATE_KEY

SFT_CONTROL_MODE = "absolute"
WRIST_KEY = IMAGE_KEYS[1]  # observation.images.image2: stored unrotated (X-VLA's step skips it)
LABELS = {"pi0": "π0", "pi05": "π0.5"}


def build(cfg: RunConfig) -> Any:
    """The bare LeRobot π (tiny / small from config, or a checkpoint to fine-tune) and its processors'
    inputs (:class:`~pirl_core.policies.pi.build.BuiltPi`)."""
    from pirl_core.policies.pi.build import build_pi_policy

    return build_pi_policy(cfg)


def policy_processors(built: Any) -> tuple[Any, Any]:
    """The pipelines a rollout of this π runs (a checkpoint's own, else LeRobot's with pirl's
    statistics for the control mode and the tokenizer embedded)."""
    from pirl_core.policies.pi.adapter import make_processors

    processors = make_processors(built)
    return processors.policy_pre, processors.policy_post


def ee6d_to_absolute(actions: torch.Tensor) -> torch.Tensor:
    """(..., 20) ee6d targets -> (..., 7) LIBERO absolute actions, by LeRobot's X-VLA env
    postprocessor step (rot6d -> axis-angle, gripper channel > 0.5 -> +1 else -1)."""
    from lerobot.policies.xvla.processor_xvla import XVLARotation6DToAxisAngleProcessorStep
    from lerobot.processor.core import TransitionKey

    flat = actions.reshape(-1, actions.shape[-1]).to(torch.float32)
    step = XVLARotation6DToAxisAngleProcessorStep()
    out = step({TransitionKey.ACTION: flat})[TransitionKey.ACTION]
    return out.reshape(*actions.shape[:-1], ACTION_DIM)


class PiDemoProcessor:
    """A collated demonstration batch -> what π's policy preprocessor receives in a rollout (after
    LeRobot's generic ``LiberoProcessorStep``), plus the action chunk in absolute LIBERO actions.
    ``camera_size`` is not needed: π resizes (with padding) to its own image size."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in batch.items() if k not in (STATE_KEY, DEMO_STATE_KEY)}
        out[WRIST_KEY] = torch.flip(batch[WRIST_KEY], dims=[-2, -1])
        out[STATE_KEY] = batch[DEMO_STATE_KEY].to(torch.float32)
        out[ACTION_KEY] = ee6d_to_absolute(batch[ACTION_KEY])
        return out


def demo_processor(camera_size: int) -> PiDemoProcessor:
    del camera_size
    return PiDemoProcessor()


def check_instructions(policy_pre: Any, texts: list[str], error_cls: type[Exception]) -> None:
    from pirl_core.policies.pi.adapter import check_prompts

    check_prompts(policy_pre, texts, error_cls)


def save(built: Any, policy_pre: Any, policy_post: Any, directory: Path) -> None:
    """What :meth:`PiAdapter.save_pretrained` writes (arch, control mode, processors with the
    tokenizer and statistics inside), so ``policy.size = pretrained`` loads it for RL."""
    from pirl_core.policies.pi.adapter import save_pi_pretrained

    save_pi_pretrained(directory, built.policy, policy_pre, policy_post, built.arch, built.control_mode)


def describe_loss(parts: dict) -> str:
    """LeRobot's per-dimension flow-matching loss, grouped: position, rotation, gripper."""
    dims = list(parts.get("loss_per_dim") or [])
    if len(dims) < ACTION_DIM:
        return ""
    pos, rot, grip = sum(dims[:3]) / 3, sum(dims[3:6]) / 3, dims[6]
    return f"(pos {pos:.4f} rot {rot:.4f} grip {grip:.4f})"
