"""What ``python -m pirl_core.eval`` does: resolve the checkpoint, configure the env for the
evaluation, build and load the policy, run the episodes, write the table, JSON and videos."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout
from pirl_core.checkpoints.verify import CheckpointInfo, Problem, inspect_or_raise, unreadable
from pirl_core.config import (
    SUITES_BY_ENV,
    RunConfig,
    apply_override,
    config_from_dict,
    load_config,
    parse_override,
    validate,
)
from pirl_core.envs.registry import env_family
from pirl_core.errors import ConfigError
from pirl_core.eval.results import INFO_FILE, eval_info, format_table, summarize
from pirl_core.init_states import select_states, state_ids
from pirl_core.policies.registry import lerobot_policy_family, policy_family
from pirl_core.recipe.actor_critic import ActorCritic, actor_critic_for
from pirl_core.storage import write_text_atomic

DEFAULT_EPISODES = 10
DEFAULT_VIDEOS = 2


@dataclass
class EvalArgs:
    """What to evaluate and how (``python -m pirl_core.eval``'s flags, parsed and checked)."""

    target: str | None
    best: bool
    profile: str
    suite: str | None
    tasks: str | None
    episodes: int
    init_states: str
    episode_length: int | None
    n_envs: int | None
    stochastic: bool
    seed: int | None
    videos: int
    out: str | None
    overrides: list[str]
    render_size: int | None = None


@dataclass
class EvalResult:
    table: str
    info_path: Path
    info: dict[str, Any]
    video_dir: Path | None
    n_videos: int


def resolve_checkpoint(target: str, best: bool) -> Path:
    """A checkpoint dir as given, or an output dir's ``last`` (``best``) pointer."""
    path = Path(target)
    if (path / layout.CHECKPOINTS_DIR).is_dir() or (best and path.is_dir()):
        pointer = layout.BEST_CHECKPOINT_LINK if best else layout.LAST_CHECKPOINT_LINK
        link = layout.pointer_link(path, pointer)
        if not (link.is_symlink() or link.exists()):
            raise unreadable(
                link,
                f"the run has no checkpoints/{pointer}"
                + (" (periodic evaluation, eval.every > 0, writes it)" if best else ""),
                path,
            )
        return link
    return path


def load_target(args: EvalArgs) -> tuple[RunConfig, CheckpointInfo | None]:
    """The run config to evaluate with and the checkpoint (None: the profile's own policy).

    TARGET may also be a bare ``pretrained_model`` directory (a copy moved anywhere, an SFT
    checkpoint): its ``train_config.json`` when present, else ``--profile`` with the directory's
    image size, chunk and step counts. Either way an X-VLA policy is built from the checkpoint's
    own ``pretrained_model`` (:func:`self_contained`), never from the paths it was trained from."""
    if args.target is None:
        return load_config(args.profile, args.overrides), None
    path = resolve_checkpoint(args.target, args.best)
    if is_pretrained_dir(path):
        cfg, info = load_pretrained_dir(path, args)
    else:
        output_dir = layout.checkpoint_output_dir(path) if path.exists() else None
        info = inspect_or_raise(path, output_dir)
        try:
            cfg = config_from_dict(info.train_config)
        except ConfigError as exc:
            raise unreadable(
                info.path, f"its train_config.json is not a valid run config ({exc.message})", output_dir
            ) from None
    self_contained(cfg, info.model_dir)
    for item in args.overrides:
        apply_override(cfg, *parse_override(item))
    return validate(cfg), info


def is_pretrained_dir(path: Path) -> bool:
    """A LeRobot ``pretrained_model`` directory (config.json, no training_state next to it)."""
    return (path / layout.MODEL_CONFIG).is_file() and not (path / layout.TRAINING_STATE_DIR).exists()


def load_pretrained_dir(path: Path, args: EvalArgs) -> tuple[RunConfig, CheckpointInfo]:
    """Run config and checkpoint info of a bare ``pretrained_model`` directory (see load_target)."""
    from pirl_core.checkpoints.verify import read_json, safetensors_header

    path = path.resolve()
    train_rel = f"{layout.PRETRAINED_MODEL_DIR}/{layout.TRAIN_CONFIG}"
    model = read_json(path / layout.MODEL_CONFIG, layout.MODEL_CONFIG)
    if (path / layout.TRAIN_CONFIG).is_file():
        train_config = read_json(path / layout.TRAIN_CONFIG, train_rel)
        try:
            cfg = config_from_dict(train_config)
        except ConfigError as exc:
            raise unreadable(
                path, f"its train_config.json is not a valid run config ({exc.message})", None
            ) from None
    else:
        family = lerobot_policy_family(model.get("type"))
        if family is None:
            raise unreadable(
                path, f"{layout.MODEL_CONFIG} has type {model.get('type')!r}, not one pirl reads", None
            )
        cfg = load_config(args.profile, [])
        features = [f for f in (model.get("input_features") or {}).values() if f.get("type") == "VISUAL"]
        if features:
            cfg.env.camera_size = int(features[0]["shape"][-1])
        cfg.policy.type = family.name
        cfg.policy.chunk_size = int(model.get("chunk_size", cfg.policy.chunk_size))
        cfg.policy.action_steps = int(model.get("n_action_steps", cfg.policy.action_steps))
        steps = model.get("num_denoising_steps", model.get("num_inference_steps"))  # X-VLA's, π's name
        cfg.recipe.denoise_steps = int(steps or cfg.recipe.denoise_steps)
        if family.control_mode_of is not None:  # π: the mode its actions mean (pirl_pi_control.json)
            cfg.env.control_mode = family.control_mode_of(path)
        train_config = cfg.to_dict()
    heads = path / layout.RL_HEADS
    meta = {}
    if heads.is_file():
        try:
            meta = dict(safetensors_header(heads, layout.RL_HEADS).get("__metadata__") or {})
        except Problem as problem:
            raise unreadable(path, str(problem), None) from None
    elif args.stochastic:
        raise ConfigError(
            "--stochastic",
            True,
            f"a checkpoint with {layout.RL_HEADS} (the noise head); {path} has none",
            hint="drop --stochastic: the deterministic policy needs only the weights",
        )
    info = CheckpointInfo(
        path=path,
        step=0,
        training_step={},
        train_config=train_config,
        rl_heads_metadata=meta,
        pretrained_dir=path,
    )
    return cfg, info


def self_contained(cfg: RunConfig, model_dir: Path) -> None:
    """Build an X-VLA from ``model_dir`` itself (its config.json, weights and tokenizer copy):
    ``policy.size = pretrained`` there. The saved run config names what training started from (an
    SFT checkpoint, pirl's source-tree tokenizer), which a moved checkpoint no longer has."""
    if policy_family(cfg.policy.type).lerobot_type is None or not (model_dir / layout.MODEL_CONFIG).is_file():
        return
    cfg.policy.size = "pretrained"
    cfg.policy.pretrained_path = str(model_dir.resolve())
    cfg.policy.tokenizer = ""


def configure(cfg: RunConfig, args: EvalArgs) -> RunConfig:
    """The env of the evaluation: suite, tasks, the suite's standard episode length, and a
    multiple of the task count as ``n_envs`` (each slot keeps one task)."""
    if args.suite is not None:
        suites = SUITES_BY_ENV[cfg.env.type]
        if args.suite not in suites:
            raise ConfigError("--suite", args.suite, f"one of {sorted(suites)} (env.type {cfg.env.type!r})")
        cfg.env.suite = args.suite
        if args.tasks is None:
            cfg.env.task_ids = [0]
    n_suite = SUITES_BY_ENV[cfg.env.type][cfg.env.suite]
    if args.tasks is not None:
        if args.tasks == "all":
            cfg.env.task_ids = list(range(n_suite))
        else:
            try:
                cfg.env.task_ids = [int(t) for t in args.tasks.split(",") if t.strip()]
            except ValueError:
                raise ConfigError(
                    "--tasks", args.tasks, "'all' or a comma list of task ids like 0,3"
                ) from None
        for tid in cfg.env.task_ids:
            if not 0 <= tid < n_suite:
                raise ConfigError(
                    "--tasks", args.tasks, f"task ids in [0, {n_suite - 1}] for {cfg.env.suite}"
                )
    cfg.env.episode_length = args.episode_length or standard_episode_length(cfg)
    n_tasks = len(cfg.env.task_ids)
    wanted = args.n_envs if args.n_envs is not None else cfg.env.n_envs
    if wanted < 1:
        raise ConfigError("--n-envs", wanted, ">= 1")
    cfg.env.n_envs = n_tasks * max(1, wanted // n_tasks)
    if args.seed is not None:
        cfg.seed = args.seed
    return validate(cfg)


def standard_episode_length(cfg: RunConfig) -> int:
    """The family's standard limit for the suite (LIBERO: LeRobot's per-suite limits, what
    ``lerobot-eval`` runs), else the configured length (the toy env)."""
    standard = env_family(cfg.env.type).standard_episode_length
    return standard(cfg.env) if standard is not None else cfg.env.episode_length


def load_policy(cfg: RunConfig, info: CheckpointInfo | None) -> ActorCritic:
    """The run's actor-critic (built as the learner and actors build it) with the checkpoint's
    weights (``info`` None: the profile's own policy, as built)."""
    from pirl_core.checkpoints import store

    actor_critic = actor_critic_for(cfg)
    if info is not None and (info.pretrained_dir is None or info.rl_heads_metadata):
        try:
            store.check_weights(info, actor_critic)
        except Problem as problem:
            raise unreadable(info.path, str(problem), layout.checkpoint_output_dir(info.path)) from None
        store.load_weights(info, actor_critic)
    actor_critic.adapter.set_rl_mode()
    return actor_critic


def make_eval_env(cfg: RunConfig, render_size: int | None):
    """The evaluation's env; ``render_size`` (LIBERO only) renders the cameras at that size in one
    process, e.g. 256 as ``lerobot-eval`` does: the policy then resizes the frames itself
    (``resize_imgs_with_padding``), exactly as under ``lerobot-eval``."""
    from pirl_core.envs.factory import make_env

    if render_size is None:
        return make_env(cfg)
    family = env_family(cfg.env.type)
    if family.video_frame is None:
        raise ConfigError(
            "--render-size",
            render_size,
            f"no --render-size for env.type {cfg.env.type!r} (it has no cameras)",
        )
    family.install_check()
    return family.make(cfg.env, render_size=render_size)


def default_out(args: EvalArgs, info: CheckpointInfo | None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if info is None:
        return Path("outputs") / "eval" / f"{args.profile.replace('/', '_')}-{stamp}"
    if info.pretrained_dir is not None:  # a bare pretrained_model: never write into it
        return Path("outputs") / "eval" / f"{info.path.name}-{stamp}"
    root = layout.checkpoint_output_dir(info.path)
    return root / "eval" / f"{info.path.resolve().name}-{stamp}"


def prepare_out(path: Path) -> Path:
    if (path / INFO_FILE).exists():
        raise ConfigError(
            "--out", str(path), "a directory without an eval_info.json (nothing is overwritten)"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def evaluate(args: EvalArgs) -> EvalResult:
    from pirl_core.envs.factory import task_descriptions
    from pirl_core.eval.runner import no_frame, run_episodes
    from pirl_core.seeding import limit_threads

    limit_threads()
    cfg, info = load_target(args)
    cfg = configure(cfg, args)
    n_tasks = len(cfg.env.task_ids)
    instructions = dict(zip(cfg.env.task_ids, task_descriptions(cfg), strict=True))
    actor_critic = load_policy(cfg, info)
    out = prepare_out(Path(args.out) if args.out else default_out(args, info))
    started = time.monotonic()
    env = make_eval_env(cfg, args.render_size)
    try:
        n_init = env.num_init_states()
        states = select_states(args.init_states, args.episodes, n_init, n_tasks)
        ids = state_ids(n_init, n_tasks, states)
        frame_fn = env_family(cfg.env.type).video_frame
        videos = VideoWriter(out / "videos", args.videos if frame_fn is not None else 0, ids, n_tasks)
        episodes = run_episodes(
            env,
            actor_critic,
            ids,
            n_tasks,
            cfg.policy.action_steps,
            seed=cfg.seed,
            deterministic=not args.stochastic,
            video_slots=videos.slots,
            frame_fn=frame_fn or no_frame,
            on_wave=videos.write,
        )
    finally:
        env.close()
    wall = time.monotonic() - started
    tasks = summarize(episodes, instructions)
    pirl = {
        "checkpoint": str(info.path.resolve()) if info else None,
        "checkpoint_step": info.step if info else None,
        "policy_version": info.version if info else None,
        "profile": cfg.profile,
        "env_type": cfg.env.type,
        "suite": cfg.env.suite,
        "task_ids": list(cfg.env.task_ids),
        "init_states": states,
        "episodes_per_task": len(states),
        "episode_length": cfg.env.episode_length,
        "seed": cfg.seed,
        "sampling": "sde" if args.stochastic else "ode",
        "deterministic": not args.stochastic,
        "n_envs": cfg.env.n_envs,
        "render_size": args.render_size,
    }
    info_doc = eval_info(episodes, tasks, cfg.env.suite, wall, pirl)
    info_path = out / INFO_FILE
    write_text_atomic(
        info_path, json.dumps(info_doc, indent=2), "the evaluation results"
    )  # exit 8 if refused
    return EvalResult(
        table=format_table(tasks, wall),
        info_path=info_path,
        info=info_doc,
        video_dir=videos.directory if videos.count else None,
        n_videos=videos.count,
    )


class VideoWriter:
    """The first ``per_task`` episodes of each task as MP4, with LeRobot's ``write_video`` (the
    utility ``lerobot-eval`` writes its videos with) at LeRobot's LIBERO render rate."""

    def __init__(self, directory: Path, per_task: int, ids: list[int], n_tasks: int) -> None:
        self.directory = directory
        self.count = 0
        self.wanted: set[int] = set()
        seen: dict[int, int] = {}
        for g in ids:
            j = g % n_tasks
            if seen.get(j, 0) < per_task:
                self.wanted.add(g)
                seen[j] = seen.get(j, 0) + 1

    def slots(self, wave_ids: list[int]) -> set[int]:
        return {slot for slot, g in enumerate(wave_ids) if g in self.wanted}

    def write(self, wave) -> None:
        for result, frames in zip(wave.results, wave.frames, strict=True):
            if not frames:
                continue
            from lerobot.envs.libero import LiberoEnv
            from lerobot.utils.io_utils import write_video

            self.directory.mkdir(parents=True, exist_ok=True)
            outcome = "success" if result.success else "failure"
            name = f"task{result.task_id:02d}_init{result.init_state:03d}_ep{result.episode_ix:03d}_{outcome}.mp4"
            path = self.directory / name
            write_video(str(path), frames, LiberoEnv.metadata["render_fps"])
            result.video_path = str(path)
            self.count += 1
