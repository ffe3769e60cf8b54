"""``action_drift``: how far the deterministic (ODE) action moved, measured every update.

Why: PPO's approx_kl and clip fraction describe what the ratio scores; they said nothing while
the LIBERO lift runs moved the executed action by 24-41 mm (README, "LIBERO: demonstrations →
SFT → RL"). This measures the move itself, in the env's own units, on a fixed probe set of
observations (the online version of ``benchmarks/libero_lift_drift.py``):

* the probe set: ``recipe.drift_probe_states`` observations evenly spaced over the run's first
  update's batch (so several episodes and chunk indices, not one episode's start), kept for the
  whole run;
* each measurement runs the ODE sampler from the same initial noise (a fixed-seed generator), so
  a difference is a change of the policy, never of the noise, and maps the chunk to env actions
  through the adapter (``to_env_action``: the executed steps, LIBERO's absolute ee targets in m);
* it compares against the update's start and against the run's start (the SFT policy):
  ``action_drift_l2`` (plain L2 of the env action per executed step, mean), ``action_drift_xyz_mm``
  (L2 of the position dims in mm: LIBERO's first 3 dims; toy's 2-D position in its units x 1000),
  ``action_drift_gripper_flips`` (fraction of executed steps whose gripper decision, the sign of
  the last dim, changed; LIBERO only), each also with a ``_start`` suffix.

Resume: the probe set and the start actions are saved once to ``<output_dir>/drift_probe.pt``
(:data:`PROBE_FILE`) and loaded on resume, so a resumed run keeps measuring against the same
states and the same SFT actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

ActionSpace = Literal["ee_metres", "plain"]
PROBE_FILE = "drift_probe.pt"
PROBE_SEED = 0
"""Seed of the initial noise of every probe measurement (same noise before and after)."""
POSITION_DIMS = 3  # LIBERO: absolute end-effector target x, y, z in metres


def action_space_of(cfg) -> ActionSpace:
    """LIBERO with absolute control: env actions are end-effector targets in metres plus a
    gripper command (sign = decision); anything else is compared as a plain vector."""
    from pirl_core.envs.registry import env_family

    return env_family(cfg.env.type).action_space(cfg.env)


@dataclass
class DriftProbe:
    obs: dict[str, Tensor]  # (N, ...) fixed observations, on the CPU
    start: np.ndarray  # (N, action_steps, env_dim) env actions of the run's start policy

    def state(self) -> dict:
        return {"obs": self.obs, "start": torch.from_numpy(self.start)}

    @classmethod
    def from_state(cls, state: dict) -> DriftProbe:
        return cls({k: v for k, v in state["obs"].items()}, state["start"].numpy())


def compare(now: np.ndarray, ref: np.ndarray, space: ActionSpace, suffix: str = "") -> dict[str, float]:
    """Drift metrics of env actions ``now`` against ``ref``, both (N, steps, dim)."""
    diff = now.astype(np.float64) - ref.astype(np.float64)
    out = {f"action_drift_l2{suffix}": float(np.linalg.norm(diff, axis=-1).mean())}
    position = slice(0, POSITION_DIMS) if space == "ee_metres" else slice(None)
    out[f"action_drift_xyz_mm{suffix}"] = float(np.linalg.norm(diff[..., position], axis=-1).mean() * 1000)
    if space == "ee_metres":
        flips = np.sign(now[..., -1]) != np.sign(ref[..., -1])
        out[f"action_drift_gripper_flips{suffix}"] = float(flips.mean())
    return out


class ActionDrift:
    """The probe set and the reference actions of one run (owned by the trainer)."""

    def __init__(self, probe_states: int, space: ActionSpace) -> None:
        self.probe_states = probe_states
        self.space: ActionSpace = space
        self.probe: DriftProbe | None = None
        self.update_start: np.ndarray | None = None
        self.created = False  # the probe was made in this process (the learner then saves it)
        # On a resume without a probe file: a copy of the run's start policy, which gives the start
        # actions of the probe set drawn from the first batch after the resume (then dropped).
        self.start_model = None

    def env_actions(self, actor_critic, obs: dict[str, Tensor] | None = None) -> np.ndarray:
        """Deterministic chunks of ``obs`` (default: the probe set) as env actions."""
        obs = self.probe.obs if obs is None else obs  # type: ignore[union-attr]
        device = actor_critic.device
        obs = {k: v.to(device) for k, v in obs.items()}
        generator = torch.Generator(device="cpu").manual_seed(PROBE_SEED)
        out = actor_critic.act(obs, generator, deterministic=True)
        return np.asarray(actor_critic.adapter.to_env_action(out.x0, obs), dtype=np.float64)

    def begin_update(self, actor_critic, obs: dict[str, Tensor]) -> None:
        """Before an update's first step: the probe set (from ``obs`` if there is none yet; the
        policy now is then the run's start) and the update-start actions."""
        if self.probe is None:
            rows = next(iter(obs.values())).shape[0]
            pick = torch.linspace(0, rows - 1, min(self.probe_states, rows)).round().long().unique()
            probe_obs = {k: v[pick].detach().cpu().clone() for k, v in obs.items()}
            now = self.env_actions(actor_critic, probe_obs)
            start = now if self.start_model is None else self.env_actions(self.start_model, probe_obs)
            self.probe = DriftProbe(probe_obs, start)
            self.start_model = None
            self.created = True
            self.update_start = now
            return
        self.update_start = self.env_actions(actor_critic)

    def measure(self, actor_critic) -> dict[str, float]:
        """Drift of the current policy against the update's start and the run's start."""
        assert self.probe is not None and self.update_start is not None, "begin_update first"
        now = self.env_actions(actor_critic)
        return {
            **compare(now, self.update_start, self.space),
            **compare(now, self.probe.start, self.space, suffix="_start"),
        }

    # ------------------------------------------------------------------ persistence

    def save(self, output_dir: Path | str) -> Path:
        """Write the probe set and the start actions (once per run, atomically)."""
        assert self.probe is not None
        path = Path(output_dir) / PROBE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{PROBE_FILE}.tmp")
        torch.save(self.probe.state(), tmp)
        tmp.replace(path)
        self.created = False
        return path

    def load(self, path: Path) -> None:
        self.probe = DriftProbe.from_state(torch.load(path, map_location="cpu", weights_only=True))
        self.created = False

    def resume(self, output_dir: Path | str, checkpoint: Path | None, start_policy) -> None:
        """Call before the checkpoint's weights are loaded: load the run's probe file, or (an
        older run without one) keep a copy of ``start_policy`` (the freshly built start) to
        re-derive the start actions on the next batch's observations."""
        path = find_probe(output_dir, checkpoint)
        if path is not None:
            self.load(path)
            # a fork (--resume-from another run's checkpoint) keeps its own copy for later resumes
            self.created = path.parent.resolve() != Path(output_dir).resolve()
        else:
            import copy

            self.start_model = copy.deepcopy(start_policy)


def find_probe(output_dir: Path | str, checkpoint: Path | None) -> Path | None:
    """The probe file of a resumed run: in the output dir, or in the run dir of the checkpoint
    resumed from (a fork into a new output dir)."""
    candidates = [Path(output_dir) / PROBE_FILE]
    if checkpoint is not None:
        candidates += [parent / PROBE_FILE for parent in Path(checkpoint).resolve().parents[:3]]
    return next((p for p in candidates if p.is_file()), None)
