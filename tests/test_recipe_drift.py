"""action_drift telemetry: the metrics' units, the fixed probe set, the update/run references,
the optional bound on an update, and the probe's persistence for a resume."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError
from pirl_core.recipe.drift import PROBE_FILE, ActionDrift, compare
from pirl_core.rollout import collect_rollouts
from tests.inprocess.local_loop import build_loop


def test_units_mm_for_libero_positions_and_gripper_decisions() -> None:
    ref = np.zeros((2, 3, 7))
    ref[..., -1] = -1.0  # gripper open everywhere
    now = ref.copy()
    now[0, :, 0] += 0.003  # 3 mm along x on every step of probe 0
    now[1, 0, -1] = 1.0  # probe 1 closes on its first step
    out = compare(now, ref, "ee_metres")
    assert out["action_drift_xyz_mm"] == pytest.approx(1.5)  # mean over 2 probes x 3 steps
    assert out["action_drift_gripper_flips"] == pytest.approx(1 / 6)
    assert out["action_drift_l2"] == pytest.approx((3 * 0.003 + 2.0) / 6)
    plain = compare(now[..., :2], ref[..., :2], "plain", suffix="_start")
    assert set(plain) == {"action_drift_l2_start", "action_drift_xyz_mm_start"}  # no gripper on toy


def toy(**extra: object):
    return build_loop(load_config("toy", {"env.n_envs": 16, "recipe.method": "flow_sde", **extra}))


def batch_of(state, seed: int = 0):
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, list(range(16)), torch.Generator().manual_seed(seed), 4
    )
    return batch


def test_drift_against_the_update_start_and_the_run_start() -> None:
    state = toy()
    first = state.trainer.update(batch_of(state))
    probe = copy.deepcopy(state.trainer.drift.probe)
    assert next(iter(probe.obs.values())).shape[0] == 16  # recipe.drift_probe_states
    assert first["action_drift_l2"] > 0  # the update moved the deterministic action
    assert first["action_drift_l2_start"] == first["action_drift_l2"]  # update 1 starts at the run's start
    second = state.trainer.update(batch_of(state, seed=1))
    # the probe set is fixed for the run, not re-drawn from the new batch
    assert all(torch.equal(v, state.trainer.drift.probe.obs[k]) for k, v in probe.obs.items())
    assert second["action_drift_l2_start"] != second["action_drift_l2"]
    # exactly the ODE actions' distance: recompute by hand from the start actions
    now = state.trainer.drift.env_actions(state.actor_critic)
    assert second["action_drift_l2_start"] == pytest.approx(
        float(np.linalg.norm(now - probe.start, axis=-1).mean())
    )


def test_unchanged_policy_has_zero_drift_and_off_means_no_metrics() -> None:
    state = toy(**{"recipe.lr": 0.0, "recipe.noise_lr": 0.0})
    metrics = state.trainer.update(batch_of(state))
    assert metrics["action_drift_l2"] == 0.0 and metrics["action_drift_l2_start"] == 0.0
    off = toy(**{"recipe.drift_probe_states": 0})
    assert not any(k.startswith("action_drift") for k in off.trainer.update(batch_of(off)))


def test_max_action_drift_stops_the_update_after_the_crossing_step() -> None:
    state = toy(**{"recipe.max_action_drift_mm": 1e-6, "recipe.update_epochs": 2})
    metrics = state.trainer.update(batch_of(state))
    assert metrics["drift_stopped"] == 1.0
    assert metrics["minibatch_steps"] == 1.0  # of 2 epochs x 4 minibatches
    assert metrics["action_drift_xyz_mm"] > 1e-6
    free = toy(**{"recipe.update_epochs": 2})
    assert free.trainer.update(batch_of(free))["minibatch_steps"] == 8.0


def test_probe_file_round_trip_and_rederived_start_on_resume(tmp_path: Path) -> None:
    state = toy()
    start_policy = copy.deepcopy(state.actor_critic)
    first = state.trainer.update(batch_of(state))
    assert state.trainer.drift.created
    state.trainer.drift.save(tmp_path)
    assert (tmp_path / PROBE_FILE).is_file() and not state.trainer.drift.created

    # a resumed trainer loads the probe: the same drift against the run's start
    resumed = ActionDrift(16, "plain")
    resumed.resume(tmp_path, None, start_policy)
    assert resumed.start_model is None and not resumed.created
    fork = ActionDrift(16, "plain")  # --resume-from a checkpoint of the run in tmp_path
    fork.resume(tmp_path / "fork", tmp_path / "checkpoints" / "000001", start_policy)
    assert fork.probe is not None and fork.created  # the learner copies it into the fork's dir
    resumed.begin_update(state.actor_critic, {})
    assert resumed.measure(state.actor_critic)["action_drift_l2_start"] == pytest.approx(
        first["action_drift_l2_start"]
    )
    # without a probe file the start actions are re-derived from a copy of the start policy
    rederived = ActionDrift(16, "plain")
    rederived.resume(tmp_path / "nothing", None, start_policy)
    rederived.begin_update(state.actor_critic, state.trainer.drift.probe.obs)
    assert rederived.created
    assert rederived.measure(state.actor_critic)["action_drift_l2_start"] == pytest.approx(
        first["action_drift_l2_start"]
    )


def test_drift_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="recipe.drift_probe_states"):
        load_config("toy", {"recipe.drift_probe_states": 0, "recipe.max_action_drift_mm": 5.0})
    with pytest.raises(ConfigError, match="recipe.max_action_drift_mm"):
        load_config("toy", {"recipe.max_action_drift_mm": -1.0})
    with pytest.raises(ConfigError, match="recipe.max_action_drift_mm"):
        load_config("toy", {"recipe.max_action_drift_mm": 5.0, "learner.nproc": 2})


def test_xvla_drift_is_in_mm_with_gripper_decisions() -> None:
    """On the LIBERO action space (absolute ee targets in metres + gripper): xyz in mm and the
    gripper's sign flips, through X-VLA's own action post-processing."""
    from pirl_core.envs.factory import task_descriptions
    from pirl_core.policies.factory import make_adapter
    from pirl_core.recipe.actor_critic import build_actor_critic
    from pirl_core.recipe.trainer import trainer_for
    from tests.batches import one_chunk_episodes
    from tests.libero_synthetic import synthetic_raw_obs

    cfg = load_config("libero_tiny", {"recipe.update_epochs": 1, "recipe.lr": 1e-2})
    torch.manual_seed(0)
    ac = build_actor_critic(make_adapter(cfg, task_descriptions(cfg)), cfg.recipe, seed=cfg.seed)
    trainer = trainer_for(cfg, ac)
    assert trainer.drift.space == "ee_metres"
    obs = ac.adapter.prepare_obs(synthetic_raw_obs(4, size=cfg.env.camera_size))
    out = ac.act(obs, torch.Generator().manual_seed(0))
    batch = one_chunk_episodes(
        obs, out.chain, out.sde_step, out.logp, out.value, torch.tensor([1.0, 0, 1, 0])
    )
    metrics = trainer.update(batch)
    start = trainer.drift.probe.start
    assert start.shape == (4, cfg.policy.action_steps, 7)  # executed steps x LIBERO's 7-dim action
    assert metrics["action_drift_xyz_mm"] > 0
    assert 0.0 <= metrics["action_drift_gripper_flips"] <= 1.0
    now = trainer.drift.env_actions(ac)
    mm = float(np.linalg.norm((now - start)[..., :3], axis=-1).mean() * 1000)
    assert metrics["action_drift_xyz_mm_start"] == pytest.approx(mm)
