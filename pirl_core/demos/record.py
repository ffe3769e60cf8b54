"""``python -m pirl_core.demos.record --suite libero_object --tasks 0,1 --episodes-per-task N --out DIR``

Runs the scripted expert (:mod:`pirl_core.demos.expert`) on LIBERO's training init states and
writes the successful episodes as a LeRobot dataset (layout: :mod:`pirl_core.recipe.demo_schema`).

Why it is built this way (docs/design.md, "Demonstrations"):

* Scenes come from pirl's own :class:`~pirl_core.envs.libero.LiberoVectorEnv` with the init-state
  ids pirl's evaluation uses (state-major, :func:`pirl_core.init_states.state_ids`), so a recorded
  episode and a rollout from the same id start from the same scene.
* Frame values go through LeRobot's own ``preprocess_observation`` and X-VLA's
  ``LiberoProcessorStep`` (agentview flipped, 20-dim state), then back to HWC uint8 (exact: the
  floats are uint8 / 255), so SFT sees what a rollout's policy sees. Each frame also keeps the
  8-dim state of LeRobot's generic ``LiberoProcessorStep`` (``observation.libero_state``, what π0 /
  π0.5 read; the 20-dim proprio has no gripper opening).
* Only successful episodes are kept; failures are counted and printed.
* An existing non-empty ``--out`` is refused (exit 2) and left untouched.
Exit 2: bad flags, suite, task or ``--out``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pirl_core.argparse_base import UsageParser
from pirl_core.cli import run_main
from pirl_core.demos.ee6d import to_ee6d
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.recipe import demo_schema as schema

DEFAULT_EPISODE_LENGTH = 200


@dataclass
class RecordArgs:
    suite: str
    tasks: list[int]
    episodes_per_task: int
    out: Path
    camera_size: int = 128
    first_state: int = 0
    episode_length: int = DEFAULT_EPISODE_LENGTH


@dataclass
class TaskTally:
    instruction: str
    successes: int = 0
    episodes: int = 0
    steps_of_successes: int = 0


def _task_list(text: str) -> list[int]:
    try:
        tasks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError("--tasks", text, "a comma list of task ids, e.g. 0,1") from None
    if not tasks or len(set(tasks)) != len(tasks):
        raise ConfigError("--tasks", text, "a non-empty comma list of distinct task ids, e.g. 0,1")
    return tasks


def parse(argv: list[str] | None) -> RecordArgs:
    p = UsageParser(
        prog="python -m pirl_core.demos.record", description=__doc__.split("\n\n")[1], usage_on_error=False
    )
    p.add_argument("--suite", default="libero_object", help="LIBERO suite")
    p.add_argument("--tasks", required=True, help="comma list of task ids, e.g. 0,1")
    p.add_argument("--episodes-per-task", type=int, required=True, help="expert episodes run per task")
    p.add_argument("--out", required=True, help="new (or empty) dataset directory")
    p.add_argument("--camera-size", type=int, default=128, help="render size (pixels, square)")
    p.add_argument("--first-state", type=int, default=0, help="first per-task init-state index")
    p.add_argument("--episode-length", type=int, default=DEFAULT_EPISODE_LENGTH, help="step limit")
    a = p.parse_args(argv)
    for name, value, low in (
        ("--episodes-per-task", a.episodes_per_task, 1),
        ("--camera-size", a.camera_size, 8),
        ("--first-state", a.first_state, 0),
        ("--episode-length", a.episode_length, 1),
    ):
        if value < low:
            raise ConfigError(name, value, f">= {low}")
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("--out", str(out), "a new or empty directory", hint="choose another --out")
    return RecordArgs(
        a.suite, _task_list(a.tasks), a.episodes_per_task, out, a.camera_size, a.first_state, a.episode_length
    )


def frame_values(raw_obs: dict[str, Any], pre_step: Any) -> dict[str, np.ndarray]:
    """One sub-env's raw LIBERO observation (batch of 1) -> the schema's images (HWC uint8), X-VLA's
    state (``pre_step``) and LeRobot's generic 8-dim LIBERO state (``schema.LIBERO_STATE_KEY``)."""
    import torch
    from lerobot.envs.utils import preprocess_observation
    from lerobot.processor.env_processor import LiberoProcessorStep as GenericLiberoStep

    lerobot_obs = preprocess_observation(raw_obs)
    generic = GenericLiberoStep().observation(lerobot_obs)  # both steps work on shallow copies
    obs = pre_step.observation(lerobot_obs)
    values: dict[str, np.ndarray] = {}
    for key in schema.IMAGE_KEYS:
        chw = obs[key][0]
        values[key] = (chw * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    values[schema.STATE_KEY] = obs[schema.STATE_KEY][0].numpy().astype(np.float32)
    values[schema.LIBERO_STATE_KEY] = generic[schema.STATE_KEY][0].numpy().astype(np.float32)
    return values


def run_episode(env: Any, init_state_id: int, pre_step: Any) -> tuple[bool, list[dict[str, np.ndarray]]]:
    """Run the expert from ``init_state_id`` (one sub-env); returns (success, frames)."""
    from pirl_core.demos.expert import PickPlaceExpert, goal_of, scene_poses

    raw = env.reset([init_state_id])
    sim_env = env._envs[0]._env.env  # robosuite env: privileged object poses for the expert
    obj, region = goal_of(sim_env.parsed_problem)
    expert = PickPlaceExpert(orientation=raw["robot_state"]["eef"]["mat"][0])
    frames: list[dict[str, np.ndarray]] = []
    for _ in range(env.max_episode_steps):
        obj_pos, target_pos = scene_poses(sim_env, obj, region)
        action = expert.act(raw["robot_state"]["eef"]["pos"][0], obj_pos, target_pos)
        frame = frame_values({k: v for k, v in raw.items() if k != "task"}, pre_step)
        frame[schema.ACTION_KEY] = to_ee6d(action)
        frames.append(frame)
        result = env.step(action[None])
        raw = result.obs
        if result.success[0]:
            return True, frames
        if result.terminated[0]:
            break
    return False, frames


def repo_id(suite: str) -> str:
    return f"pirl/{suite}_expert"


def create_dataset(out: Path, suite: str, camera_size: int) -> Any:
    """A new image-based (no video) ``LeRobotDataset`` at ``out`` with the schema's features."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset.create(
        repo_id=repo_id(suite),
        root=out,
        fps=schema.FPS,
        features=schema.features(camera_size),
        robot_type=schema.ROBOT_TYPE,
        use_videos=False,
    )


def add_episode(dataset: Any, frames: list[dict[str, np.ndarray]], instruction: str) -> None:
    for frame in frames:
        dataset.add_frame({**frame, "task": instruction})
    dataset.save_episode()


def record(args: RecordArgs) -> dict[int, TaskTally]:
    """Record ``args``; returns the per-task tally. Writes the dataset at ``args.out``."""
    from lerobot.policies.xvla.processor_xvla import LiberoProcessorStep

    from pirl_core.config import EnvConfig
    from pirl_core.envs.libero import LiberoVectorEnv
    from pirl_core.init_states import state_ids

    env_cfg = EnvConfig(
        type="libero",
        suite=args.suite,
        task_ids=list(args.tasks),
        episode_length=args.episode_length,
        camera_size=args.camera_size,
        n_envs=1,
        control_mode="absolute",
        hard_reset=False,
    )
    try:
        env = LiberoVectorEnv(env_cfg)
    except ConfigError as exc:  # speak in this command's flags, not the profile fields it fills
        flag = {"env.task_ids": "--tasks", "env.suite": "--suite"}.get(exc.field)
        if flag is None:
            raise
        raise ConfigError(flag, exc.value, exc.expected) from None
    try:
        per_task = range(args.first_state, args.first_state + args.episodes_per_task)
        ids = state_ids(env.num_init_states(), len(args.tasks), list(per_task))
        if args.out.exists():
            args.out.rmdir()  # empty (checked in parse); LeRobot creates it itself
        dataset = create_dataset(args.out, args.suite, args.camera_size)
        pre_step = LiberoProcessorStep()
        tally: dict[int, TaskTally] = {}
        for gid in ids:
            task_id, state = env.locate(gid)
            ok, frames = run_episode(env, gid, pre_step)
            instruction = env.task_descriptions()[0]
            t = tally.setdefault(task_id, TaskTally(instruction))
            t.episodes += 1
            print(f"task {task_id} state {state}: {'success' if ok else 'FAILED'} in {len(frames)} steps")
            if not ok:
                continue
            t.successes += 1
            t.steps_of_successes += len(frames)
            add_episode(dataset, frames, instruction)
        dataset.finalize()
    finally:
        env.close()
    return tally


def summary(tally: dict[int, TaskTally]) -> str:
    lines = ["task  successes  mean steps  instruction"]
    for task_id, t in sorted(tally.items()):
        mean = t.steps_of_successes / t.successes if t.successes else float("nan")
        lines.append(f"{task_id:>4}  {t.successes:>4}/{t.episodes:<4}  {mean:>10.1f}  {t.instruction}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    try:
        tally = record(args)
    except BaseException:
        # A half-written dataset is not a dataset (a full disk, Ctrl-C): args.out was empty or absent
        # (parse checks it), so removing it loses nothing and a rerun starts clean.
        shutil.rmtree(args.out, ignore_errors=True)
        raise
    kept = sum(t.successes for t in tally.values())
    print(summary(tally))
    print(f"dataset: {args.out} ({kept} episodes) in {time.perf_counter() - started:.0f} s")
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
