"""Auth token, TLS and the handshake over real gRPC on 127.0.0.1 (servers bind port 0).

Every RPC of a learner with a token refuses callers without it (UNAUTHENTICATED); an actor with a
wrong token or a mismatched run identity stops with one TransportError line (exit 5) naming the
cause; the learner keeps serving the actors that match. TLS uses a self-signed certificate made
in the test with the ``openssl`` command line tool.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.checkpoints.identity import actor_identity
from pirl_core.config import LearnerConfig, load_config
from pirl_core.errors import ConfigError, ExitCode, TransportError
from pirl_core.transport.auth import resolve_token, server_credentials, trusted_ca
from pirl_core.transport.client import ActorClient
from pirl_core.transport.server import LearnerServer
from pirl_core.transport.wire import client_options, iter_chunks

WAIT = 10.0
TOKEN = "correct horse battery staple"


def params() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6, dtype=torch.float32)}


def test_every_rpc_refuses_a_missing_or_wrong_token(made) -> None:
    server = LearnerServer("127.0.0.1", 0, token=TOKEN).start()
    made.append(server)
    server.publish_parameters(1, params(), wait_s=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=client_options())
    stub = services_pb2_grpc.LearnerServiceStub(channel)
    data = b"\x00" * 64
    calls = {
        "Ready": lambda md: stub.Ready(services_pb2.Empty(), timeout=WAIT, metadata=md),
        "StreamParameters": lambda md: next(
            stub.StreamParameters(services_pb2.Empty(), timeout=WAIT, metadata=md)
        ),
        "SendTransitions": lambda md: stub.SendTransitions(
            iter_chunks(data, services_pb2.Transition), timeout=WAIT, metadata=md
        ),
        "SendInteractions": lambda md: stub.SendInteractions(
            iter_chunks(data, services_pb2.InteractionMessage), timeout=WAIT, metadata=md
        ),
    }
    try:
        for name, call in calls.items():
            for metadata in ((), (("pirl-auth-token", "wrong"),)):
                with pytest.raises(grpc.RpcError) as info:
                    call(metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
                assert "learner.auth_token" in info.value.details()
    finally:
        channel.close()
    assert server.rejected_payloads == 0  # refused before any handler ran

    good = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=WAIT, auth_token=TOKEN)
    made.append(good)
    assert good.receive_parameters(1, timeout=WAIT)[0]["version"] == 1


def test_actor_with_wrong_token_stops_with_one_line(made) -> None:
    server = LearnerServer("127.0.0.1", 0, token=TOKEN).start()
    made.append(server)
    client = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=WAIT, auth_token="nope")
    made.append(client)
    with pytest.raises(TransportError) as info:
        client.wait_for_learner()
    assert info.value.exit_code == ExitCode.TRANSPORT
    assert "refused this actor" in info.value.line() and "auth_token" in info.value.line()


def test_mismatched_actor_is_refused_naming_fields_and_others_keep_training(tmp_path: Path, made) -> None:
    learner_cfg = load_config("toy", {"output_dir": str(tmp_path), "recipe.denoise_steps": 8})
    actor_cfg = load_config(
        "toy", {"output_dir": str(tmp_path), "policy.chunk_size": 2, "policy.action_steps": 2}
    )
    server = LearnerServer("127.0.0.1", 0, identity=actor_identity(learner_cfg)).start()
    made.append(server)
    server.publish_parameters(1, params(), wait_s=0)
    bad = ActorClient("127.0.0.1", server.port, 0, connect_timeout_s=WAIT, identity=actor_identity(actor_cfg))
    made.append(bad)
    with pytest.raises(TransportError) as info:
        bad.receive_parameters(1, timeout=WAIT)
    line = info.value.line()
    assert info.value.exit_code == ExitCode.TRANSPORT and "\n" not in line
    for part in (
        "recipe.denoise_steps: learner 8, actor 4",
        "policy.chunk_size: learner 4, actor 2",
        "policy.action_steps: learner 4, actor 2",
    ):
        assert part in line, line
    good = ActorClient(
        "127.0.0.1", server.port, 1, connect_timeout_s=WAIT, identity=actor_identity(learner_cfg)
    )
    made.append(good)
    assert good.receive_parameters(1, timeout=WAIT)[0]["version"] == 1
    server.publish_parameters(2, params(), wait_s=0)
    assert good.receive_parameters(2, timeout=WAIT)[0]["version"] == 2
    assert server.handshake.refused == 1


def test_non_loopback_host_requires_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("toy", {"output_dir": str(tmp_path), "learner.host": "0.0.0.0"})
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert info.value.field == "learner.auth_token" and "--learner.auth_token_file" in info.value.line()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = load_config(
        "toy",
        {"output_dir": str(tmp_path), "learner.host": "0.0.0.0", "learner.auth_token_file": str(token_file)},
    )
    assert resolve_token(cfg.learner) == TOKEN
    for name, value in (("learner.actor_timeout_s", 0.0), ("learner.max_payload_mb", float("inf"))):
        with pytest.raises(ConfigError, match=name):
            load_config("toy", {"output_dir": str(tmp_path), name: value})


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command line tool not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_with_a_self_signed_certificate(tmp_path: Path, made) -> None:
    cert, key = _self_signed(tmp_path)
    lc = LearnerConfig(tls_cert=str(cert), tls_key=str(key), auth_token=TOKEN)
    server = LearnerServer("127.0.0.1", 0, token=TOKEN, credentials=server_credentials(lc)).start()
    made.append(server)
    server.publish_parameters(3, params(), wait_s=0)
    client = ActorClient(
        "127.0.0.1", server.port, 0, connect_timeout_s=WAIT, auth_token=TOKEN, tls_ca=trusted_ca(lc)
    )
    made.append(client)
    header, tensors = client.receive_parameters(3, timeout=WAIT)
    assert header["version"] == 3 and torch.equal(tensors["w"], params()["w"])
    plaintext = ActorClient("127.0.0.1", server.port, 1, connect_timeout_s=1.0, auth_token=TOKEN)
    made.append(plaintext)
    with pytest.raises(TransportError, match="no learner answered"):
        plaintext.wait_for_learner()
    assert json.loads(json.dumps(server.connected_actors()))[0]["actor_id"] == "0"
