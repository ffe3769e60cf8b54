"""The demonstration dataset's layout: the one contract between the recorder (``pirl_core.demos``)
and its readers (SFT, RL's co-training term). It lives in the recipe layer with its reader
(:mod:`pirl_core.recipe.demo_data`) so that the recipe never imports an application.

Why this layout (docs/design.md, "Demonstrations"):

* **Observation keys are LeRobot's LIBERO keys** (``observation.images.image`` = agentview,
  ``observation.images.image2`` = eye-in-hand, ``observation.state``), so ``lerobot-train`` and any
  LeRobot tool read the dataset without a rename map.
* **Values are what X-VLA sees after LeRobot's ``LiberoProcessorStep``**: the agentview image is
  already rotated by 180 degrees (the step flips it; the wrist view is left as rendered) and the
  state is X-VLA's 20-dim LIBERO proprio ``[eef_pos(3), rot6d(eef_mat)(6), 0, zeros(10)]``. A
  training sample then only needs the steps that follow it (ImageNet normalisation, tokenizer,
  domain id), exactly as in a rollout.
* **Actions are X-VLA's ee6d action space** (20 dims: ``[target xyz(3), rot6d(target)(6),
  gripper(1), zeros(10)]``, gripper 1 = close, 0 = open): the absolute end-effector targets
  LeRobot's ``XVLARotation6DToAxisAngleProcessorStep`` turns into LIBERO's 7-dim absolute action.
* **Plus LeRobot's generic LIBERO state** (``observation.libero_state``, 8 dims: ``[eef_pos(3),
  axis-angle(3), gripper qpos(2)]``, what ``lerobot.processor.env_processor.LiberoProcessorStep``
  gives π0/π0.5 in a rollout): the 20-dim proprio has no gripper opening, so a π policy could not
  be trained from it. X-VLA's readers never read it; datasets recorded before it existed lack it
  and π SFT refuses them (re-record).
* Images are stored as images (PNG frames), not video: decoding needs nothing beyond Pillow.
"""

from __future__ import annotations

from typing import Any

from pirl_core.policies.pi.libero import DEMO_STATE_KEY
from pirl_core.policies.pi.libero import STATE_DIM as PI_STATE_DIM
from pirl_core.policies.xvla.libero import (
    EE6D_ACTION_DIM,
    GRIPPER_CHANNEL,
    IMAGE_KEYS,
    LIBERO_STATE_DIM,
    STATE_KEY,
)

FPS = 20  # LIBERO's control frequency (robosuite control_freq=20)
ROBOT_TYPE = "panda"
AGENTVIEW_KEY, WRIST_KEY = IMAGE_KEYS  # X-VLA's LIBERO keys (pirl_core/policies/xvla/libero.py)
ACTION_KEY = "action"
STATE_DIM = LIBERO_STATE_DIM
ACTION_DIM = EE6D_ACTION_DIM
LIBERO_STATE_KEY = DEMO_STATE_KEY  # LeRobot's generic LIBERO state (π's observation.state)
LIBERO_STATE_DIM = PI_STATE_DIM
__all__ = [
    "ACTION_DIM",
    "ACTION_KEY",
    "AGENTVIEW_KEY",
    "FPS",
    "GRIPPER_CHANNEL",
    "IMAGE_KEYS",
    "LIBERO_STATE_DIM",
    "LIBERO_STATE_KEY",
    "ROBOT_TYPE",
    "STATE_DIM",
    "STATE_KEY",
    "WRIST_KEY",
    "features",
]


def features(camera_size: int, libero_state: bool = True) -> dict[str, dict[str, Any]]:
    """``LeRobotDataset.create(features=...)`` for demonstrations rendered at ``camera_size``
    (``libero_state=False``: the layout before :data:`LIBERO_STATE_KEY`, for tests of old datasets)."""
    image = {
        "dtype": "image",
        "shape": (camera_size, camera_size, 3),
        "names": ["height", "width", "channels"],
    }
    out = {
        AGENTVIEW_KEY: dict(image),
        WRIST_KEY: dict(image),
        STATE_KEY: {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        ACTION_KEY: {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
    }
    if libero_state:
        out[LIBERO_STATE_KEY] = {"dtype": "float32", "shape": (LIBERO_STATE_DIM,), "names": None}
    return out
