"""Both entry points share flags; bad input exits 2 with one actionable line and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pirl_core.cli import parse_args
from pirl_core.errors import ConfigError
from pirl_core.launch import child_commands, with_run_dir

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
    cmds = child_commands(["--profile", "toy", "--resume"], n_actors=2, python="py")
    assert cmds[0] == ("learner", ["py", "-m", "pirl_core.learner", "--profile", "toy", "--resume"])
    assert cmds[1] == ("actor-0", ["py", "-m", "pirl_core.actor", "--profile", "toy", "--actor-id=0"])
    assert cmds[2][0] == "actor-1" and cmds[2][1][-1] == "--actor-id=1"


def test_launcher_gives_each_fresh_run_its_own_directory() -> None:
    argv = with_run_dir(["--profile", "smoke"], "outputs/smoke")
    assert argv[-1].startswith("--output_dir=outputs/smoke/")
    assert with_run_dir(["--output_dir=here"], "outputs/smoke") == ["--output_dir=here"]
    assert with_run_dir(["--resume"], "outputs/smoke") == ["--resume"]


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
