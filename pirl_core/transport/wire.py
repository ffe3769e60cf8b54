"""gRPC plumbing shared by server and client: chunking, reassembly, channel options, metadata.

Chunking reuses LeRobot's ``send_bytes_in_chunks`` (2 MiB chunks, BEGIN/MIDDLE/END states) so
pirl speaks LeRobot's ``LearnerService`` wire protocol. Reassembly is pirl's own because
LeRobot's ``receive_bytes_in_chunks`` accepts protocol violations silently (a MIDDLE without a
BEGIN, a stream that ends mid-payload) and would hand a truncated blob to the decoder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from lerobot.transport import services_pb2
from lerobot.transport.utils import grpc_channel_options, send_bytes_in_chunks

from pirl_core.errors import TransportError

TransferState = services_pb2.TransferState  # type: ignore[attr-defined]

# Chunks are CHUNK_SIZE (2 MiB) plus a few bytes of protobuf framing; 8 MiB leaves headroom
# and still bounds what a misbehaving peer can make us buffer per message.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
ACTOR_ID_METADATA = "pirl-actor-id"
# The shared secret (``learner.auth_token``), checked by the server's interceptor on every RPC.
AUTH_METADATA = "pirl-auth-token"
# The actor's run identity (checkpoints.identity.actor_identity) as JSON, and its hash.
IDENTITY_METADATA = "pirl-identity"
IDENTITY_HASH_METADATA = "pirl-identity-hash"
# The run the actor belongs to (pirl_core.runid); checked before the identity.
RUN_ID_METADATA = "pirl-run-id"
# An actor's in-round progress on its heartbeat (``Ready``): pirl_core.progress.VersionProgress.encode.
PROGRESS_METADATA = "pirl-progress"

# Keepalive: a peer that vanishes without closing its socket (network drop, suspended VM) is
# noticed within ~KEEPALIVE_TIME + KEEPALIVE_TIMEOUT instead of never. The server must accept
# pings at this rate, or it answers GOAWAY "too_many_pings".
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000


def _common_options() -> list[tuple[str, Any]]:
    # LeRobot's helper sets message limits and a retry policy; pirl retries explicitly (with
    # deadlines and an actionable error), so the channel-level retry policy is turned off.
    opts = grpc_channel_options(
        max_receive_message_length=MAX_MESSAGE_BYTES,
        max_send_message_length=MAX_MESSAGE_BYTES,
        enable_retries=False,
    )
    return [o for o in opts if o[0] != "grpc.service_config"]


def metadata_value(context: Any, key: str) -> str | None:
    """One invocation-metadata value of a server-side call (None when absent)."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def server_options(max_receive_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    # Inbound messages are chunks (2 MiB + framing); a smaller payload cap lowers the limit too,
    # so gRPC refuses an oversized message before it is buffered.
    limit = max(64 * 1024, min(MAX_MESSAGE_BYTES, max_receive_bytes))
    opts = [o for o in _common_options() if o[0] != "grpc.max_receive_message_length"]
    return opts + [
        ("grpc.max_receive_message_length", limit),
        # gRPC sets SO_REUSEPORT by default on Linux: a second learner would then bind the same
        # port silently and steal half the actors. Off, so "port in use" is an error.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def client_options() -> list[tuple[str, Any]]:
    return _common_options() + [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC's default reconnect backoff grows to 120 s: an actor started long before its
        # learner would then sit out up to two minutes after the learner is up. Cap it.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def iter_chunks(payload: bytes, message_class: type) -> Iterator[Any]:
    """Split one payload into LeRobot transfer messages (``Parameters``, ``Transition``, ...)."""
    if not payload:
        raise TransportError("refusing to send an empty payload (encode_payload never produces one)")
    yield from send_bytes_in_chunks(payload, message_class, silent=True)


class PayloadTooLarge(TransportError):
    """A payload grew past the receiver's cap while streaming in (it was not buffered whole)."""


def reassemble(messages: Iterable[Any], what: str, max_bytes: int | None = None) -> Iterator[bytearray]:
    """Yield each complete payload from a stream of transfer messages; strict about states.

    A payload is BEGIN, MIDDLE*, END, or a lone END (LeRobot sends a payload that fits in one
    chunk as a single END). A stream that ends mid-payload raises TransportError; a payload
    that passes ``max_bytes`` raises :class:`PayloadTooLarge` as soon as the chunk that
    crosses the cap arrives, so at most one chunk beyond the cap is ever held.
    """
    parts: list[bytes] | None = None  # chunks of the payload in progress; joined once at END
    size = 0
    for msg in messages:
        size = len(msg.data) + (size if parts is not None else 0)
        if max_bytes is not None and size > max_bytes:
            raise PayloadTooLarge(
                f"{what}: payload exceeds the learner's cap of {max_bytes / 1e6:g} MB "
                "(learner.max_payload_mb); send smaller rollouts (fewer env.n_envs per round) or raise the cap"
            )
        state = msg.transfer_state
        if state == TransferState.TRANSFER_BEGIN:
            if parts is not None:
                raise TransportError(f"{what}: new payload began before the previous one ended")
            parts = [msg.data]
        elif state == TransferState.TRANSFER_MIDDLE:
            if parts is None:
                raise TransportError(f"{what}: chunk arrived without a BEGIN (stream joined mid-payload)")
            parts.append(msg.data)
        elif state == TransferState.TRANSFER_END:
            # A bytearray, so decode_payload can hand out zero-copy tensor views of it.
            if parts is None:
                yield bytearray(msg.data)
            else:
                parts.append(msg.data)
                yield bytearray().join(parts)
                parts = None
        else:
            raise TransportError(f"{what}: unknown transfer state {state!r}")
    if parts is not None:
        received = sum(len(p) for p in parts)
        raise TransportError(f"{what}: stream ended in the middle of a payload ({received} bytes received)")
