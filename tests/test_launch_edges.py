"""Issue 20, finding 4: the smaller ones, each through the real entry point.

* ``--output_dir`` naming an existing *file*: one line naming the field, exit 2, no traceback
  (was: ``FileExistsError`` traceback, exit 1);
* ``--resume`` with ``learner.updates`` at or below the checkpoint's step: the learner refuses
  before it listens (exit 2, one line saying what to pass), launch starts no actor, nobody waits
  out the 300 s connect timeout and nothing reports exit 5;
* launch's exit code when it stopped the learner because an actor failed first.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pirl_core.errors import ExitCode
from pirl_core.launch import outcome
from tests.e2e_helpers import ROOT, child_env, free_port, run_module


def _run(module: str, *argv: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_module(module, *argv, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("module", ["pirl_core.learner", "pirl_core.launch"])
def test_output_dir_naming_a_file_is_one_line_exit_2(tmp_path: Path, module: str) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    proc = _run(module, "--profile", "toy", f"--output_dir={taken}")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: output_dir: got '{taken}', expected a directory (or a path that does not exist yet); "
        "it names an existing file"
    ]
    assert taken.read_text() == "mine\n"


def test_resume_without_updates_left_starts_no_actor_and_exits_2(tmp_path: Path) -> None:
    from pirl_core.checkpoints import layout
    from tests.checkpoint_helpers import SMALL_TOY, saved_run

    cfg, _ = saved_run(tmp_path, steps=(1,))
    before = sorted(p.name for p in layout.checkpoints_root(cfg.output_dir).iterdir())
    flags = [f"--{k}={v}" for k, v in SMALL_TOY.items()]
    started = time.monotonic()
    proc = _run(
        "pirl_core.launch",
        "--profile",
        "toy",
        *flags,
        f"--output_dir={cfg.output_dir}",
        f"--learner.port={free_port()}",
        "--learner.updates=1",
        "--resume",
        timeout=90,  # the old behaviour waited out the actor's 300 s connect timeout
    )
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == ExitCode.USAGE, out[-3000:]
    assert (
        "error: learner.updates: got 1, expected more than the checkpoint's step 1 to continue training"
        in out
    )
    assert "pass --learner.updates=N with N > 1" in out
    assert "actor-0 not started" in out and "actor-0 |" not in out
    assert proc.stdout.strip().splitlines()[-1] == "[launch] finished: learner=2"
    assert took < 60, took
    assert sorted(p.name for p in layout.checkpoints_root(cfg.output_dir).iterdir()) == before


def test_launch_reports_the_cause_not_its_own_stop() -> None:
    assert outcome({"learner": 0, "actor-0": 0}) == 0
    assert outcome({"learner": 6, "actor-0": 5}) == 6  # the learner failed: actors follow it
    assert outcome({"actor-0": 5, "learner": 6}) == 6  # ... even when an actor exits first
    assert outcome({"actor-0": 8, "learner": -signal.SIGINT}) == 8  # launch stopped the learner
    assert outcome({"actor-0": 5, "learner": ExitCode.INTERRUPTED}) == 5
    assert outcome({"learner": 0, "actor-1": 5}) == 5


def test_an_actor_failing_because_its_learner_failed_does_not_hide_the_learners_code() -> None:
    """The learner tells its actor it failed and then takes a moment to exit (it writes its error,
    closes the server); the actor exits at once. Launch must not stop the learner in that moment
    (a SIGINT that lands while it exits turns its 8 into -2, and the actor's 5 would be reported)."""
    from pirl_core.launch import ChildCommand, _stream

    learner_code = "import time; print('[learner] ready', flush=True); time.sleep(2); raise SystemExit(8)"
    learner = ChildCommand("learner", "learner", (sys.executable, "-c", learner_code))
    actor = ChildCommand("actor-0", "actor", (sys.executable, "-c", "raise SystemExit(5)"))
    env = child_env()
    procs = {
        "learner": subprocess.Popen(learner.argv, stdout=subprocess.PIPE, env=env, start_new_session=True)
    }
    codes = _stream(procs, [actor], env)
    assert codes["actor-0"] == 5 and codes["learner"] == ExitCode.STORAGE
    assert outcome(codes) == ExitCode.STORAGE


def test_a_ready_line_that_arrives_with_another_starts_the_actors_at_once(tmp_path: Path) -> None:
    """The learner's ``resumed`` and ``ready`` lines reach launch's pipe in one read (what a busy
    machine makes likely). Before: launch relayed the first and left the ready line in its
    reader's buffer until the learner wrote again (its "waiting" line, 30 s later), so the actors
    started late; here the learner writes nothing more until its actor has started."""
    from pirl_core.launch import ChildCommand, _stream

    started = tmp_path / "actor-started"
    learner_code = (
        "import os, sys, time\n"
        "sys.stdout.write('[learner] resumed checkpoint=x version=1\\n[learner] ready port=1\\n')\n"
        "sys.stdout.flush()\n"
        "deadline = time.monotonic() + 15\n"
        f"while not os.path.exists({str(started)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        f"raise SystemExit(0 if os.path.exists({str(started)!r}) else 3)\n"
    )
    learner = ChildCommand("learner", "learner", (sys.executable, "-c", learner_code))
    actor_code = f"open({str(started)!r}, 'w').close()"
    actor = ChildCommand("actor-0", "actor", (sys.executable, "-c", actor_code))
    env = child_env()
    procs = {
        "learner": subprocess.Popen(learner.argv, stdout=subprocess.PIPE, env=env, start_new_session=True)
    }
    codes = _stream(procs, [actor], env)
    assert codes == {"learner": 0, "actor-0": 0}, "the actor started only after the learner gave up"
