"""π0/π0.5's LIBERO embodiment: what the builder, the processors and the adapter share.

LeRobot's ``LiberoProcessorStep`` (what ``lerobot-eval`` runs for LIBERO) gives the 8-dim state
``[eef_pos(3), eef_axis_angle(3), gripper_qpos(2)]`` and flips both views; the π LIBERO checkpoints
(``lerobot/pi05_libero``) act in LIBERO's native *relative* control, 7-dim actions in [-1, 1]
(``env.control_mode = "relative"``).

A π trained by pirl's SFT on pirl's demonstrations (``pirl_core.recipe.demo_schema``) acts in
*absolute* control instead (``env.control_mode = "absolute"``): 7-dim LIBERO absolute actions
``[target xyz (m), target axis-angle (rad), gripper +-1]``, what LeRobot's X-VLA env postprocessor
makes of the recorded ee6d targets (docs/design.md, "SFT"). The action statistics therefore depend
on the control mode (:func:`action_bounds`); a checkpoint records its mode (``CONTROL_FILE``).

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
# where pirl's demonstration datasets keep this state (pirl_core/recipe/demo_schema.py: their
# observation.state is X-VLA's 20-dim proprio)
DEMO_STATE_KEY = "observation.libero_state"
ACTION_DIM = 7  # eef xyz, axis-angle, gripper (relative: LIBERO native deltas; absolute: targets)
GRIPPER_QPOS = 0.05  # finger joint range (m), both signs

# End-effector positions in LIBERO's world frame (metres). z spans floor scenes (libero_object: the
# gripper starts at z = 0.25 and grasps near 0.04) and table scenes (libero_spatial / goal start at
# 1.17, libero_10 at 0.70): measured at reset, tests/test_pi_sft.py. Below -1 π0.5's state bins
# turn into "-1" (LeRobot digitises without clipping), which no tokenizer knows.
WORKSPACE_XYZ: tuple[tuple[float, float], ...] = ((-0.5, 0.5), (-0.5, 0.5), (-0.1, 1.5))
# LeRobot's quat2axisangle returns angles in [0, 2 pi]: a downward gripper's first component sits
# at +-pi and crosses it, so the state's axis-angle bounds are one full turn each way.
STATE_AXIS_ANGLE = (-2 * math.pi, 2 * math.pi)
# (low, high) per state dimension: the bounds map to -1 / +1 (QUANTILES q01 / q99; MEAN_STD the
# same affine map: mean = midpoint, std = half-range).
STATE_BOUNDS: tuple[tuple[float, float], ...] = (
    *WORKSPACE_XYZ,
    STATE_AXIS_ANGLE,
    STATE_AXIS_ANGLE,
    STATE_AXIS_ANGLE,
    (-GRIPPER_QPOS, GRIPPER_QPOS),
    (-GRIPPER_QPOS, GRIPPER_QPOS),
)
RELATIVE_ACTION_BOUNDS: tuple[tuple[float, float], ...] = ((-1.0, 1.0),) * ACTION_DIM
# absolute targets: the workspace for xyz, +-pi for each axis-angle component (LeRobot's
# rotate6d_to_axis_angle returns angles in [0, pi]), the gripper command
ABSOLUTE_ACTION_BOUNDS: tuple[tuple[float, float], ...] = (
    *WORKSPACE_XYZ,
    *((-math.pi, math.pi),) * 3,
    (-1.0, 1.0),
)
CONTROL_MODES = ("relative", "absolute")


def action_bounds(control_mode: str) -> tuple[tuple[float, float], ...]:
    """(low, high) per action dimension for ``env.control_mode``: what the statistics map to
    [-1, 1] and what an executed action is clipped to."""
    if control_mode not in CONTROL_MODES:
        raise ValueError(f"control mode {control_mode!r} is not one of {CONTROL_MODES}")
    return ABSOLUTE_ACTION_BOUNDS if control_mode == "absolute" else RELATIVE_ACTION_BOUNDS


def normalisation_stats(control_mode: str = "relative") -> dict[str, dict[str, list[float]]]:
    """LeRobot ``dataset_stats`` for the state and action under ``control_mode``: both quantile
    and mean/std forms."""

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

    return {STATE_KEY: stats(STATE_BOUNDS), ACTION_KEY: stats(action_bounds(control_mode))}
