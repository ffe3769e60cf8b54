"""One bad rollout never stops the learner: each kind of wrong request is refused for that request
(gRPC INVALID_ARGUMENT with a message, counted in ``rejected_payloads``), good ones keep flowing,
and an actor whose rollout is refused fails with exit 5 and the learner's words."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.errors import ExitCode, TransportError
from pirl_core.transport.client import ActorClient
from pirl_core.transport.contract import RolloutContract
from pirl_core.transport.payload import encode_payload
from pirl_core.transport.server import LearnerServer
from pirl_core.transport.wire import ACTOR_ID_METADATA, client_options, iter_chunks
from tests.batches import one_chunk_episodes

WAIT = 10.0
CHAIN = (3, 2, 1)  # (K+1, chunk, action dim) this learner expects


def rollout(episodes: int = 2, chain: tuple[int, ...] = CHAIN) -> dict[str, torch.Tensor]:
    n = episodes
    return one_chunk_episodes(
        {"state": torch.zeros(n, 5)},
        torch.zeros(n, *chain),
        torch.full((n,), -1, dtype=torch.long),
        torch.zeros(n),
        torch.zeros(n),
        reward=torch.ones(n),
    ).to_tensors()


def header(**changes: Any) -> dict[str, Any]:
    base = {
        "kind": "rollout",
        "version": 0,
        "actor_id": 0,
        "round": 0,
        "episodes": 2,
        "stats": [{"return": 1.0, "success": 0.0}, {"return": 0.5, "success": 1.0}],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def without(*names: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in rollout().items() if k not in names}


def replaced(name: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**rollout(), name: value}


# (label, header, tensors, words the refusal must contain)
BAD: list[tuple[str, dict[str, Any], dict[str, torch.Tensor], str]] = [
    ("missing tensors", header(), without("logp", "value"), "['logp', 'value'] missing"),
    ("wrong chain shape", header(), rollout(chain=(5, 2, 1)), "tensor 'chain': shape [2, 5, 2, 1]"),
    ("wrong dtype", header(), replaced("done", torch.ones(2)), "tensor 'done': dtype torch.float32"),
    ("ragged lengths", header(), replaced("logp", torch.zeros(3)), "tensor 'logp': shape [3]"),
    ("version as text", header(version="3"), rollout(), "header 'version': got '3' (str)"),
    ("version not integer", header(version=1.5), rollout(), "header 'version': got 1.5"),
    ("negative version", header(version=-1), rollout(), "header 'version': got -1, expected in [0, 3]"),
    ("future version", header(version=4), rollout(), "header 'version': got 4, expected in [0, 3]"),
    ("no version", header(version=DROP), rollout(), "header 'version': got None"),
    ("unknown actor id", header(actor_id=7), rollout(), "header 'actor_id': got 7, expected in [0, 1]"),
    ("actor id as text", header(actor_id="0"), rollout(), "header 'actor_id': got '0' (str)"),
    ("round as bool", header(round=True), rollout(), "header 'round'"),
    ("epoch as number", header(learner_epoch=5), rollout(), "header 'learner_epoch': got 5"),
    ("stats missing", header(stats=DROP), rollout(), "header 'stats'"),
    ("stats wrong type", header(stats=[{"return": "x", "success": 0}] * 2), rollout(), "numeric 'return'"),
    (
        "episodes disagree",
        header(episodes=1, stats=[{"return": 0, "success": 0}]),
        rollout(),
        "tensors hold 2",
    ),
    ("extra tensor", header(), replaced("secret", torch.zeros(2)), "unexpected tensors ['secret']"),
    (
        "other observations",
        header(),
        {**without("obs.state"), "obs.image": torch.zeros(2, 3)},
        "observations",
    ),
]


@pytest.fixture
def server() -> Iterator[LearnerServer]:
    contract = RolloutContract(2, CHAIN)
    srv = LearnerServer("127.0.0.1", 0, rollout_check=contract, max_payload_bytes=3_000_000)
    contract.published = srv.broadcast.latest_version
    srv.start()
    srv.publish_parameters(3, {"w": torch.zeros(1)}, wait_s=0)
    yield srv
    srv.stop(grace=0)


@pytest.fixture
def send(server: LearnerServer) -> Iterator[Callable[[bytes], grpc.RpcError | None]]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=client_options())
    stub = services_pb2_grpc.LearnerServiceStub(channel)

    def call(data: bytes) -> grpc.RpcError | None:
        try:
            stub.SendTransitions(
                iter_chunks(data, services_pb2.Transition), timeout=WAIT, metadata=((ACTOR_ID_METADATA, "0"),)
            )
        except grpc.RpcError as exc:
            return exc
        return None

    yield call
    channel.close()


def test_each_bad_rollout_is_refused_and_counted_and_good_ones_still_arrive(server, send) -> None:
    assert send(encode_payload(rollout(), header())) is None  # pins this run's observations
    assert server.get_rollout(timeout=WAIT) is not None
    for label, head, tensors, words in BAD:
        error = send(encode_payload(tensors, head))
        assert error is not None, label
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert words in error.details(), (label, error.details())
        assert send(encode_payload(rollout(), header(round=1))) is None, f"learner stopped after {label}"
        accepted, _ = server.get_rollout(timeout=WAIT)
        assert accepted["round"] == 1
    assert server.rejected_payloads == len(BAD)
    assert server.get_rollout(timeout=0.05) is None


def test_oversized_payload_is_refused_while_streaming(server, send) -> None:
    big = {**rollout(), "obs.state": torch.zeros(2, 1_000_000)}  # 8 MB > the 3 MB cap
    error = send(encode_payload(big, header()))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "learner.max_payload_mb" in error.details()
    assert server.rejected_payloads == 1
    assert send(encode_payload(rollout(), header())) is None


def test_actor_whose_rollout_is_refused_fails_with_exit_5_and_the_learners_message(server) -> None:
    client = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=WAIT)
    try:
        with pytest.raises(TransportError) as info:
            client.send_rollout(without("chain"), header())
    finally:
        client.close()
    assert info.value.exit_code == ExitCode.TRANSPORT == 5
    assert "rejected the rollout" in info.value.line() and "['chain'] missing" in info.value.line()
