"""LearnerServer <-> ActorClient over real gRPC on 127.0.0.1 (free ports, bounded waits).

Covers the behaviours the learner/actor rely on: either process may start first, every actor
gets every version, a reconnecting actor is never starved by a dead stream (LeRobot #3979),
rollouts and stats arrive intact, finish() reaches everyone, and every failure is a
TransportError that names host:port and the fix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.errors import ExitCode, TransportError
from pirl_core.transport.client import ActorClient
from pirl_core.transport.server import LearnerServer
from pirl_core.transport.wire import client_options, iter_chunks

REPO = Path(__file__).resolve().parents[1]
WAIT = 10.0  # generous bound for a loaded 2-core CI box; typical waits are milliseconds


def released_port() -> int:
    """A port a learner just bound (port 0) and released: for tests that start the learner late."""
    srv = LearnerServer("127.0.0.1", 0).start()
    srv.stop(grace=0)
    return srv.port


def wait_until(pred: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def params(version: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3, 4), float(version)), "step": torch.tensor([version], dtype=torch.int64)}


@pytest.fixture
def server() -> Iterator[LearnerServer]:
    srv = LearnerServer("127.0.0.1", 0).start()
    yield srv
    srv.stop(grace=0)


@pytest.fixture
def clients() -> Iterator[Callable[..., ActorClient]]:
    made: list[ActorClient] = []

    def make(port: int, actor_id: int | str = 0, connect_timeout_s: float = WAIT) -> ActorClient:
        client = ActorClient("127.0.0.1", port, actor_id, connect_timeout_s=connect_timeout_s)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_actor_started_before_learner_connects_once_it_is_up(clients) -> None:
    port = released_port()
    client = clients(port, 1)
    waited: list[float] = []
    thread = threading.Thread(target=lambda: waited.append(client.wait_for_learner()))
    thread.start()
    time.sleep(0.7)  # the actor is retrying against a closed port
    srv = LearnerServer("127.0.0.1", port).start()
    try:
        thread.join(WAIT)
        assert waited and waited[0] >= 0.6
        srv.publish_parameters(1, params(1), wait_s=0)
        header, tensors = client.receive_parameters(min_version=1, timeout=WAIT)
        assert header["version"] == 1 and torch.equal(tensors["w"], params(1)["w"])
    finally:
        srv.stop(grace=0)


def test_connect_timeout_names_address_and_what_to_check(clients) -> None:
    port = released_port()
    client = clients(port, 1, connect_timeout_s=0.6)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as info:
        client.wait_for_learner()
    assert 0.5 < time.monotonic() - t0 < 5.0
    assert f"127.0.0.1:{port}" in info.value.message
    assert "--learner.port" in info.value.message and "connect_timeout_s" in info.value.message
    assert info.value.exit_code == ExitCode.TRANSPORT


def test_port_in_use_by_another_learner_or_socket(server: LearnerServer) -> None:
    with pytest.raises(TransportError) as info:
        LearnerServer("127.0.0.1", server.port).start()
    assert str(server.port) in info.value.message and "--learner.port=N" in info.value.message
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(TransportError, match=str(sock.getsockname()[1])):
            LearnerServer("127.0.0.1", sock.getsockname()[1]).start()


def test_two_actors_receive_every_version(server: LearnerServer, clients) -> None:
    a, b = clients(server.port, 1), clients(server.port, 2)
    a.start(), b.start()
    assert server.wait_for_actors(2, timeout=WAIT)
    for version in range(1, 4):
        result = server.publish_parameters(version, params(version), {"note": "v"}, wait_s=WAIT)
        assert result["delivered"] and result["actors"] == 2 and result["push_mb"] > 0
        for client in (a, b):
            header, tensors = client.receive_parameters(min_version=version, timeout=WAIT)
            assert header["version"] == version and header["note"] == "v" and not header["done"]
            assert torch.equal(tensors["w"], params(version)["w"])
    assert sorted(x["actor_id"] for x in server.connected_actors()) == ["1", "2"]
    assert all(x["version_sent"] == 3 for x in server.connected_actors())


def test_late_actor_gets_latest_version_at_once(server: LearnerServer, clients) -> None:
    server.publish_parameters(1, params(1))
    server.publish_parameters(2, params(2))
    header, tensors = clients(server.port, 5).receive_parameters(min_version=0, timeout=WAIT)
    assert header["version"] == 2 and torch.equal(tensors["step"], params(2)["step"])


def test_reconnected_actor_gets_next_push_after_close(server: LearnerServer, clients) -> None:
    """LeRobot #3979: the first stream's handler must not steal the push meant for the new one."""
    first = clients(server.port, 1)
    server.publish_parameters(1, params(1))
    assert first.receive_parameters(1, timeout=WAIT)[0]["version"] == 1
    first.close()
    assert wait_until(lambda: server.connected_actors() == []), "stale handler did not end"
    second = clients(server.port, 1)
    assert second.receive_parameters(1, timeout=WAIT)[0]["version"] == 1  # latest on connect
    t0 = time.monotonic()
    server.publish_parameters(2, params(2), wait_s=0)
    header, _ = second.receive_parameters(2, timeout=WAIT)
    assert header["version"] == 2 and time.monotonic() - t0 < 2.0


def test_half_open_old_stream_does_not_hold_up_delivery_or_finish(server: LearnerServer, clients) -> None:
    """An actor reconnected while its old stream is still open but not reading (network drop
    not yet noticed by keepalive): publish and finish wait only for the newest stream per id."""
    big = {"w": torch.randn(10_000_000)}  # 40 MB: more than gRPC's flow-control window
    server.publish_parameters(1, big, wait_s=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=client_options())
    stuck = services_pb2_grpc.LearnerServiceStub(channel).StreamParameters(
        services_pb2.Empty(), metadata=(("pirl-actor-id", "1"),)
    )  # never read: its handler blocks mid-payload
    try:
        assert wait_until(lambda: len(server.connected_actors()) == 1)
        fresh = clients(server.port, 1)
        assert fresh.receive_parameters(1, timeout=WAIT)[0]["version"] == 1
        assert len(server.connected_actors()) == 2
        t0 = time.monotonic()
        result = server.publish_parameters(2, params(2), wait_s=WAIT)
        assert result["delivered"] and time.monotonic() - t0 < WAIT / 2
        assert fresh.receive_parameters(2, timeout=WAIT)[0]["version"] == 2
        assert server.finish("done", timeout=WAIT) == {"notified": 1, "pending": 0, "gone": 0}
    finally:
        stuck.cancel()
        channel.close()
    assert wait_until(lambda: server.connected_actors() == [])


ACTOR_PROC = """
import sys, time
from pirl_core.transport.client import ActorClient
c = ActorClient("127.0.0.1", int(sys.argv[1]), 7, connect_timeout_s=30)
h, _ = c.receive_parameters(1, timeout=30)
print("got", h["version"], flush=True)
time.sleep(60)
"""


def test_killed_actor_process_does_not_starve_its_replacement(server: LearnerServer, clients) -> None:
    """The #3979 scenario with a real crash: SIGKILL an actor mid-run, start a new one."""
    server.publish_parameters(1, params(1))
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTOR_PROC, str(server.port)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "got 1"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT)
        replacement = clients(server.port, 7)
        assert replacement.receive_parameters(1, timeout=WAIT)[0]["version"] == 1
        server.publish_parameters(2, params(2), wait_s=0)
        assert replacement.receive_parameters(2, timeout=3.0)[0]["version"] == 2
        assert wait_until(lambda: len(server.connected_actors()) == 1), server.connected_actors()
    finally:
        proc.kill()
        proc.wait()


def test_actor_follows_a_restarted_learner_even_at_a_lower_version(clients) -> None:
    port = released_port()
    first = LearnerServer("127.0.0.1", port).start()
    client = clients(port, 3)
    try:
        first.publish_parameters(5, params(5))
        assert client.receive_parameters(5, timeout=WAIT)[0]["version"] == 5
    finally:
        first.stop(grace=0)
    second = LearnerServer("127.0.0.1", port).start()  # e.g. resumed from an older checkpoint
    try:
        second.publish_parameters(2, params(2))
        header, tensors = client.receive_parameters(min_version=6, timeout=WAIT)
        assert header["version"] == 2 and header["learner_epoch"] == second.epoch != first.epoch
        assert torch.equal(tensors["w"], params(2)["w"]) and client.reconnects >= 1
    finally:
        second.stop(grace=0)


def test_rollouts_from_two_actors_arrive_intact(server: LearnerServer, clients) -> None:
    def rollout(actor: int, k: int) -> dict[str, torch.Tensor]:
        return {
            "obs.image": torch.full((4, 3, 16, 16), actor * 10 + k, dtype=torch.uint8),
            "reward": torch.arange(4, dtype=torch.float32) + k,
            "done": torch.tensor([False, False, False, True]),
            "episode_id": torch.full((4,), actor, dtype=torch.int64),
            "chain": torch.randn(600_000),  # ~2.4 MB: a multi-chunk stream
        }

    sent: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    a, b = clients(server.port, 1), clients(server.port, 2)

    def send(client: ActorClient, actor: int) -> None:
        for k in range(2):
            tensors = rollout(actor, k)
            sent[(actor, k)] = tensors
            stats = client.send_rollout(tensors, {"version": 4, "episodes": 1, "k": k})
            assert stats["mb"] > 2

    threads = [threading.Thread(target=send, args=(c, i)) for i, c in ((1, a), (2, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    got = [server.get_rollout(timeout=WAIT) for _ in range(4)]
    assert server.get_rollout(timeout=0.05) is None
    for item in got:
        assert item is not None
        header, tensors = item
        assert header["kind"] == "rollout" and header["version"] == 4 and header["episodes"] == 1
        expected = sent[(header["actor_id"], header["k"])]
        assert set(tensors) == set(expected)
        assert all(torch.equal(tensors[n], expected[n]) for n in expected)
    assert {(h["actor_id"], h["k"]) for h, _ in got} == set(sent)


def test_garbled_rollout_is_rejected_and_learner_keeps_going(server: LearnerServer, clients) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=client_options())
    stub = services_pb2_grpc.LearnerServiceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.SendTransitions(iter_chunks(b"\x05" * 100, services_pb2.Transition), timeout=WAIT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "payload" in info.value.details()
    finally:
        channel.close()
    assert server.rejected_payloads == 1 and server.get_rollout(timeout=0.05) is None
    clients(server.port, 1).send_rollout({"r": torch.ones(2)}, {"version": 0})
    assert server.get_rollout(timeout=WAIT) is not None


def test_finish_reaches_connected_and_late_actors(server: LearnerServer, clients) -> None:
    a, b = clients(server.port, 1), clients(server.port, 2)
    server.publish_parameters(3, params(3))
    for c in (a, b):
        c.receive_parameters(3, timeout=WAIT)
    result = server.finish("done", timeout=WAIT)
    assert result == {"notified": 2, "pending": 0, "gone": 0}
    for c in (a, b):
        header, tensors = c.receive_parameters(min_version=99, timeout=WAIT)
        assert header["done"] is True and header["reason"] == "done" and tensors == {}
    assert wait_until(lambda: server.connected_actors() == [])
    header, _ = clients(server.port, 3).receive_parameters(min_version=99, timeout=WAIT)
    assert header["done"] is True
    with pytest.raises(RuntimeError):
        server.publish_parameters(4, params(4))


def test_receive_timeout_and_vanished_learner_raise(clients) -> None:
    srv = LearnerServer("127.0.0.1", 0).start()
    client = clients(srv.port, 1, connect_timeout_s=0.8)
    try:
        with pytest.raises(TransportError, match="version >= 1"):
            client.receive_parameters(min_version=1, timeout=0.3)
        srv.publish_parameters(1, params(1))
        client.receive_parameters(min_version=1, timeout=WAIT)
    finally:
        srv.stop(grace=0)  # gone without finish(): the actor reconnects, then gives up
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=f"no learner answered at 127.0.0.1:{srv.port}"):
        client.receive_parameters(min_version=2, timeout=WAIT)
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(TransportError, match="could not send rollout"):
        client.send_rollout({"r": torch.ones(1)}, {"version": 1})


CRASHING_LEARNER = """
import sys, torch
from pirl_core.transport.client import ActorClient
from pirl_core.transport.server import LearnerServer
server = LearnerServer("127.0.0.1", 0).start()
client = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=5)
server.publish_parameters(1, {"w": torch.ones(2)})
client.receive_parameters(1, timeout=5)
raise SystemExit(7)  # the learner loop died: neither finish() nor stop() is called
"""


def test_learner_that_crashes_without_stop_still_exits() -> None:
    """A live parameter stream must not keep a crashed learner process alive at exit."""
    proc = subprocess.run([sys.executable, "-c", CRASHING_LEARNER], cwd=REPO, timeout=30, capture_output=True)
    assert proc.returncode == 7, proc.stderr.decode()[-2000:]


def test_heartbeat_is_recorded_per_actor_and_fails_softly_without_a_learner(server, clients) -> None:
    """``ActorClient.heartbeat`` (a ``Ready`` call) is the liveness signal the learner's lost-actor
    check reads while an actor evaluates and sends no rollouts (tests/test_learner_gather.py)."""
    client = clients(server.port, 3)
    assert server.last_contact(3) is None
    before = time.monotonic()
    assert client.heartbeat()
    first = server.last_contact(3)
    assert first is not None and first >= before and server.last_contact(0) is None
    assert client.heartbeat() and server.last_contact("3") >= first
    gone = clients(released_port(), 4)
    assert gone.heartbeat() is False  # nobody listens: False, no exception


def test_heartbeat_carries_the_actors_progress_and_a_malformed_one_is_dropped(server, clients) -> None:
    """While collecting, the heartbeat carries the actor's progress (``pirl-progress`` metadata):
    the learner reads it for its waiting notice. A value it cannot read still counts as contact."""
    from lerobot.transport import services_pb2

    from pirl_core.progress import VersionProgress
    from pirl_core.transport.wire import ACTOR_ID_METADATA, PROGRESS_METADATA

    client = clients(server.port, 2)
    assert client.heartbeat() and server.actor_progress(2) is None  # evaluation beats carry none
    progress = VersionProgress(4, 1, 2, 150, 25.0, 0.5, 25.0)
    assert client.heartbeat(progress)
    assert server.actor_progress(2) == progress and server.actor_progress(0) is None
    before = server.last_contact(2)
    client._stub.Ready(
        services_pb2.Empty(), timeout=WAIT, metadata=((ACTOR_ID_METADATA, "2"), (PROGRESS_METADATA, "{oops"))
    )
    assert server.last_contact(2) > before and server.actor_progress(2) == progress


def test_a_learner_that_vanishes_right_after_ready_is_reported_not_waited_for(clients) -> None:
    """The learner answers the reconnect's Ready and is gone before the stream call (a learner
    stopping, or dying, just then; a busy machine widens the gap). Before: StreamParameters was
    made with wait_for_ready and no deadline, so it queued until some learner listened there again,
    for ever; the actor never said that no learner answered."""
    srv = LearnerServer("127.0.0.1", 0).start()
    client = clients(srv.port, 1, connect_timeout_s=0.8)
    answered = client.wait_for_learner

    def answered_then_gone(*args, **kwargs) -> float:
        waited = answered(*args, **kwargs)
        if srv._server is not None:  # the first answer only: later Ready calls find nobody
            srv.stop(grace=0)
            # the channel notices (a call fails on the closed connection, a reconnect is refused):
            # from here on a call that waits for readiness waits for a learner to listen again
            with contextlib.suppress(grpc.RpcError):
                client._stub.Ready(services_pb2.Empty(), timeout=1.0, metadata=client._metadata)
            time.sleep(0.3)
        return waited

    client.wait_for_learner = answered_then_gone
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=f"no learner answered at 127.0.0.1:{srv.port}"):
        client.receive_parameters(min_version=1, timeout=WAIT)
    assert time.monotonic() - t0 < 5.0
