"""The toy point-reach env, its factory entries and the MLP policy's persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pirl_core.config import load_config
from pirl_core.envs import toy
from pirl_core.envs.factory import make_env, task_descriptions
from pirl_core.errors import ConfigError
from pirl_core.policies.factory import make_adapter
from pirl_core.policies.mlp import MLPCleanActionAdapter, MLPFlowAdapter


def env_for(
    suite: str = "point_reach", n_envs: int = 4, task_ids: list[int] | None = None
) -> toy.PointReachEnv:
    cfg = load_config("toy", {"env.suite": suite, "env.n_envs": n_envs, "env.task_ids": task_ids or [0]})
    env = make_env(cfg)
    assert isinstance(env, toy.PointReachEnv)
    return env


def test_initial_states_are_a_function_of_task_and_id() -> None:
    a = toy.initial_state(0, 17)
    assert all(np.array_equal(x, y) for x, y in zip(a, toy.initial_state(0, 17), strict=True))
    assert not np.array_equal(a[0], toy.initial_state(0, 18)[0])
    for task in range(4):
        for sid in range(50):
            start, goal = toy.initial_state(task, sid)
            d = goal - start
            assert toy.GOAL_MIN_DIST <= np.linalg.norm(d) <= toy.GOAL_MAX_DIST
            angle = math.atan2(d[1], d[0]) % (2 * math.pi)
            assert task * math.pi / 2 <= angle < (task + 1) * math.pi / 2 + 1e-9


def test_heading_for_the_goal_succeeds_and_terminates_with_sparse_reward() -> None:
    env = env_for(n_envs=2)
    obs = env.reset([3, 3])
    rewards, steps = [], 0
    for _ in range(env.max_episode_steps):
        to_goal = obs["state"][:, 2:]
        action = np.stack([to_goal[0] / np.linalg.norm(to_goal[0]) * 5.0, np.zeros(2)])  # env 1 stays
        res = env.step(action)
        obs, steps = res.obs, steps + 1
        rewards.append(res.reward)
        if res.terminated[0]:
            break
    assert res.terminated[0] and res.success[0] and not res.terminated[1]
    r = np.array(rewards)
    assert r[:, 0].sum() == 1.0 and r[-1, 0] == 1.0 and r[:, 1].sum() == 0.0
    # The action was clipped to the unit disk: the point moved STEP per env step.
    start, goal = toy.initial_state(0, 3)
    assert steps == math.floor((np.linalg.norm(goal - start) - toy.RADIUS) / toy.STEP) + 1
    assert np.linalg.norm(obs["state"][0, 2:]) < toy.RADIUS


def test_shaped_reward_is_distance_progress_plus_success() -> None:
    env = env_for("point_reach_shaped", n_envs=1)
    obs = env.reset([5])
    d0 = float(np.linalg.norm(obs["state"][0, 2:]))
    total = 0.0
    for _ in range(3):
        res = env.step(np.array([[1.0, -1.0]]))  # not towards the goal (task 0: north-east)
        total += float(res.reward[0])
    d_end = float(np.linalg.norm(res.obs["state"][0, 2:]))
    assert total == pytest.approx(d0 - d_end)
    assert total < 0


def test_task_ids_and_descriptions_follow_the_config() -> None:
    env = env_for(n_envs=4, task_ids=[1, 3])
    assert env.task_ids() == [1, 3, 1, 3]
    cfg = load_config("toy", {"env.task_ids": [1, 3]})
    assert task_descriptions(cfg) == [toy.task_description(1), toy.task_description(3)]
    assert env.task_descriptions()[:2] == task_descriptions(cfg)


def test_mlp_policy_only_on_the_toy_env() -> None:
    cfg = load_config("toy")
    adapter = make_adapter(cfg, task_descriptions(cfg))
    assert isinstance(adapter, MLPFlowAdapter) and adapter.prediction_type == "velocity"
    libero = load_config("libero_tiny", {"policy.type": "mlp"})
    with pytest.raises(ConfigError, match="policy.type"):
        make_adapter(libero, ["pick up the cup"])


def test_mlp_initial_weights_come_from_the_seed_only() -> None:
    cfg = load_config("toy")
    torch.manual_seed(1)
    a = make_adapter(cfg, [])
    torch.manual_seed(2)
    b = make_adapter(cfg, [])
    c = make_adapter(load_config("toy", {"seed": 5}), [])
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.head.weight, c.head.weight)


@pytest.mark.parametrize("cls", [MLPFlowAdapter, MLPCleanActionAdapter])
def test_mlp_save_pretrained_round_trip(cls: type[MLPFlowAdapter], tmp_path) -> None:
    adapter = cls(obs_dim=4, env_action_dim=2, chunk_size=4, action_steps=3, pad_dims=1)
    torch.nn.init.normal_(adapter.skip.weight)
    adapter.save_pretrained(tmp_path / "pretrained_model")
    assert {p.name for p in (tmp_path / "pretrained_model").iterdir()} == {"config.json", "model.safetensors"}
    loaded = MLPFlowAdapter.from_pretrained(tmp_path / "pretrained_model")
    assert type(loaded) is cls and loaded.identity() == adapter.identity()
    obs = {"state": torch.randn(3, 4)}
    x, t = torch.randn(3, 4, 3), torch.full((3,), 0.5)
    with torch.no_grad():
        assert torch.equal(
            loaded.predict(x, t, loaded.encode(obs)).value, adapter.predict(x, t, adapter.encode(obs)).value
        )


def test_toy_runs_never_import_the_simulator_or_lerobot() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pirl_core.config import load_config; "
        "from pirl_core.envs.factory import make_env, task_descriptions; "
        "from pirl_core.policies.factory import make_adapter; "
        "cfg = load_config('toy'); make_env(cfg); make_adapter(cfg, task_descriptions(cfg)); "
        "heavy = [m for m in ('robosuite', 'libero', 'lerobot', 'transformers', 'mujoco') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
