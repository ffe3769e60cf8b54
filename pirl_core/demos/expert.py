"""A scripted pick-and-place expert for LIBERO's "put X in Y" tasks, in absolute end-effector control.

Why scripted: pirl needs supervised demonstrations to SFT a small X-VLA before RL (issue 12), and the
real LIBERO demonstrations cannot be fetched here. The expert reads the object's and the target's
poses from the simulator every step (privileged state the policy never sees) and drives the arm in
the control X-VLA's LIBERO processors use (``control_mode="absolute"``: robosuite's OSC with
``use_delta=False``): each 7-dim action is ``[target eef xyz, target orientation as axis-angle,
gripper -1 open / +1 close]``, all in the world frame the eef observation uses.

Why it looks like this:

* **Phases** (approach above the object, descend, close, lift, carry above the target, lower, open,
  retreat) with position tolerances and timeouts: a phase that cannot reach its goal moves on
  rather than stalling, so every episode ends within a bounded number of steps.
* **Smooth targets**: the commanded position moves towards the phase goal by at most
  :attr:`ExpertParams.max_step` per control tick, so the OSC tracks it and the demonstrations are
  the kind of smooth action chunks a flow-matching policy learns easily.
* **Fixed orientation**: the gripper keeps the downward orientation it starts with; its
  axis-angle is computed with LeRobot's own ``rotate6d_to_axis_angle`` so that the ee6d form of
  every action maps back to exactly this action (see :mod:`pirl_core.demos.ee6d`).
* **Deterministic**: no randomness; the same scene gives the same episode.

:class:`PickPlaceExpert` is simulator-independent (poses in, action out); :func:`scene_poses` and
:func:`goal_of` are the only functions that look inside LIBERO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pirl_core.demos.ee6d import canonical_axis_angle

OPEN, CLOSE = -1.0, 1.0
PHASES = ("above", "descend", "close", "lift", "carry", "lower", "release", "retreat", "done")


@dataclass(frozen=True)
class ExpertParams:
    """Geometry and timing of the script (metres, control ticks at 20 Hz)."""

    max_step: float = 0.02  # commanded position change per tick
    hover: float = 0.10  # above the object before descending
    grasp_dz: float = 0.0  # grasp height relative to the object's body origin
    min_grasp_z: float = 0.015  # never command the fingers into the floor
    lift_z: float = 0.25  # carry height
    place_dz: float = 0.12  # release height above the target's body origin
    tol: float = 0.01  # "reached" distance for approach phases
    close_ticks: int = 12  # gripper closing time
    release_ticks: int = 10  # gripper opening time
    timeout: int = 60  # ticks before a moving phase gives up and moves on


@dataclass
class PickPlaceExpert:
    """One episode's state machine. Call :meth:`act` once per control tick."""

    orientation: np.ndarray  # (3, 3) gripper orientation to hold (the initial eef matrix)
    params: ExpertParams = field(default_factory=ExpertParams)
    phase: str = "above"
    ticks: int = 0  # ticks spent in the current phase
    _command: np.ndarray | None = None  # last commanded position
    _axis_angle: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._axis_angle = canonical_axis_angle(np.asarray(self.orientation, dtype=np.float64))

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def _goal(self, eef: np.ndarray, obj: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        p = self.params
        grasp_z = max(obj[2] + p.grasp_dz, p.min_grasp_z)
        if self.phase == "above":
            return np.array([obj[0], obj[1], grasp_z + p.hover]), OPEN
        if self.phase == "descend":
            return np.array([obj[0], obj[1], grasp_z]), OPEN
        if self.phase == "close":
            return self._command, CLOSE
        if self.phase == "lift":
            return np.array([self._command[0], self._command[1], p.lift_z]), CLOSE
        if self.phase == "carry":
            return np.array([target[0], target[1], p.lift_z]), CLOSE
        if self.phase == "lower":
            return np.array([target[0], target[1], target[2] + p.place_dz]), CLOSE
        if self.phase == "release":
            return self._command, OPEN
        return np.array([self._command[0], self._command[1], p.lift_z]), OPEN  # retreat / done

    def _phase_over(self, eef: np.ndarray, goal: np.ndarray) -> bool:
        p = self.params
        if self.phase == "close":
            return self.ticks >= p.close_ticks
        if self.phase == "release":
            return self.ticks >= p.release_ticks
        if self.phase == "done":
            return False
        reached = np.linalg.norm(eef - goal) < p.tol and np.allclose(self._command, goal)
        return reached or self.ticks >= p.timeout

    def act(self, eef: np.ndarray, obj: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Eef, object and target positions (world frame) -> the 7-dim absolute action for this tick."""
        eef = np.asarray(eef, dtype=np.float64)
        if self._command is None:
            self._command = eef.copy()
        goal, gripper = self._goal(eef, obj, target)
        if self._phase_over(eef, goal):
            self.phase = PHASES[PHASES.index(self.phase) + 1]
            self.ticks = 0
            goal, gripper = self._goal(eef, obj, target)
        delta = goal - self._command
        dist = float(np.linalg.norm(delta))
        if dist > self.params.max_step:
            delta *= self.params.max_step / dist
        self._command = self._command + delta
        self.ticks += 1
        return np.concatenate([self._command, self._axis_angle, [gripper]]).astype(np.float64)


def goal_of(parsed_problem: dict[str, Any]) -> tuple[str, str]:
    """(object, target region) of a single ``(In object region)`` BDDL goal, e.g.
    ``('alphabet_soup_1', 'basket_1_contain_region')``."""
    goals = parsed_problem["goal_state"]
    if len(goals) != 1 or goals[0][0].lower() not in ("in", "on"):
        raise ValueError(f"the expert handles one 'in'/'on' goal, got {goals}")
    _, obj, region = goals[0]
    return obj, region


def scene_poses(robosuite_env: Any, obj: str, region: str) -> tuple[np.ndarray, np.ndarray]:
    """World positions of ``obj`` and of the object that owns ``region`` (its body origin)."""
    ids = robosuite_env.obj_body_id
    owner = next((name for name in ids if region.startswith(name)), None)
    if owner is None:
        raise ValueError(f"no object owns region {region!r} (objects: {sorted(ids)})")
    xpos = robosuite_env.sim.data.body_xpos
    return np.array(xpos[ids[obj]]), np.array(xpos[ids[owner]])
