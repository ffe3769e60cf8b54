"""A failure inside a running learner or actor lands in its telemetry as a ``kind: error`` record
(the console lists those), carries its exit code, and the learner's gRPC server is stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pirl_core.errors import ExitCode, TransportError
from pirl_core.telemetry import read_records, telemetry_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flags(tmp_path: Path, port: int) -> list[str]:
    return ["--profile", "toy", f"--output_dir={tmp_path}", f"--learner.port={port}"]


def test_actor_records_a_transport_failure(tmp_path: Path) -> None:
    from pirl_core import actor

    argv = [*_flags(tmp_path, _free_port()), "--actor.connect_timeout_s=0.3"]
    with pytest.raises(TransportError):
        actor.main(argv)
    errors = [r for r in read_records(telemetry_path(tmp_path, "actor-0")) if r["kind"] == "error"]
    assert len(errors) == 1
    assert errors[0]["exit_code"] == ExitCode.TRANSPORT and "no learner answered" in errors[0]["message"]


def test_learner_records_a_failure_and_stops_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pirl_core import learner
    from pirl_core.transport.server import LearnerServer

    def broken_gather(self):
        raise TransportError("rollout from actor 0: header fields ['version'] missing")

    stopped: list[LearnerServer] = []
    real_stop = LearnerServer.stop

    def stop(self, grace=1.0):
        stopped.append(self)
        real_stop(self, grace)

    monkeypatch.setattr(learner.StopRequest, "install", lambda self: None)  # keep pytest's SIGINT
    monkeypatch.setattr(learner.Learner, "gather", broken_gather)
    monkeypatch.setattr(LearnerServer, "stop", stop)
    with pytest.raises(TransportError):
        learner.main(_flags(tmp_path, _free_port()))
    errors = [r for r in read_records(telemetry_path(tmp_path, "learner")) if r["kind"] == "error"]
    assert [e["exit_code"] for e in errors] == [ExitCode.TRANSPORT]
    assert "header fields" in errors[0]["message"]
    assert len(stopped) == 1
