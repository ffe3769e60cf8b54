"""A small synthetic demonstration dataset in pirl's schema, written with LeRobot's own API.

Why: SFT and dataset tests need a real ``LeRobotDataset`` on disk (parquet + PNG frames + meta)
without running LIBERO. Images are random; the actions follow a simple learnable rule, so a few
dozen SFT steps must lower the loss: the end effector moves along a straight line, the ee6d target
is the state's position plus a per-task offset, rot6d is the identity, and the gripper closes
half-way through the episode. The 8-dim LIBERO state (π's) carries the same position, a zero
axis-angle (the identity) and a gripper opening that follows the command one frame late.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pirl_core.recipe import demo_schema as schema

TASKS: tuple[str, ...] = (
    "put both the alphabet soup and the tomato sauce in the basket",
    "pick up the black bowl and place it on the plate",
)
IDENTITY_ROT6D = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float32)


def synthetic_frame(
    rng: np.random.Generator,
    camera_size: int,
    task_id: int,
    t: int,
    length: int,
    tasks: tuple[str, ...] = TASKS,
) -> dict:
    pos = np.full(3, -0.2 + 0.4 * t / length, dtype=np.float32)
    state = np.zeros(schema.STATE_DIM, dtype=np.float32)
    state[:3] = pos
    state[3:9] = IDENTITY_ROT6D
    action = np.zeros(schema.ACTION_DIM, dtype=np.float32)
    action[:3] = pos + (0.2 if task_id == 0 else -0.2)
    action[3:9] = IDENTITY_ROT6D
    action[schema.GRIPPER_CHANNEL] = 1.0 if t >= length // 2 else 0.0
    libero_state = np.zeros(schema.LIBERO_STATE_DIM, dtype=np.float32)
    libero_state[:3] = pos
    libero_state[6:] = (0.0, 0.0) if t > length // 2 else (0.04, -0.04)
    image = (rng.integers(0, 256, (camera_size, camera_size, 3))).astype(np.uint8)
    wrist = (rng.integers(0, 256, (camera_size, camera_size, 3))).astype(np.uint8)
    return {
        schema.AGENTVIEW_KEY: image,
        schema.WRIST_KEY: wrist,
        schema.STATE_KEY: state,
        schema.ACTION_KEY: action,
        schema.LIBERO_STATE_KEY: libero_state,
        "task": tasks[task_id],
    }


def write_synthetic_demos(
    root: Path,
    camera_size: int = 32,
    episodes: int = 2,
    length: int = 12,
    seed: int = 0,
    tasks: tuple[str, ...] = TASKS,
    libero_state: bool = True,
) -> Path:
    """Write ``episodes`` episodes (alternating tasks) of ``length`` frames under ``root``
    (``libero_state=False``: without ``schema.LIBERO_STATE_KEY``, as datasets recorded before it)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.create(
        repo_id="pirl/synthetic_demos",
        fps=schema.FPS,
        features=schema.features(camera_size, libero_state=libero_state),
        root=root,
        robot_type=schema.ROBOT_TYPE,
        use_videos=False,
    )
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        for t in range(length):
            frame = synthetic_frame(rng, camera_size, ep % len(tasks), t, length, tasks)
            if not libero_state:
                del frame[schema.LIBERO_STATE_KEY]
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return Path(root)
