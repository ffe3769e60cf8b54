"""Fuzz a live learner during a real toy run: random bytes, truncated, CRC-broken and oversized
payloads, wrong-typed headers and tensors, impossible versions, protocol violations, calls with
no or a wrong token, and a mismatched handshake. Every one must be refused with the expected
gRPC status, the run must complete, and its checkpoint must be bitwise the one a clean run
writes (toy runs are deterministic). Prints the counts for the closing note."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.runid import derive_run_id
from pirl_core.transport.payload import encode_payload
from pirl_core.transport.wire import (
    ACTOR_ID_METADATA,
    AUTH_METADATA,
    IDENTITY_HASH_METADATA,
    IDENTITY_METADATA,
    RUN_ID_METADATA,
    TransferState,
    client_options,
    iter_chunks,
)
from tests.test_transport_contract import header, rollout
from tests.transport_run import ToyRun, checkpoint_tensors, files_under, records

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token-123"
CAP_MB = 0.5
TRAINING_KEYS = ("policy_loss", "value_loss", "approx_kl", "clip_frac", "ratio_check", "entropy", "samples")
INVALID, UNAUTH, REFUSED, TOO_BIG = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def cases(rng: random.Random, run: str) -> Iterator[tuple[str, grpc.StatusCode, Callable]]:
    """Endless (kind, expected status, call(stub)) triples; ``run`` is the learner's run id."""
    good = encode_payload(rollout(), header())
    authed = ((AUTH_METADATA, TOKEN), (ACTOR_ID_METADATA, "0"), (RUN_ID_METADATA, run))

    def send(data: bytes, metadata=authed) -> Callable:
        return lambda stub: stub.SendTransitions(
            iter_chunks(data, services_pb2.Transition), timeout=30, metadata=metadata
        )

    def raw(messages: list, metadata=authed) -> Callable:
        return lambda stub: stub.SendTransitions(iter(messages), timeout=30, metadata=metadata)

    def stream(metadata) -> Callable:
        return lambda stub: next(stub.StreamParameters(services_pb2.Empty(), timeout=30, metadata=metadata))

    begin = services_pb2.Transition(transfer_state=TransferState.TRANSFER_BEGIN, data=b"x" * 10)
    middle = services_pb2.Transition(transfer_state=TransferState.TRANSFER_MIDDLE, data=b"x" * 10)
    middle_100k = services_pb2.Transition(transfer_state=TransferState.TRANSFER_MIDDLE, data=b"x" * 100_000)
    makers: list[Callable[[], tuple[str, grpc.StatusCode, Callable]]] = [
        lambda: ("random bytes", INVALID, send(rng.randbytes(rng.randint(1, 5000)))),
        lambda: ("truncated", INVALID, send(good[: rng.randint(1, len(good) - 1)])),
        lambda: ("crc broken", INVALID, send(_flip_last(good))),
        # one message above the cap: gRPC's receive limit refuses it before any handler runs
        lambda: ("oversized message", TOO_BIG, send(rng.randbytes(int(CAP_MB * 1e6) + 100_000))),
        # many small messages adding up above the cap: the reassembly cap refuses it mid-stream
        lambda: ("oversized payload", INVALID, raw([begin] + [middle_100k] * int(CAP_MB * 10 + 2))),
        lambda: ("header: version as text", INVALID, send(encode_payload(rollout(), header(version="0")))),
        lambda: ("header: actor id as text", INVALID, send(encode_payload(rollout(), header(actor_id="0")))),
        lambda: ("header: stats not a list", INVALID, send(encode_payload(rollout(), header(stats="x")))),
        lambda: (
            "tensor: wrong dtype",
            INVALID,
            send(encode_payload({**rollout(), "done": torch.zeros(2)}, header())),
        ),
        lambda: (
            "tensor: wrong chain shape",
            INVALID,
            send(encode_payload(rollout(chain=(1, 1, 1)), header())),
        ),
        lambda: ("tensor: missing", INVALID, send(encode_payload({"reward": torch.ones(2)}, header()))),
        lambda: ("version: future", INVALID, send(encode_payload(rollout(), header(version=10**6)))),
        lambda: ("version: negative", INVALID, send(encode_payload(rollout(), header(version=-3)))),
        lambda: ("version: fractional", INVALID, send(encode_payload(rollout(), header(version=0.5)))),
        lambda: ("protocol: middle without begin", INVALID, raw([middle])),
        lambda: ("protocol: ends mid-payload", INVALID, raw([begin, middle])),
        lambda: ("auth: no token", UNAUTH, send(good, ((ACTOR_ID_METADATA, "0"),))),
        lambda: (
            "auth: wrong token",
            UNAUTH,
            send(good, ((AUTH_METADATA, "guess"), (ACTOR_ID_METADATA, "0"))),
        ),
        lambda: ("auth: no token, parameters", UNAUTH, stream(())),
        lambda: (
            "handshake: other identity",
            REFUSED,
            stream(
                (
                    (AUTH_METADATA, TOKEN),
                    (RUN_ID_METADATA, run),
                    (IDENTITY_METADATA, json.dumps({"recipe.denoise_steps": 99})),
                    (IDENTITY_HASH_METADATA, "0"),
                )
            ),
        ),
        lambda: (
            "handshake: other run",
            REFUSED,
            send(good, ((AUTH_METADATA, TOKEN), (RUN_ID_METADATA, "x"))),
        ),
    ]
    while True:
        yield rng.choice(makers)()


def fuzz(
    learner, port: int, run: str, stop: threading.Event, tried: Counter, refused: Counter, wrong: list
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=client_options())
    stub = services_pb2_grpc.LearnerServiceStub(channel)
    try:
        for kind, expected, call in cases(random.Random(0), run):
            if stop.is_set():
                return
            tried[kind] += 1
            try:
                call(stub)
                wrong.append((kind, "accepted"))
            except grpc.RpcError as exc:
                if exc.code() == expected:
                    refused[kind] += 1
                elif exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and (
                    learner.wait(timeout=5) is not None  # raises if the learner is still running
                ):
                    tried[kind] -= 1  # the learner finished while this call was in flight
                    return
                else:
                    wrong.append((kind, exc.code().name, exc.details()))
            stop.wait(0.01)
    finally:
        channel.close()


def test_fuzzed_learner_refuses_everything_and_trains_exactly_like_a_clean_run(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    flags = [
        "--learner.updates=4",
        f"--learner.auth_token_file={token_file}",
        f"--learner.max_payload_mb={CAP_MB}",
    ]
    # same-length output dirs: the saved config (and so the recorded file sizes) must not differ
    clean, fuzzed = ToyRun(tmp_path / "a" / "run", flags), ToyRun(tmp_path / "b" / "run", flags)
    tried, refused, wrong = Counter(), Counter(), []
    try:
        clean.learner()
        clean.actor()
        assert clean.wait("learner", "actor-0") == {"learner": 0, "actor-0": 0}

        fuzzed.learner()
        stop = threading.Event()
        fuzzer = threading.Thread(
            target=fuzz,
            args=(
                fuzzed.procs["learner"],
                fuzzed.port,
                derive_run_id(fuzzed.out),
                stop,
                tried,
                refused,
                wrong,
            ),
        )
        fuzzer.start()
        try:
            fuzzed.actor()
            codes = fuzzed.wait("learner", "actor-0")
        finally:
            stop.set()
            fuzzer.join(30)
    finally:
        clean.close()
        fuzzed.close()
    total, rejected = sum(tried.values()), sum(refused.values())
    print(
        f"\nfuzz: payloads tried={total} rejected={rejected} run completed={codes == {'learner': 0, 'actor-0': 0}}"
    )
    print("fuzz by kind: " + ", ".join(f"{k}={refused[k]}/{tried[k]}" for k in sorted(tried)))
    assert codes == {"learner": 0, "actor-0": 0}, fuzzed.log("learner")[-2000:]
    assert not wrong, wrong[:5]
    assert total == rejected and total >= 20 and len(tried) >= 10

    assert files_under(fuzzed.out) == files_under(clean.out)
    expected, got = checkpoint_tensors(clean.out, 4), checkpoint_tensors(fuzzed.out, 4)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    for name in ("training_state/training_step.json",):
        a = json.loads((clean.out / "checkpoints" / "000004" / name).read_text())
        b = json.loads((fuzzed.out / "checkpoints" / "000004" / name).read_text())
        assert {k: v for k, v in a.items() if k != "saved_at"} == {
            k: v for k, v in b.items() if k != "saved_at"
        }
    metrics = [[r for r in records(run.out) if r["kind"] == "metrics"] for run in (clean, fuzzed)]
    assert [[m[k] for k in TRAINING_KEYS] for m in metrics[0]] == [
        [m[k] for k in TRAINING_KEYS] for m in metrics[1]
    ]
    assert metrics[0][-1]["rejected_payloads"] == 0 and metrics[1][-1]["rejected_payloads"] > 0
