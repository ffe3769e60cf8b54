"""The chunk step (``PirlVectorEnv.step_chunk``): what it returns equals stepping one action at a
time with every frame rendered, while rendering only the frames that are read.

LIBERO cases (slow): an episode that succeeds mid-chunk (a scripted expert's actions) beside one
that reaches the time limit mid-chunk, in-process and with two env workers; the chunk-boundary
observations (images bitwise), rewards, successes and episode ends must equal the every-step
reference of the same env.
"""

from __future__ import annotations

import numpy as np
import pytest

from pirl_core.config import EnvConfig, load_config
from pirl_core.envs.base import ChunkResult, PirlVectorEnv
from pirl_core.envs.factory import make_env
from pirl_core.envs.workers import WorkerVectorEnv, make_local_env

K = 8  # executed chunk steps, as smoke and libero_small


def reference_chunks(env: PirlVectorEnv, actions: np.ndarray, k: int) -> list[dict]:
    """Step one action at a time (every frame rendered); cut the trajectory into chunks the way
    the collector does: a sub-env stops at termination or at the time limit."""
    n, horizon, _ = actions.shape
    steps = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    chunks = []
    pos = 0
    while active.any() and pos < horizon:
        alive = active.copy()
        reward = np.zeros(n)
        succ = np.zeros(n, dtype=bool)
        term = np.zeros(n, dtype=bool)
        executed = np.zeros(n, dtype=np.int64)
        obs_rows: dict[int, dict] = {}
        for s in range(k):
            res = env.step(actions[:, pos + s])
            for i in np.flatnonzero(alive):
                reward[i] += res.reward[i]
                succ[i] |= bool(res.success[i])
                executed[i] += 1
                steps[i] += 1
                if res.terminated[i] or steps[i] >= env.max_episode_steps:
                    term[i] = bool(res.terminated[i])
                    alive[i] = False
                    obs_rows[i] = _row(res.obs, i)
            if not alive.any():
                break
        for i in np.flatnonzero(alive):
            obs_rows[i] = _row(res.obs, i)
        chunks.append(
            {"obs": obs_rows, "reward": reward, "success": succ, "terminated": term, "executed": executed}
        )
        active &= alive
        pos += k
    return chunks


def chunked(env: PirlVectorEnv, actions: np.ndarray, k: int) -> list[dict]:
    n, horizon, _ = actions.shape
    steps = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    chunks = []
    pos = 0
    while active.any() and pos < horizon:
        limit = np.where(active, env.max_episode_steps - steps, 0)
        res = env.step_chunk(actions[:, pos : pos + k], limit)
        assert isinstance(res, ChunkResult)
        executed = np.where(active, res.executed, 0)
        steps += executed
        term = active & res.terminated.any(axis=1)
        chunks.append(
            {
                "obs": {int(i): _row(res.obs, int(i)) for i in np.flatnonzero(active)},
                "reward": np.where(active, res.reward.sum(axis=1), 0.0),
                "success": active & res.success.any(axis=1),
                "terminated": term,
                "executed": executed,
            }
        )
        active &= ~(term | (steps >= env.max_episode_steps))
        pos += k
    return chunks


def _row(raw: dict, i: int) -> dict:
    out = {}
    for key, value in raw.items():
        if key == "task":
            out[key] = value[i]
        elif isinstance(value, dict):
            out[key] = _row(value, i)
        else:
            out[key] = np.array(value[i])
    return out


def assert_same_chunks(ref: list[dict], got: list[dict]) -> None:
    assert len(ref) == len(got)
    for c, (a, b) in enumerate(zip(ref, got, strict=True)):
        for key in ("reward", "success", "terminated", "executed"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"chunk {c}: {key}")
        assert a["obs"].keys() == b["obs"].keys(), f"chunk {c}"
        for i in a["obs"]:
            _assert_same_tree(a["obs"][i], b["obs"][i], f"chunk {c} sub-env {i}")


def _assert_same_tree(a: dict, b: dict, path: str) -> None:
    assert a.keys() == b.keys(), path
    for key in a:
        if isinstance(a[key], dict):
            _assert_same_tree(a[key], b[key], f"{path}.{key}")
        elif key == "task":
            assert a[key] == b[key], path
        else:
            assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, f"{path}.{key}"
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path}.{key}")


# ------------------------------------------------------------------ toy (the default step_chunk)


def test_toy_chunk_step_equals_stepping_with_a_time_limit_mid_chunk() -> None:
    cfg = load_config("toy", {"env.n_envs": 3, "env.episode_length": 10})
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(3, 16, 2)).astype(np.float32) * 0.3
    ref_env, chunk_env = make_env(cfg), make_env(cfg)
    ref_env.reset([0, 1, 2])
    chunk_env.reset([0, 1, 2])
    ref, got = reference_chunks(ref_env, actions, 4), chunked(chunk_env, actions, 4)
    assert_same_chunks(ref, got)
    assert got[-1]["executed"].max() == 2  # the limit (10) fell inside the third chunk of 4


def test_step_chunk_rejects_an_all_zero_limit() -> None:
    env = make_env(load_config("toy", {"env.n_envs": 2}))
    env.reset([0, 1])
    with pytest.raises(ValueError, match="no sub-env has steps left"):
        env.step_chunk(np.zeros((2, 4, 2)), np.zeros(2, dtype=np.int64))


# ------------------------------------------------------------------ LIBERO (slow)

# Slot 0 runs a scripted expert that succeeds at step 97 (mid-chunk: 12 full chunks of 8, then
# its 1st step); slot 1 holds still and reaches the 100-step limit at the 4th step of that chunk.
LIBERO = EnvConfig(
    suite="libero_object", task_ids=[0], n_envs=2, episode_length=100, camera_size=64, hard_reset=False
)


@pytest.fixture(scope="module")
def libero_env():
    env = make_local_env(LIBERO)
    yield env
    env.close()


@pytest.fixture(scope="module")
def expert_actions(libero_env) -> np.ndarray:
    """(2, 104, 7): the expert's actions for slot 0 (init state 0), a hold for slot 1. The
    expert reads privileged object poses, not cameras, so its episode runs without renders."""
    from pirl_core.demos.expert import PickPlaceExpert, goal_of, scene_poses

    raw = libero_env.reset([0, 1])
    sim_env = libero_env._envs[0]._env.env
    obj, region = goal_of(sim_env.parsed_problem)
    expert = PickPlaceExpert(orientation=raw["robot_state"]["eef"]["mat"][0])
    hold = np.concatenate([raw["robot_state"]["eef"]["pos"][1], [0.0, 0.0, 0.0, -1.0]])
    horizon = 104
    actions = np.tile(hold, (2, horizon, 1))
    libero_env._render.skip = True  # only the expert's inputs are needed here
    try:
        for t in range(horizon):
            obj_pos, target_pos = scene_poses(sim_env, obj, region)
            actions[0, t] = expert.act(raw["robot_state"]["eef"]["pos"][0], obj_pos, target_pos)
            res = libero_env.step(actions[:, t])
            raw = res.obs
            if res.success[0]:
                break
    finally:
        libero_env._render.skip = False
    assert res.success[0] and t == 96, (
        f"the expert should succeed at step 97, got success={res.success[0]} t={t}"
    )
    return actions


@pytest.mark.slow
def test_libero_chunk_step_equals_every_step_rendering_in_process(libero_env, expert_actions) -> None:
    libero_env.reset([0, 1])
    ref = reference_chunks(libero_env, expert_actions, K)
    renders_before = libero_env._render.skipped
    libero_env.reset([0, 1])
    got = chunked(libero_env, expert_actions, K)
    assert_same_chunks(ref, got)
    last = got[-1]
    assert last["success"].tolist() == [True, False] and last["terminated"].tolist() == [True, False]
    assert last["executed"].tolist() == [1, 4]  # success at its 1st step, time limit at the 4th
    assert libero_env._render.skipped - renders_before > 0  # frames nobody reads were not rendered


@pytest.mark.slow
def test_libero_chunk_step_equals_every_step_rendering_with_two_workers(expert_actions) -> None:
    env = WorkerVectorEnv(LIBERO, 2)
    try:
        # With hard_reset=false a reset's observation depends on how the sub-env's previous
        # episode ended (a few pixel levels): give the reference run the same history the
        # chunked run will have (the same episode, chunked: the physics is identical).
        env.reset([0, 1])
        chunked(env, expert_actions, K)
        env.reset([0, 1])
        ref = reference_chunks(env, expert_actions, K)
        env.reset([0, 1])
        got = chunked(env, expert_actions, K)
        assert_same_chunks(ref, got)
        assert got[-1]["executed"].tolist() == [1, 4]
    finally:
        env.close()


@pytest.mark.slow
def test_render_every_step_switch_and_video_slots_render_every_frame(expert_actions) -> None:
    """``render_slots`` returns every step's observation of the recorded sub-env, equal to the
    every-step reference; ``env.render_every_step`` renders every step (nothing skipped)."""
    env = make_local_env(LIBERO)
    limit = np.array([100, 100])
    try:
        env.reset([0, 1])  # the same episode first: a soft reset depends on the one before
        env.step_chunk(expert_actions[:, :K], limit)
        env.reset([0, 1])
        ref = [env.step(expert_actions[:, s]).obs for s in range(K)]
        env.reset([0, 1])
        res = env.step_chunk(expert_actions[:, :K], limit, frozenset({0}))
        assert res.step_obs is not None and len(res.step_obs) == K
        for s in range(K):
            np.testing.assert_array_equal(res.step_obs[s]["pixels"]["image"][0], ref[s]["pixels"]["image"][0])
        env.render_every_step = True  # what env.render_every_step=true builds
        env.reset([0, 1])
        before = env._render.skipped
        res = env.step_chunk(expert_actions[:, :K], limit)
        assert env._render.skipped == before and res.step_obs is None
        np.testing.assert_array_equal(res.obs["pixels"]["image"], ref[-1]["pixels"]["image"])
    finally:
        env.close()
