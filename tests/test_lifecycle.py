"""How runs stop and who may write an output dir (issue 8, finding 5).

* SIGTERM behaves like Ctrl-C on the learner: checkpoint at the next safe point, exit 143.
* Nothing is saved at step 0, so an interrupted start leaves the output dir usable for a new run.
* The actor exits 0 only when the learner finished; otherwise with the learner's code.
* One learner per output dir: ``.learner.lock`` (flock) refuses a second one with exit 2 and is
  released by the kernel when its holder dies, ``kill -9`` included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pirl_core.actor import learner_stopped
from pirl_core.checkpoints import layout, resume
from pirl_core.checkpoints.lock import LOCK_NAME, OutputDirLock, read_holder
from pirl_core.checkpoints.verify import inspect_or_raise
from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode, Interrupted, interrupted_code
from pirl_core.lifecycle import StopRequest, stop_at_once_on_signals
from pirl_core.telemetry import read_records
from tests.e2e_helpers import ROOT, child_env, run_flags, start, start_long_toy_run, wait_all


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _metrics(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r["kind"] == "metrics"]


def _events(path: Path, name: str) -> list[dict]:
    return [r for r in read_records(path) if r.get("event") == name]


# --------------------------------------------------------------------------- signals (unit)


def test_sigterm_sets_the_stop_flag_and_stops_with_143() -> None:
    stop = StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered before the next bytecode
        assert stop.requested
        with pytest.raises(Interrupted) as info:
            stop.check()
        assert info.value.exit_code == ExitCode.TERMINATED == 143
        assert info.value.reason == "terminated"
        with pytest.raises(Interrupted):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_actor_signals_raise_at_once_and_are_given_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    with stop_at_once_on_signals(), pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), signal.SIGTERM)
    assert interrupted_code(info.value) == 143
    assert interrupted_code(KeyboardInterrupt()) == ExitCode.INTERRUPTED == 130
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(
    ("reason", "code"), [("interrupted", ExitCode.INTERRUPTED), ("terminated", ExitCode.TERMINATED)]
)
def test_actor_exit_for_a_stopped_learner_names_the_step_and_the_fix(reason: str, code: ExitCode) -> None:
    err = learner_stopped(reason, 7)
    assert err.exit_code == code
    assert err.line() == (
        f"error: learner was {reason} at step 7; resume it with --resume, then restart this actor"
    )


def test_actor_exit_for_a_failed_learner_is_5_and_points_to_its_log() -> None:
    err = learner_stopped("failed", 3)
    assert err.exit_code == ExitCode.TRANSPORT
    assert "learner stopped with an error (see its log) at step 3" in err.line()


# --------------------------------------------------------------------------- lock (unit)


def test_a_second_lock_on_the_same_output_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with OutputDirLock(tmp_path) as held:
        holder = read_holder(held.path)
        assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
        with pytest.raises(ConfigError) as info:
            OutputDirLock(tmp_path).acquire()  # its own open file description: flock conflicts
        assert info.value.exit_code == ExitCode.USAGE
        assert f"pid {os.getpid()}" in info.value.line() and LOCK_NAME in info.value.line()
    assert not (tmp_path / LOCK_NAME).exists()
    OutputDirLock(tmp_path).acquire().release()  # free again


HOLD_LOCK = (
    "import sys, time; from pirl_core.checkpoints.lock import OutputDirLock; "
    "OutputDirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"
)


def test_lock_of_a_killed_learner_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            OutputDirLock(tmp_path).acquire()
        holder.kill()  # SIGKILL: no cleanup runs, the file stays, the kernel drops the flock
        holder.wait()
        assert (tmp_path / LOCK_NAME).exists()
        lock = OutputDirLock(tmp_path).acquire()
        assert read_holder(lock.path)["pid"] == os.getpid()
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_sigterm_on_learner_checkpoints_exits_143_and_the_actor_says_why(tmp_path: Path) -> None:
    out, _, learner, actor = start_long_toy_run(tmp_path)
    telemetry = out / "telemetry"
    os.kill(learner.pid, signal.SIGTERM)  # the learner alone, as a scheduler would
    codes = wait_all([learner, actor], timeout=60)
    learner_log = (tmp_path / "learner.log").read_text()
    actor_log = (tmp_path / "actor.log").read_text()
    assert codes == [ExitCode.TERMINATED, ExitCode.TERMINATED], learner_log[-2000:] + actor_log[-2000:]
    assert "SIGTERM: stopping after the current step" in learner_log
    assert "stopped cleanly (exit 143)" in learner_log

    step = int(os.readlink(layout.last_link(out)))
    assert step == _metrics(telemetry / "learner.jsonl")[-1]["update"] >= 2
    inspect_or_raise(layout.last_link(out).resolve())  # complete
    assert f"learner was terminated at step {step}; resume it with --resume" in actor_log
    assert not (out / LOCK_NAME).exists()

    # Each process's telemetry starts with what the run is (finding 7).
    for source in ("learner", "actor-0"):
        first = read_records(telemetry / f"{source}.jsonl")[0]
        assert first["event"] == "run", source
        assert (first["profile"], first["env_type"], first["suite"], first["task_ids"], first["seed"]) == (
            "toy",
            "toy",
            "point_reach",
            [0],
            0,
        )
        assert first["pirl_version"] and first["config"]["learner"]["updates"] == 500
    assert _events(telemetry / "learner.jsonl", "terminated")


@pytest.mark.slow
def test_stop_before_the_first_update_writes_no_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = run_flags(out)
    learner = start("pirl_core.learner", args, tmp_path / "learner.log")  # no actor: waits in gather
    _wait_for(lambda: _events(out / "telemetry" / "learner.jsonl", "ready"), 60, "the learner")
    os.kill(learner.pid, signal.SIGINT)
    assert wait_all([learner], timeout=30) == [ExitCode.INTERRUPTED]
    assert not (out / "checkpoints").exists()
    assert resume.prepare_run(load_config("toy", [f"output_dir={out}"]), resume=False) is None


@pytest.mark.slow
def test_a_second_learner_on_the_same_output_dir_exits_2_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = start("pirl_core.learner", run_flags(out), tmp_path / "first.log")
    try:
        _wait_for(lambda: _events(out / "telemetry" / "learner.jsonl", "ready"), 60, "the first learner")
        for extra in ([], ["--resume"]):  # a new run and a resume are refused alike
            second = start("pirl_core.learner", run_flags(out, *extra), tmp_path / "second.log")
            assert wait_all([second], timeout=60) == [ExitCode.USAGE]
            line = (tmp_path / "second.log").read_text().strip().splitlines()[0]
            assert line.startswith("error: output_dir:") and f"held by pid {first.pid}" in line, line
        # (kill -9 of the holder frees the lock: test_lock_of_a_killed_learner_is_free_again)
        os.kill(first.pid, signal.SIGTERM)
        assert wait_all([first], timeout=30) == [ExitCode.TERMINATED]
        assert not (out / LOCK_NAME).exists()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_a_refused_learner_leaves_no_output_dir_behind(tmp_path: Path) -> None:
    from pirl_core import learner

    out = tmp_path / "never-run"
    with pytest.raises(ConfigError, match="nothing to resume"):
        learner.main(["--profile", "toy", f"--output_dir={out}", "--resume"])
    assert not out.exists()
