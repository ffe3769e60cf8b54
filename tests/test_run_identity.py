"""Issue 20, finding 1 (and the handshake counter of finding 4): two runs on one machine never
mix their data.

Over real gRPC on 127.0.0.1: an actor that reaches the learner of another run is refused at its
first call, naming both runs, and stops at once (exit 5), not after its connect timeout; the
learner keeps serving its own actors. End to end: a second launch whose learner cannot bind the
first run's port starts no actor at all, and an actor typed by hand with another output dir is
refused by the first run's learner, which trains on undisturbed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ExitCode, TransportError
from pirl_core.runid import derive_run_id, run_id
from pirl_core.transport.client import ActorClient
from pirl_core.transport.server import LearnerServer
from tests.e2e_helpers import TINY_TOY, child_env, free_port, run_module

WAIT = 10.0


def params() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(4, dtype=torch.float32)}


def test_run_id_follows_the_output_dir_and_can_be_set(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = load_config("toy", ["output_dir=runs/a"])
    assert run_id(a) == run_id(load_config("toy", [f"output_dir={tmp_path / 'runs' / 'a'}"]))
    assert run_id(a) != run_id(load_config("toy", ["output_dir=runs/b"]))
    assert run_id(a).startswith("a-") and run_id(a) == derive_run_id(tmp_path / "runs" / "a")
    assert run_id(load_config("toy", ["output_dir=runs/a", "learner.run_id=shared"])) == "shared"


def test_actor_of_another_run_is_refused_at_once_naming_both_runs(made) -> None:
    server = LearnerServer("127.0.0.1", 0, run_id="run-a").start()
    made.append(server)
    server.publish_parameters(1, params(), wait_s=0)
    stranger = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=60.0, run_id="run-b")
    made.append(stranger)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        stranger.wait_for_learner()
    assert time.monotonic() - started < 5.0, "refused at the first call, not after the connect timeout"
    line = info.value.line()
    assert info.value.exit_code == ExitCode.TRANSPORT
    assert "actor 0 belongs to run 'run-b', this learner serves run 'run-a'" in line, line
    with pytest.raises(TransportError, match="run 'run-b'"):  # its rollouts are refused as well
        stranger.send_rollout({"w": torch.zeros(1)}, {"version": 1, "round": 0, "episodes": 1, "stats": []})

    own = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=WAIT, run_id="run-a")
    made.append(own)
    own.wait_for_learner()
    header, tensors = own.receive_parameters(min_version=1, timeout=WAIT)
    assert header["version"] == 1 and torch.equal(tensors["w"], params()["w"])
    assert server.handshake.refused == 2


def test_refusals_are_counted_under_a_lock(made) -> None:
    """gRPC runs handlers on a thread pool: the refusal count is updated under the handshake's lock,
    and none is lost when several actors are refused at the same time."""
    server = LearnerServer("127.0.0.1", 0, identity={"policy.chunk_size": 4}).start()
    made.append(server)
    server.publish_parameters(1, params(), wait_s=0)
    holders: list[str] = []
    real = threading.Lock()

    class RecordingLock:
        def __enter__(self) -> None:
            real.acquire()
            holders.append(threading.current_thread().name)

        def __exit__(self, *exc: object) -> None:
            real.release()

    server.handshake._lock = RecordingLock()
    n = 8
    clients = [
        ActorClient("127.0.0.1", server.port, i, connect_timeout_s=WAIT, identity={"policy.chunk_size": 8})
        for i in range(n)
    ]
    made.extend(clients)
    errors: list[BaseException] = []

    def refused(client: ActorClient) -> None:
        try:
            client.receive_parameters(min_version=1, timeout=WAIT)
        except TransportError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refused, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert len(errors) == n and all("policy.chunk_size" in e.message for e in errors)
    assert server.handshake.refused == n
    assert sum(name.startswith("pirl-learner-rpc") for name in holders) == n, holders


SMALL = ["--profile", "toy", *TINY_TOY, "--recipe.minibatches=1", "--checkpoint.every=1000"]


def _popen(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen:\n{''.join(lines)[-3000:]}")


@pytest.mark.slow
def test_a_second_run_on_the_same_port_never_feeds_the_first(tmp_path: Path) -> None:
    """The issue's reproduction: run A trains; run B (another output dir, same profile and port)
    is started by the launcher, and an actor of B by hand. B's learner cannot bind (exit 5) and B's
    launcher starts no actor; the hand-started actor is refused by A's learner naming both runs and
    exits 5 at once; A trains on."""
    port = f"--learner.port={free_port()}"
    run_a = _popen(["pirl_core.launch", *SMALL, port, "--learner.updates=100000", "--output_dir=A"], tmp_path)
    try:
        _wait_for_line(run_a, "[actor-0] step", timeout=120)  # A's actor delivers rounds

        run_b = run_module(
            "pirl_core.launch",
            *SMALL,
            port,
            "--learner.updates=5",
            "--output_dir=B",
            cwd=tmp_path,
            timeout=120,
        )
        assert run_b.returncode == ExitCode.TRANSPORT, run_b.stdout + run_b.stderr
        assert "learner cannot listen on" in run_b.stdout
        assert "actor-0 not started" in run_b.stdout and "actor-0 |" not in run_b.stdout, run_b.stdout

        started = time.monotonic()
        stray = run_module(
            "pirl_core.actor",
            *(*SMALL, port, "--output_dir=B", "--actor.connect_timeout_s=300"),
            cwd=tmp_path,
            timeout=120,
        )
        assert stray.returncode == ExitCode.TRANSPORT, stray.stdout + stray.stderr
        assert time.monotonic() - started < 60, "exits at once, not after its 300 s connect timeout"
        ids = (derive_run_id(tmp_path / "B"), derive_run_id(tmp_path / "A"))
        assert f"actor 0 belongs to run '{ids[0]}', this learner serves run '{ids[1]}'" in stray.stderr

        assert run_a.poll() is None, "run A trains on"
        _wait_for_line(run_a, "[learner] step", timeout=60)
    finally:
        if run_a.poll() is None:
            os.killpg(run_a.pid, signal.SIGINT)
        out, _ = run_a.communicate(timeout=120)
    assert run_a.returncode == ExitCode.INTERRUPTED, out[-3000:]
    assert "Traceback" not in out
