"""LIBERO's 7-dim absolute action <-> X-VLA's 20-dim ee6d action (docs/design.md, "Demonstrations").

Why here and not LeRobot: LeRobot ships only the policy-to-env direction
(``XVLARotation6DToAxisAngleProcessorStep``). Demonstrations need the inverse, and it must use
exactly LeRobot's conventions so a policy that learns the recorded ee6d actions drives the arm the
way the expert did: rot6d = the first two *columns* of the rotation matrix (``LiberoProcessorStep.
_mat_to_rotate6d``), gripper channel 1 = close / 0 = open (LeRobot thresholds it at 0.5 into +1 / -1).

Axis-angle is ambiguous at 180 degrees (a downward gripper sits near it); :func:`canonical_axis_angle`
picks LeRobot's own representative, so ``env_post(to_ee6d(a)) == a`` for actions built with it.
"""

from __future__ import annotations

import numpy as np

from pirl_core.recipe.demo_schema import ACTION_DIM, GRIPPER_CHANNEL


def axis_angle_to_mat(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: (3,) axis * angle -> (3, 3) rotation matrix."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * (kx @ kx)


def mat_to_rot6d(mat: np.ndarray) -> np.ndarray:
    """(3, 3) -> (6,): first column then second column, as LeRobot's ``_mat_to_rotate6d``."""
    mat = np.asarray(mat, dtype=np.float64)
    return np.concatenate([mat[:, 0], mat[:, 1]])


def canonical_axis_angle(mat: np.ndarray) -> np.ndarray:
    """The axis-angle LeRobot's ``rotate6d_to_axis_angle`` returns for ``mat``."""
    from lerobot.policies.xvla.utils import rotate6d_to_axis_angle

    return np.asarray(rotate6d_to_axis_angle(mat_to_rot6d(mat)[None]), dtype=np.float64)[0]


def to_ee6d(action: np.ndarray) -> np.ndarray:
    """(7,) ``[xyz, axis-angle, gripper +-1]`` -> (20,) float32 ``[xyz, rot6d, gripper 1/0, zeros(10)]``."""
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (7,):
        raise ValueError(f"expected a (7,) LIBERO absolute action, got shape {action.shape}")
    out = np.zeros(ACTION_DIM, dtype=np.float32)
    out[:3] = action[:3]
    out[3:9] = mat_to_rot6d(axis_angle_to_mat(action[3:6]))
    out[GRIPPER_CHANNEL] = 1.0 if action[6] > 0 else 0.0
    return out
