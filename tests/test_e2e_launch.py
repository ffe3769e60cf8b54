"""``python -m pirl_core.launch`` (``make smoke``) with the resume forms the docs give, on the toy
profile so that each run takes seconds; and the learner's exit-3 report as JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pirl_core.errors import ExitCode
from tests.e2e_helpers import flags_of, free_port, run_module


def launch(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_module("pirl_core.launch", "--profile", "toy", "--checkpoint.every=1", *argv, cwd=cwd)


def steps(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_launch_resume_forms(tmp_path: Path) -> None:
    """`--resume` continues the newest run under the profile's output dir and says which;
    `--resume-from PATH` (space form) continues that checkpoint's run; neither leaves stray files
    in the profile's output dir."""
    port = f"--learner.port={free_port()}"
    nothing = launch(tmp_path, "--resume", port)
    assert nothing.returncode == ExitCode.USAGE, nothing.stdout + nothing.stderr
    assert nothing.stderr.strip().splitlines() == [
        "error: --resume: got 'outputs/toy', expected a run directory with checkpoints under it "
        "(nothing to resume: start a run first, or pass --resume-from PATH)"
    ]
    assert not (tmp_path / "outputs").exists(), "a refused launch writes nothing"

    first = launch(tmp_path, "--learner.updates=2", port)
    assert first.returncode == 0, first.stdout[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "toy").iterdir()
    assert steps(run_dir) == ["000001", "000002"]

    resumed = launch(tmp_path, "--resume", "--learner.updates=3", port)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"[launch] --resume: continuing {Path('outputs/toy') / run_dir.name}" in resumed.stdout
    assert steps(run_dir) == ["000001", "000002", "000003"]
    assert sorted(p.name for p in (tmp_path / "outputs" / "toy").iterdir()) == [run_dir.name], (
        "no stray outputs/toy/telemetry or checkpoints beside the run dirs"
    )

    last = run_dir / "checkpoints" / "000003"
    space = launch(tmp_path, "--resume-from", str(last), "--learner.updates=4", port)
    assert space.returncode == 0, space.stdout[-3000:]
    finished = space.stdout.strip().splitlines()[-1]
    assert finished.startswith("[launch] finished:") and {"learner=0", "actor-0=0"} <= set(
        finished.replace(",", " ").split()
    )
    assert steps(run_dir) == ["000001", "000002", "000003", "000004"]


def test_learner_writes_the_resume_mismatch_as_json(tmp_path: Path) -> None:
    """Exit 3 with `--mismatch-json FILE`: the printed table for people, the same report as data."""
    from tests.checkpoint_helpers import SMALL_TOY, saved_run

    cfg, _ = saved_run(tmp_path, steps=(1,))
    report = tmp_path / "logs" / "mismatch.json"
    proc = run_module(
        "pirl_core.learner",
        *("--profile", "toy", "--resume", *flags_of(SMALL_TOY), f"--output_dir={cfg.output_dir}"),
        *("--recipe.denoise_steps=8", "--mismatch-json", str(report)),
        timeout=120,
    )
    assert proc.returncode == ExitCode.RESUME_MISMATCH, proc.stderr
    assert proc.stderr.startswith("error: cannot resume from")
    data = json.loads(report.read_text())
    assert data["exit_code"] == ExitCode.RESUME_MISMATCH and data["ok"] is False and data["step"] == 1
    fatal = [(r["field"], r["checkpoint"], r["current"]) for r in data["rows"] if r["severity"] == "fatal"]
    assert fatal == [("recipe.denoise_steps", 4, 8)]
    assert not list(report.parent.glob("*.tmp-*"))
