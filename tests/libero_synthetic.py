"""A random observation batch in the raw layout of LeRobot's LIBERO wrapper.

Why it exists: the X-VLA processor chain, its tests and the encoding benchmark need realistic
inputs (nested dicts, HWC uint8 cameras, a proper rotation matrix, instruction strings) without
paying seconds per simulator reset. Shapes and key names mirror ``lerobot/envs/libero.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_TASK = "put both the alphabet soup and the tomato sauce in the basket"


def synthetic_raw_obs(
    batch: int = 2, seed: int = 0, size: int = 256, task: str = DEFAULT_TASK
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    mats = np.stack([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(batch)])
    return {
        "pixels": {
            "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "image2": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
        },
        "robot_state": {
            "eef": {"pos": rng.normal(size=(batch, 3)), "quat": rng.normal(size=(batch, 4)), "mat": mats},
            "gripper": {"qpos": rng.normal(size=(batch, 2)), "qvel": rng.normal(size=(batch, 2))},
            "joints": {"pos": rng.normal(size=(batch, 7)), "vel": rng.normal(size=(batch, 7))},
        },
        "task": [task] * batch,
    }
