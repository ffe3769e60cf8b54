"""Scripted expert, ee6d conversion and the demonstration dataset (pirl_core.demos, issue 12).

The simulator tests share one recorded expert episode (building a LIBERO env ~10 s, one episode
~10 s on one core): they are ``slow``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.demos.ee6d import axis_angle_to_mat, canonical_axis_angle, to_ee6d
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.recipe import demo_schema as schema

REPO = Path(__file__).resolve().parents[1]
# The eef orientation LIBERO's Panda starts libero_object episodes with (gripper pointing down):
# a rotation of almost 180 degrees, where axis-angle is ambiguous.
DOWN = np.array(
    [
        [9.82098451e-04, 9.98309689e-01, -5.81102388e-02],
        [9.99999481e-01, -9.64611704e-04, 3.28973525e-04],
        [2.72363641e-04, -5.81105317e-02, -9.98310118e-01],
    ]
)


# ------------------------------------------------------------------ fast (no simulator)


def _env_post(actions_ee6d: np.ndarray) -> np.ndarray:
    """pirl's env postprocessor (LeRobot's XVLARotation6DToAxisAngleProcessorStep), as XVLAProcessors.action."""
    from pirl_core.policies.xvla.processors import make_env_processors

    _, post = make_env_processors(128)
    return post({"action": torch.from_numpy(actions_ee6d)})["action"].numpy()


def test_ee6d_round_trips_through_lerobots_env_postprocessor() -> None:
    rng = np.random.default_rng(0)
    actions = []
    for i in range(16):
        axis = rng.normal(size=3)
        angle = rng.uniform(0.0, np.pi - 0.2)
        aa = axis / np.linalg.norm(axis) * angle
        actions.append([*rng.uniform(-0.3, 0.3, size=3), *aa, 1.0 if i % 2 else -1.0])
    # the expert's own orientation: the downward gripper, in LeRobot's canonical axis-angle
    actions.append([0.1, -0.2, 0.25, *canonical_axis_angle(DOWN), 1.0])
    actions = np.asarray(actions)
    ee6d = np.stack([to_ee6d(a) for a in actions])
    assert ee6d.shape == (len(actions), schema.ACTION_DIM) and ee6d.dtype == np.float32
    np.testing.assert_array_equal(ee6d[:, 10:], 0.0)
    np.testing.assert_array_equal(ee6d[:, schema.GRIPPER_CHANNEL], (actions[:, 6] > 0).astype(np.float32))
    back = _env_post(ee6d)
    assert back.shape == (len(actions), 7)
    np.testing.assert_allclose(back, actions, atol=2e-5)


def test_rot6d_uses_lerobots_column_convention() -> None:
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    aa = canonical_axis_angle(DOWN)
    expected = LiberoProcessorStep()._mat_to_rotate6d(torch.from_numpy(axis_angle_to_mat(aa))[None])[0]
    np.testing.assert_allclose(to_ee6d(np.array([0, 0, 0, *aa, -1.0]))[3:9], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(axis_angle_to_mat(aa), DOWN, atol=1e-5)


def test_expert_phases_follow_the_object_and_limit_each_step() -> None:
    from pirl_core.demos.expert import ExpertParams, PickPlaceExpert

    params = ExpertParams()
    expert = PickPlaceExpert(orientation=DOWN, params=params)
    eef, obj, target = np.array([0.0, 0.0, 0.3]), np.array([0.1, 0.1, 0.05]), np.array([-0.1, 0.2, 0.0])
    seen, previous = [], eef
    for _ in range(400):
        action = expert.act(eef, obj, target)
        assert np.linalg.norm(action[:3] - previous) <= params.max_step + 1e-12
        previous = eef = action[:3]  # a perfect tracker
        if not seen or seen[-1][0] != expert.phase:
            seen.append((expert.phase, action[6]))
        if expert.done:
            break
    assert [p for p, _ in seen] == [
        "above",
        "descend",
        "close",
        "lift",
        "carry",
        "lower",
        "release",
        "retreat",
        "done",
    ]
    grip = dict(seen)
    assert (
        grip["descend"] == -1.0 and grip["close"] == 1.0 and grip["carry"] == 1.0 and grip["release"] == -1.0
    )


def test_goal_of_reads_the_bddl_goal() -> None:
    from pirl_core.demos.expert import goal_of

    assert goal_of({"goal_state": [["In", "milk_1", "basket_1_contain_region"]]}) == (
        "milk_1",
        "basket_1_contain_region",
    )
    with pytest.raises(ValueError, match="one 'in'/'on' goal"):
        goal_of({"goal_state": [["Open", "drawer_1"]]})


def test_existing_out_is_refused_and_left_untouched(tmp_path: Path) -> None:
    from pirl_core.demos.record import main

    out = tmp_path / "demos"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="--out"):
        main(["--tasks", "0", "--episodes-per-task", "1", "--out", str(out)])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pirl_core.demos.record",
            "--tasks",
            "0",
            "--episodes-per-task",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ExitCode.USAGE
    assert "--out" in proc.stderr and "a new or empty directory" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--tasks", "0,x"], "--tasks"),
        (["--tasks", "0,0"], "--tasks"),
        (["--tasks", "0", "--episodes-per-task", "0"], "--episodes-per-task"),
    ],
)
def test_bad_flags_name_the_field(tmp_path: Path, argv: list[str], field: str) -> None:
    from pirl_core.demos.record import parse

    defaults = {"--episodes-per-task": "1", "--out": str(tmp_path / "new")}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = [*argv, flag, value]
    with pytest.raises(ConfigError, match=field):
        parse(argv)


@pytest.mark.parametrize(
    ("suite", "tasks", "flag"), [("libero_object", [42], "--tasks"), ("nowhere", [0], "--suite")]
)
def test_unknown_suite_or_task_names_the_flag_and_writes_nothing(
    tmp_path: Path, suite: str, tasks: list[int], flag: str
) -> None:
    from pirl_core.demos.record import parse, record

    out = tmp_path / "new"
    args = parse(
        [
            "--suite",
            suite,
            "--tasks",
            ",".join(map(str, tasks)),
            "--episodes-per-task",
            "1",
            "--out",
            str(out),
        ]
    )
    with pytest.raises(ConfigError, match=f"^{flag}: got") as err:
        record(args)
    assert err.value.value in (suite, tasks)
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------ slow (real LIBERO)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    """One expert episode of libero_object task 0 from init state 0, through the recorder's code."""
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    from pirl_core.config import EnvConfig
    from pirl_core.demos.record import add_episode, create_dataset, frame_values, run_episode
    from pirl_core.envs.libero import LiberoVectorEnv

    cfg = EnvConfig(
        type="libero",
        suite="libero_object",
        task_ids=[0],
        episode_length=200,
        camera_size=128,
        n_envs=1,
        control_mode="absolute",
        hard_reset=False,
    )
    env = LiberoVectorEnv(cfg)
    try:
        raw = env.reset([0])
        first = frame_values({k: v for k, v in raw.items() if k != "task"}, LiberoProcessorStep())
        success, frames = run_episode(env, 0, LiberoProcessorStep())
        instruction = env.task_descriptions()[0]
    finally:
        env.close()
    out = tmp_path_factory.mktemp("demos") / "ds"
    dataset = create_dataset(out, "libero_object", 128)
    add_episode(dataset, frames, instruction)
    dataset.finalize()
    return {"raw": raw, "first": first, "success": success, "frames": frames, "task": instruction, "out": out}


@pytest.mark.slow
def test_expert_succeeds_from_a_fixed_init_state(recorded) -> None:
    assert recorded["success"], (
        f"expert failed libero_object task 0, init state 0 ({len(recorded['frames'])} steps)"
    )
    assert len(recorded["frames"]) <= 150
    gripper = [f[schema.ACTION_KEY][schema.GRIPPER_CHANNEL] for f in recorded["frames"]]
    assert gripper[0] == 0.0 and 1.0 in gripper  # starts open, closes on the object


@pytest.mark.slow
def test_frame_values_are_lerobots_libero_view(recorded) -> None:
    raw, first = recorded["raw"], recorded["first"]
    # agentview rotated by 180 degrees, wrist view as rendered; both HWC uint8, exact
    np.testing.assert_array_equal(first[schema.AGENTVIEW_KEY], raw["pixels"]["image"][0][::-1, ::-1])
    np.testing.assert_array_equal(first[schema.WRIST_KEY], raw["pixels"]["image2"][0])
    state = first[schema.STATE_KEY]
    assert state.shape == (schema.STATE_DIM,) and state.dtype == np.float32
    np.testing.assert_allclose(state[:3], raw["robot_state"]["eef"]["pos"][0], atol=1e-6)
    mat = raw["robot_state"]["eef"]["mat"][0]
    np.testing.assert_allclose(state[3:9], np.concatenate([mat[:, 0], mat[:, 1]]), atol=1e-6)
    np.testing.assert_array_equal(state[9:], 0.0)


@pytest.mark.slow
def test_dataset_round_trips_through_lerobot_dataset(recorded) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from pirl_core.demos.record import repo_id

    frames = recorded["frames"]
    horizon = 8
    ds = LeRobotDataset(
        repo_id("libero_object"),
        root=recorded["out"],
        delta_timestamps={schema.ACTION_KEY: [i / schema.FPS for i in range(horizon)]},
    )
    assert ds.fps == schema.FPS and ds.num_episodes == 1 and len(ds) == len(frames)
    assert ds.meta.robot_type == schema.ROBOT_TYPE
    for i in (0, len(frames) // 2, len(frames) - 1):
        item = ds[i]
        assert item["task"] == recorded["task"]
        for key in schema.IMAGE_KEYS:
            img = item[key]
            assert img.shape == (3, 128, 128) and img.dtype == torch.float32
            back = (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(back, frames[i][key])
        assert item[schema.STATE_KEY].dtype == torch.float32
        np.testing.assert_array_equal(item[schema.STATE_KEY].numpy(), frames[i][schema.STATE_KEY])
        chunk = item[schema.ACTION_KEY]
        assert chunk.shape == (horizon, schema.ACTION_DIM) and chunk.dtype == torch.float32
        valid = min(horizon, len(frames) - i)
        expected = np.stack([frames[j][schema.ACTION_KEY] for j in range(i, i + valid)])
        np.testing.assert_array_equal(chunk[:valid].numpy(), expected)
        assert item["action_is_pad"].tolist() == [k >= valid for k in range(horizon)]
