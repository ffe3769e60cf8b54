"""``python -m pirl_core.eval [TARGET] [--best] [--suite S] [--tasks 0,3|all] [--episodes N] ...``

TARGET is a checkpoint directory, or a run's output dir (its ``checkpoints/last``; ``--best`` for
``checkpoints/best``); without TARGET the profile's own policy is evaluated (``--profile bench``:
the pretrained X-VLA). Dotted overrides (``--policy.device=cuda``) apply on top of the
checkpoint's saved config. Prints the per-task table and writes ``eval_info.json`` (LeRobot's
``lerobot-eval`` keys plus pirl's) and MP4s of the first ``--videos`` episodes per task.
Exit 2: bad flags, suite or task; exit 4: unreadable checkpoint. Nothing existing is overwritten.
"""

from __future__ import annotations

from pirl_core.argparse_base import UsageParser
from pirl_core.cli import dotted_overrides, run_main
from pirl_core.config import DEFAULT_PROFILE
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.eval.evaluate import DEFAULT_EPISODES, DEFAULT_VIDEOS, EvalArgs, evaluate


def parse(argv: list[str] | None) -> EvalArgs:
    p = UsageParser(
        prog="python -m pirl_core.eval", description=__doc__.split("\n\n")[1], usage_on_error=False
    )
    p.add_argument("target", nargs="?", default=None, help="checkpoint dir or run output dir")
    p.add_argument("--best", action="store_true", help="an output dir's checkpoints/best instead of last")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="profile when no TARGET is given")
    p.add_argument("--suite", default=None, help="suite to evaluate on (default: the run's)")
    p.add_argument("--tasks", default=None, help="comma list of task ids or 'all' (default: the run's)")
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, help="episodes per task")
    p.add_argument(
        "--init-states",
        default="first",
        help="'first' (init states 0..N-1, as lerobot-eval), 'held-out' (periodic eval's) or a list 0,3,7",
    )
    p.add_argument("--episode-length", type=int, default=None, help="default: the suite's standard limit")
    p.add_argument("--n-envs", type=int, default=None, help="simulators stepped together")
    p.add_argument("--stochastic", action="store_true", help="sample the noisy (training) policy")
    p.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="MP4s per task (0: none)")
    p.add_argument("--out", default=None, help="output dir (default: <run>/eval/<checkpoint>-<time>)")
    p.add_argument(
        "--render-size",
        type=int,
        default=None,
        help="LIBERO render size (default: env.camera_size up to 256; 256 = what lerobot-eval renders)",
    )
    known, rest = p.parse_known_args(argv)
    overrides = dotted_overrides(p, rest)
    if known.episodes < 1:
        raise ConfigError("--episodes", known.episodes, ">= 1 (episodes per task)")
    if known.videos < 0:
        raise ConfigError("--videos", known.videos, ">= 0 (0: no videos)")
    if known.episode_length is not None and known.episode_length < 1:
        raise ConfigError("--episode-length", known.episode_length, ">= 1")
    if known.render_size is not None and known.render_size < 16:
        raise ConfigError("--render-size", known.render_size, ">= 16 (pixels)")
    return EvalArgs(
        known.target,
        known.best,
        known.profile,
        known.suite,
        known.tasks,
        known.episodes,
        known.init_states,
        known.episode_length,
        known.n_envs,
        known.stochastic,
        known.seed,
        known.videos,
        known.out,
        overrides,
        known.render_size,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = evaluate(args)
    print(result.table)
    print(f"eval_info: {result.info_path}")
    if result.video_dir is not None:
        print(f"videos: {result.video_dir} ({result.n_videos} MP4)")
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
