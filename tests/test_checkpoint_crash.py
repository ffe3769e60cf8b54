"""Crash safety: SIGKILL a real checkpoint writer at every event of a save; afterwards ``last`` is
never dangling, every finished checkpoint is complete, and a resume picks the newest complete one
and restores it bitwise.

The writer is a real process running the real code path (prepare_run -> restore -> one toy PPO
update -> save with retention). To make one kill per event affordable, a helper process (this
file run as a script) imports torch, LeRobot and pirl once and forks one writer per kill point;
the writer is parked at the chosen event with the ``PIRL_CKPT_PAUSE_S``/``PIRL_CKPT_PAUSE_AT`` hook
and killed there with SIGKILL by the test.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENT = "pirl-ckpt-event"
KEEP_LAST = {"checkpoint.keep_last": 2}


# --------------------------------------------------------------------------- writer side


def _write_one_step(output_dir: str) -> None:
    from pirl_core.checkpoints import resume
    from tests.checkpoint_helpers import counters, make_trainer, toy_config, train

    cfg = toy_config(Path(output_dir), **KEEP_LAST)
    plan = resume.prepare_run(cfg, resume=True)
    trainer = make_trainer(cfg)
    state = resume.restore(plan, trainer)
    train(cfg, trainer, range(state.step, state.step + 1))
    resume.save(cfg, state.step + 1, trainer, counters(state.step + 1))


def _zygote() -> None:
    """Read ``<output_dir> <pause_at>`` lines; fork a writer for each; report its pid and status."""
    import torch

    torch.set_num_threads(1)
    import lerobot.optim.optimizers  # noqa: F401  (the imports are what forking saves)
    import lerobot.utils.random_utils  # noqa: F401

    import pirl_core.checkpoints  # noqa: F401
    import pirl_core.envs.toy  # noqa: F401
    import pirl_core.learner  # noqa: F401
    import pirl_core.policies.mlp  # noqa: F401
    import pirl_core.recipe.trainer  # noqa: F401
    import pirl_core.rollout  # noqa: F401
    import tests.checkpoint_helpers  # noqa: F401

    for line in sys.stdin:
        output_dir, pause_at = line.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.environ["PIRL_CKPT_PAUSE_S"] = "60" if pause_at != "-" else "0.001"
                os.environ["PIRL_CKPT_PAUSE_AT"] = pause_at
                _write_one_step(output_dir)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stderr.flush()
            os._exit(code)
        print(f"child {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


# --------------------------------------------------------------------------- test side


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        env.pop("PIRL_CKPT_PAUSE_S", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: queue.Queue[str] = queue.Queue()
        self.noise: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith(EVENT):
                self.events.put(line.split()[2])
            else:
                self.noise.append(line)

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "writer helper died:\n" + "".join(self.noise[-40:])
        return line.strip()

    def start(self, output_dir: Path, pause_at: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{output_dir} {pause_at}\n")
        self.proc.stdin.flush()
        kind, pid = self._read().split()
        assert kind == "child"
        return int(pid)

    def next_event(self, timeout: float = 60.0) -> str:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                "no checkpoint event from the writer:\n" + "".join(self.noise[-40:])
            ) from None

    def wait_exit(self, pid: int) -> int:
        kind, got, status = self._read().split()
        assert (kind, int(got)) == ("exit", pid)
        return int(status)

    def drain(self) -> list[str]:
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def _check_after_crash(output_dir: Path, expected_step: int, reference: dict) -> None:
    from pirl_core.checkpoints import layout, resume, verify
    from tests.checkpoint_helpers import assert_bitwise_equal, make_trainer, snapshot, toy_config

    link = layout.last_link(output_dir)
    assert link.is_symlink(), "last must survive any kill"
    target = layout.last_pointer(output_dir)
    assert target is not None and target.is_dir(), f"dangling last -> {os.readlink(link)}"
    verify.inspect(target)  # complete
    for _step, path in layout.step_dirs(output_dir):
        verify.inspect(path)  # every finished (renamed) checkpoint is complete

    cfg = toy_config(output_dir, **KEEP_LAST)
    plan = resume.prepare_run(cfg, resume=True)
    assert plan is not None and plan.step == expected_step
    assert layout.leftovers(output_dir) == [], "leftovers are cleaned on the next start"
    assert layout.last_pointer(output_dir) == plan.path.resolve()
    fresh = make_trainer(cfg)
    resume.restore(plan, fresh)
    assert_bitwise_equal(snapshot(fresh), reference[expected_step])


def test_sigkill_at_every_checkpoint_event_leaves_a_resumable_run(tmp_path: Path, zygote: Zygote) -> None:
    from tests.checkpoint_helpers import saved_run, snapshot, train

    cfg, trainer = saved_run(tmp_path / "template", steps=(1, 2), **KEEP_LAST)
    reference = {2: snapshot(trainer)}
    train(cfg, trainer, range(2, 3))
    reference[3] = snapshot(trainer)

    # an uninterrupted writer: learn the event sequence, and check it finishes cleanly
    clean = tmp_path / "clean" / "run"
    shutil.copytree(cfg.output_path, clean, symlinks=True)
    pid = zygote.start(clean, "-")
    assert zygote.wait_exit(pid) == 0, "".join(zygote.noise[-40:])
    events = zygote.drain()
    assert events[0] == "start" and events[-1] == "removed:000001", events
    for name in (
        "pretrained_model",
        "rl_heads",
        "train_config",
        "rng_state",
        "training_step",
        "fsynced",
        "renamed",
        "last",
    ):
        assert name in events, name
    _check_after_crash(clean, 3, reference)

    renamed_at = events.index("renamed")
    for index, event in enumerate(events):
        out = tmp_path / f"kill-{index:02d}" / "run"
        shutil.copytree(cfg.output_path, out, symlinks=True)
        pid = zygote.start(out, event)
        while (got := zygote.next_event()) != event:
            pass
        os.kill(pid, signal.SIGKILL)
        status = zygote.wait_exit(pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"writer not killed at {event}"
        )
        assert zygote.drain() == [], f"writer ran past {event} before the kill"
        expected = 3 if index >= renamed_at else 2
        _check_after_crash(out, expected, reference)
        assert got == event


if __name__ == "__main__":
    _zygote()
