"""Both entry points share flags; bad input exits 2 with one actionable line and writes nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pirl_core.cli import parse_args
from pirl_core.errors import ConfigError
from pirl_core.launch import child_commands, choose_run_dir, newest_run_dir, with_output_dir

ROOT = Path(__file__).resolve().parents[1]


def test_parse_args_collects_dotted_overrides() -> None:
    args = parse_args(
        "t", ["--profile", "smoke", "--env.suite=libero_goal", "--learner.updates=3", "--resume"]
    )
    assert args.config.env.suite == "libero_goal"
    assert args.config.learner.updates == 3
    assert args.resume and args.resume_from is None
    assert args.overrides == ["env.suite=libero_goal", "learner.updates=3"]


def test_resume_from_implies_resume() -> None:
    args = parse_args("t", ["--resume-from", "outputs/x/checkpoints/000002"])
    assert args.resume and args.resume_from == "outputs/x/checkpoints/000002"


def test_stray_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args("t", ["libero_10"])
    assert info.value.code == 2
    assert "overrides look like --section.key=value" in capsys.readouterr().err


def test_bad_override_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_args("t", ["--env.suite=libero_11"])


def test_launcher_runs_the_headless_commands() -> None:
    args = parse_args("t", ["--profile", "toy", "--resume", "--actor.n_actors=2"])
    learner, actor0, actor1 = child_commands(args, python="py")
    assert learner.argv == (
        "py",
        "-m",
        "pirl_core.learner",
        "--profile",
        "toy",
        "--resume",
        "--actor.n_actors=2",
    )
    assert actor0.argv == (
        "py",
        "-m",
        "pirl_core.actor",
        "--profile",
        "toy",
        "--actor-id",
        "0",
        "--actor.n_actors=2",
    )
    assert (actor1.name, actor1.role, actor1.argv[5:7]) == ("actor-1", "actor", ("--actor-id", "1"))


def test_resume_from_in_the_space_form_reaches_only_the_learner() -> None:
    """`--resume-from PATH` (as --help, README and the exit-4 message write it): the learner gets
    both words, the actors neither (a string filter used to hand them the bare PATH: exit 2)."""
    args = parse_args("t", ["--profile", "toy", "--resume-from", "runs/a/checkpoints/000002", "--seed=3"])
    learner, actor = child_commands(args, python="py")
    assert learner.argv[3:] == ("--profile", "toy", "--resume-from", "runs/a/checkpoints/000002", "--seed=3")
    assert actor.argv[3:] == ("--profile", "toy", "--actor-id", "0", "--seed=3")
    # what the children receive parses back to the same run
    assert parse_args("t", list(learner.argv[3:])).resume_from == "runs/a/checkpoints/000002"
    assert parse_args("t", list(actor.argv[3:])).config == args.config


def _run(base: Path, name: str, step: str) -> Path:
    (base / name / "checkpoints" / step).mkdir(parents=True)
    os.utime(base / name / "checkpoints" / step, (0, 1000 + len(list(base.iterdir()))))
    return base / name


def test_run_dir_choice(tmp_path: Path) -> None:
    base = tmp_path / "outputs" / "toy"
    new = parse_args("t", ["--profile", "toy", f"--output_dir={base}"])
    assert choose_run_dir(new) is None, "an explicit output dir is used as given"
    fresh = parse_args("t", ["--profile", "toy"])
    fresh = dataclasses.replace(fresh, config=dataclasses.replace(fresh.config, output_dir=str(base)))
    stamp = choose_run_dir(fresh, now=0)
    assert (
        stamp is not None
        and stamp.parent == base
        and stamp.name == time.strftime("%Y%m%d-%H%M%S", time.localtime(0))
    )
    stamp.mkdir(parents=True)
    assert choose_run_dir(fresh, now=0) == stamp.with_name(stamp.name + "-2"), "never the same dir twice"

    resume = dataclasses.replace(fresh, resume=True)
    with pytest.raises(ConfigError, match="--resume: got .* expected a run directory with checkpoints"):
        choose_run_dir(resume)
    _run(base, "20250101-000000", "000002")
    newest = _run(base, "20250102-000000", "000001")
    assert newest_run_dir(base) == newest and choose_run_dir(resume) == newest

    args = with_output_dir(resume, newest)
    assert args.config.output_dir == str(newest) and args.overrides[-1] == f"output_dir={newest}"
    learner = child_commands(args, python="py")[0]
    assert learner.argv[-1] == f"--output_dir={newest}" and "--resume" in learner.argv

    ckpt = base / "20250101-000000" / "checkpoints" / "000002"
    forked = dataclasses.replace(fresh, resume=True, resume_from=str(ckpt))
    assert choose_run_dir(forked) == (base / "20250101-000000").resolve(), "continues that checkpoint's run"


@pytest.mark.parametrize("module", ["pirl_core.learner", "pirl_core.actor", "pirl_core.launch"])
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--profile", "nosuch"], "--profile: got 'nosuch'"),
        (["--env.suite=libero_11"], "env.suite: got 'libero_11'"),
        (["--env.bogus=1"], "env.bogus: got 1"),
        (["--learner.updates=two"], "learner.updates: got 'two', expected an integer"),
    ],
)
def test_entrypoints_exit_2_on_bad_profile_input(
    tmp_path: Path, module: str, argv: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv, f"--output_dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert needle in first
    assert not out.exists()
