"""π0/π0.5's LIBERO embodiment: what the builder, the processors and the adapter share.

LeRobot's ``LiberoProcessorStep`` (what ``lerobot-eval`` runs for LIBERO) gives the 8-dim state
``[eef_pos(3), eef_axis_angle(3), gripper_qpos(2)]`` and flips both views; the π LIBERO checkpoints
(``lerobot/pi05_libero``) act in LIBERO's native *relative* control, 7-dim actions in [-1, 1]
(``env.control_mode = "relative"``).

π0.5 writes the state into its prompt as 256-bin integers of the *normalised* state, and both
models normalise with quantiles (π0: mean/std). A checkpoint carries the statistics it was trained
with in its preprocessor; a policy pirl builds from config carries these, LIBERO's workspace bounds
(metres, radians), so every state maps into [-1, 1] and actions stay LIBERO's own [-1, 1].
"""

from __future__ import annotations

import math

IMAGE_KEYS: tuple[str, ...] = ("observation.images.image", "observation.images.image2")
STATE_KEY = "observation.state"
ACTION_KEY = "action"
STATE_DIM = 8  # eef_pos(3), axis-angle(3), gripper qpos(2)
ACTION_DIM = 7  # relative eef xyz, axis-angle, gripper (LIBERO native)
GRIPPER_QPOS = 0.05  # finger joint range (m), both signs

# (low, high) per state dimension: the bounds map to -1 / +1 (QUANTILES q01 / q99; MEAN_STD the
# same affine map: mean = midpoint, std = half-range).
STATE_BOUNDS: tuple[tuple[float, float], ...] = (
    (-0.5, 0.5),
    (-0.5, 0.5),
    (0.5, 1.5),
    (-math.pi, math.pi),
    (-math.pi, math.pi),
    (-math.pi, math.pi),
    (-GRIPPER_QPOS, GRIPPER_QPOS),
    (-GRIPPER_QPOS, GRIPPER_QPOS),
)
ACTION_BOUNDS: tuple[tuple[float, float], ...] = ((-1.0, 1.0),) * ACTION_DIM


def normalisation_stats() -> dict[str, dict[str, list[float]]]:
    """LeRobot ``dataset_stats`` for the state and action: both quantile and mean/std forms."""

    def stats(bounds: tuple[tuple[float, float], ...]) -> dict[str, list[float]]:
        low = [lo for lo, _ in bounds]
        high = [hi for _, hi in bounds]
        return {
            "q01": low,
            "q99": high,
            "min": low,
            "max": high,
            "mean": [(lo + hi) / 2 for lo, hi in bounds],
            "std": [(hi - lo) / 2 for lo, hi in bounds],
        }

    return {STATE_KEY: stats(STATE_BOUNDS), ACTION_KEY: stats(ACTION_BOUNDS)}
