"""The learner's side of LeRobot's ``LearnerService``: broadcast parameters, collect rollouts.

Why not LeRobot's servicer (``lerobot/rl/learner_service.py``): it pops parameters from one
shared queue, so with two actors each push reaches only one of them, and a dropped actor's
stale handler keeps popping and steals the next push from the actor that reconnected
(LeRobot #3979). Here the learner *publishes* the latest payload into a single slot with a
sequence number; every ``StreamParameters`` handler keeps its own "last sequence sent" and
sends whenever the slot is newer, so nothing is consumed and no handler can take a push from
another. Handlers watch ``context.is_active()`` (and are woken by the RPC's done-callback), so
a dead stream ends within a fraction of a second.

Delivery semantics: each connected stream receives the newest published version as soon as it
is free; if several versions are published while a stream is still sending an older one, the
intermediate ones are skipped for that stream (only the newest policy matters on-policy). A
stream that connects late immediately receives the latest version. ``finish()`` publishes a
final ``done`` message that every stream receives before it ends.

Parameter headers always carry, besides the caller's fields: ``kind="parameters"``,
``version``, ``done`` (bool), ``learner_epoch`` (random per server start, so an actor can tell a
restarted learner from an old one) and ``published_at`` (unix seconds).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import queue
import threading
import time
import uuid
import weakref
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.errors import TransportError
from pirl_core.transport.payload import decode_payload, encode_payload
from pirl_core.transport.wire import (
    ACTOR_ID_METADATA,
    TransferState,
    iter_chunks,
    reassemble,
    server_options,
)

log = logging.getLogger(__name__)

# How often a parameter handler re-checks liveness when nothing wakes it (the RPC done-callback
# normally wakes it at once; this bounds the worst case).
_POLL_S = 0.25
_DEDUP_WINDOW = 4096


@dataclass
class _Published:
    seq: int
    version: int
    payload: bytes
    done: bool


@dataclass
class _StreamState:
    """Bookkeeping for one live StreamParameters call (one per connected actor)."""

    stream_id: int
    actor_id: str
    peer: str
    connected_at: float = field(default_factory=time.time)
    sent_seq: int = 0
    version_sent: int | None = None
    last_send_s: float | None = None
    last_send_mb: float | None = None


def _actor_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_ID_METADATA:
            return str(value)
    return "?"


class _Servicer(services_pb2_grpc.LearnerServiceServicer):
    """gRPC handlers; all state lives in the owning :class:`LearnerServer`."""

    def __init__(self, owner: LearnerServer) -> None:
        self._o = owner

    def Ready(self, request, context):  # noqa: N802 (gRPC method name)
        return services_pb2.Empty()

    def StreamParameters(self, request, context):  # noqa: N802
        o = self._o
        stream = o._register_stream(_actor_id(context), context.peer())
        # Wake this handler (and delivery waiters) the moment the client goes away.
        context.add_callback(o._wake)
        try:
            while True:
                with o._cond:
                    while (
                        (o._latest is None or o._latest.seq == stream.sent_seq)
                        and not o._stopping
                        and context.is_active()
                    ):
                        o._cond.wait(_POLL_S)
                    if o._stopping or not context.is_active():
                        return
                    pub = o._latest
                assert pub is not None
                t0 = time.perf_counter()
                for msg in iter_chunks(pub.payload, services_pb2.Parameters):
                    if not context.is_active():
                        return
                    if msg.transfer_state == TransferState.TRANSFER_END:
                        # Book it before handing over the last chunk: once the client has it,
                        # it may hang up (it does after `done`) and gRPC then never resumes
                        # this generator.
                        with o._cond:
                            stream.sent_seq = pub.seq
                            stream.version_sent = pub.version
                            stream.last_send_s = time.perf_counter() - t0
                            stream.last_send_mb = len(pub.payload) / 1e6
                            o._cond.notify_all()
                    yield msg
                if pub.done:
                    return
        finally:
            o._unregister_stream(stream)

    def SendTransitions(self, request_iterator, context):  # noqa: N802
        self._o._receive(request_iterator, context, self._o._rollouts, "rollout")
        return services_pb2.Empty()

    def SendInteractions(self, request_iterator, context):  # noqa: N802
        self._o._receive(request_iterator, context, None, "interactions")
        return services_pb2.Empty()


def _stop_at_interpreter_exit(server: LearnerServer) -> None:
    """Release parameter streams when the interpreter exits without ``stop()``.

    gRPC runs handlers on a ``ThreadPoolExecutor`` whose (non-daemon) workers the interpreter
    joins at exit; a parameter stream waits for the next publication indefinitely, so a learner
    that crashed before calling ``stop()`` would hang instead of exiting. ``threading``'s exit
    hooks run in reverse registration order, so this one (registered after
    ``concurrent.futures`` was imported) runs before the executor joins its workers.
    """
    ref = weakref.ref(server)

    def hook() -> None:
        live = ref()
        if live is not None:
            live.stop(grace=0)

    register = getattr(threading, "_register_atexit", None)  # CPython >= 3.9; what futures uses
    try:
        if register is not None:
            register(hook)
        else:  # pragma: no cover - other interpreters
            atexit.register(hook)
    except RuntimeError:  # already shutting down
        pass


class LearnerServer:
    """Learner-side transport. Thread-safe; the learner loop calls it from one thread.

    Typical use::

        server = LearnerServer("127.0.0.1", 50151); server.start()
        server.publish_parameters(version, state_dict, {"policy": "xvla"})
        header, tensors = server.get_rollout(timeout=1.0) or (None, None)
        ...
        server.finish("done"); server.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 50151, *, max_workers: int = 32) -> None:
        self.host = host
        self.port = port
        self.max_workers = max_workers
        self.epoch = uuid.uuid4().hex[:12]
        self._server: grpc.Server | None = None
        self._cond = threading.Condition()
        self._latest: _Published | None = None
        self._seq = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self._streams: dict[int, _StreamState] = {}
        self._stopping = False
        self._finished = False
        self._rollouts: queue.Queue[tuple[dict[str, Any], dict[str, torch.Tensor]]] = queue.Queue()
        self._interactions: queue.Queue[dict[str, Any]] = queue.Queue()
        self._recent_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._ids_lock = threading.Lock()
        self.rejected_payloads = 0
        self.duplicate_payloads = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LearnerServer:
        """Bind and serve. Port 0 picks a free port (``self.port`` is updated)."""
        if self._server is not None:
            raise RuntimeError("LearnerServer.start() called twice")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="pirl-learner-rpc"),
            options=server_options(),
        )
        services_pb2_grpc.add_LearnerServiceServicer_to_server(_Servicer(self), server)
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio >= 1.5x raises instead of returning 0
            bound = 0
            reason = str(exc)
        else:
            reason = ""
        if not bound:
            server.stop(None)
            raise TransportError(
                f"learner cannot listen on {address}: port in use or address not available"
                f"{' (' + reason + ')' if reason else ''}. Stop the other learner, or pick a free "
                f"port with --learner.port=N (and pass the same --learner.port=N to the actors)"
            )
        self.port = bound
        server.start()
        self._server = server
        _stop_at_interpreter_exit(self)
        log.info("learner transport listening on %s:%d (epoch %s)", self.host, self.port, self.epoch)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving; in-flight RPCs get ``grace`` seconds. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def __enter__(self) -> LearnerServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ parameters
    def publish_parameters(
        self,
        version: int,
        tensors: dict[str, torch.Tensor],
        header: dict[str, Any] | None = None,
        *,
        wait_s: float = 10.0,
    ) -> dict[str, Any]:
        """Make ``tensors`` the latest parameters; every connected (and later) actor gets them.

        Then waits up to ``wait_s`` until every connected stream has sent them (0 = don't wait),
        so ``push_s`` measures the real push; in an on-policy loop the learner would wait for
        the resulting rollouts anyway, so the wait costs nothing. Returns ``{"version",
        "push_mb", "encode_s", "push_s" (publish call to last stream sent, incl. encode),
        "actors" (streams connected at publish time), "delivered" (all of them sent)}``.
        """
        if self._finished:
            raise RuntimeError("publish_parameters() after finish()")
        t0 = time.perf_counter()
        full = {**(header or {}), "kind": "parameters", "version": int(version), "done": False}
        payload = self._encode(full, tensors)
        encode_s = time.perf_counter() - t0
        with self._cond:
            self._latest = _Published(next(self._seq), int(version), payload, done=False)
            actors = len(self._streams)
            self._cond.notify_all()
        delivered = self.wait_for_delivery(wait_s) if wait_s > 0 else actors == 0
        return {
            "version": int(version),
            "push_mb": len(payload) / 1e6,
            "encode_s": encode_s,
            "push_s": time.perf_counter() - t0,
            "actors": actors,
            "delivered": delivered,
        }

    def _encode(self, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> bytes:
        header = {**header, "learner_epoch": self.epoch, "published_at": time.time()}
        return encode_payload(tensors, header)

    def wait_for_delivery(self, timeout: float) -> bool:
        """Block until every actor streaming now has been sent the latest publication, or has
        disconnected; False after ``timeout``.

        "Sent" means the last chunk was handed to gRPC. Only the newest stream per actor id
        counts (see :meth:`_current_streams`); actors connecting later get the latest at once.
        """
        with self._cond:
            latest = self._latest
            targets = self._current_streams()
        return latest is None or self._wait_sent(targets, latest.seq, timeout)

    def _wait_sent(self, targets: list[_StreamState], seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(s.sent_seq < seq and s.stream_id in self._streams for s in targets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, _POLL_S))
            return True

    def wait_for_actors(self, n: int, timeout: float) -> bool:
        """Block until ``n`` distinct actor ids hold a parameter stream (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len({s.actor_id for s in self._streams.values()}) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, _POLL_S))
            return True

    def finish(self, reason: str = "done", timeout: float = 5.0, step: int | None = None) -> dict[str, Any]:
        """Tell every actor the run is over (a final ``done`` message) and wait up to ``timeout``.

        Actors that connect afterwards (while the server still runs) get the same message at
        once. ``reason`` ("done", "interrupted", "terminated") and ``step`` tell an actor whether
        the run is over or must be resumed. Returns ``{"notified": actors sent the message, "pending": still connected but not
        sent it within ``timeout``, "gone": disconnected before it was sent}``.
        """
        with self._cond:
            version = self._latest.version if self._latest is not None else 0
        header = {"kind": "parameters", "version": version, "done": True, "reason": reason}
        payload = self._encode(header if step is None else {**header, "step": int(step)}, {})
        with self._cond:
            self._finished = True
            pub = _Published(next(self._seq), version, payload, done=True)
            self._latest = pub
            targets = self._current_streams()
            self._cond.notify_all()
        self._wait_sent(targets, pub.seq, timeout)
        with self._cond:
            notified = sum(s.sent_seq >= pub.seq for s in targets)
            pending = sum(s.sent_seq < pub.seq and s.stream_id in self._streams for s in targets)
        return {"notified": notified, "pending": pending, "gone": len(targets) - notified - pending}

    # ------------------------------------------------------------------ rollouts / stats
    def get_rollout(
        self, timeout: float | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """Next received rollout ``(header, tensors)`` in arrival order, or None after ``timeout``."""
        try:
            return self._rollouts.get(timeout=timeout) if timeout else self._rollouts.get_nowait()
        except queue.Empty:
            return None

    def pending_rollouts(self) -> int:
        return self._rollouts.qsize()

    def get_interactions(self) -> list[dict[str, Any]]:
        """All episode-stat records received since the last call (each has ``actor_id``)."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                out.append(self._interactions.get_nowait())
            except queue.Empty:
                return out

    def connected_actors(self) -> list[dict[str, Any]]:
        """One entry per live parameter stream: actor id, peer, uptime, last version and push cost."""
        now = time.time()
        with self._cond:
            return [
                {
                    "actor_id": s.actor_id,
                    "peer": s.peer,
                    "connected_s": now - s.connected_at,
                    "version_sent": s.version_sent,
                    "last_send_s": s.last_send_s,
                    "last_send_mb": s.last_send_mb,
                }
                for s in sorted(self._streams.values(), key=lambda s: s.stream_id)
            ]

    # ------------------------------------------------------------------ internals (handlers)
    def _current_streams(self) -> list[_StreamState]:
        """Live streams, but only the newest per actor id (caller holds ``_cond``).

        An actor that reconnected after a network drop may leave a half-open old stream behind
        until keepalive notices (~30 s); that one must not hold up delivery waits or finish().
        """
        newest: dict[str, _StreamState] = {}
        anonymous: list[_StreamState] = []
        for s in self._streams.values():
            if s.actor_id == "?":
                anonymous.append(s)
            elif s.actor_id not in newest or s.stream_id > newest[s.actor_id].stream_id:
                newest[s.actor_id] = s
        return [*newest.values(), *anonymous]

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _register_stream(self, actor_id: str, peer: str) -> _StreamState:
        with self._cond:
            stream = _StreamState(next(self._stream_ids), actor_id, peer)
            self._streams[stream.stream_id] = stream
            self._cond.notify_all()
        log.info("actor %s connected (%s)", actor_id, peer)
        return stream

    def _unregister_stream(self, stream: _StreamState) -> None:
        with self._cond:
            self._streams.pop(stream.stream_id, None)
            self._cond.notify_all()
        log.info("actor %s parameter stream closed (%s)", stream.actor_id, stream.peer)

    def _is_duplicate(self, payload_id: Any) -> bool:
        """Client retries after an ambiguous failure may resend a payload that did arrive."""
        if not isinstance(payload_id, str):
            return False
        with self._ids_lock:
            if payload_id in self._recent_ids:
                return True
            self._recent_ids[payload_id] = None
            if len(self._recent_ids) > _DEDUP_WINDOW:
                self._recent_ids.popitem(last=False)
            return False

    def _receive(self, request_iterator, context, target: queue.Queue | None, what: str) -> None:
        actor = _actor_id(context)
        try:
            for blob in reassemble(request_iterator, f"{what} from actor {actor}"):
                header, tensors = decode_payload(blob)
                if self._is_duplicate(header.get("payload_id")):
                    self.duplicate_payloads += 1
                    continue
                header.setdefault("actor_id", actor)
                if target is not None:
                    target.put((header, tensors))
                else:
                    items = header.get("items", [])
                    for item in items if isinstance(items, list) else [items]:
                        if isinstance(item, dict):
                            item.setdefault("actor_id", header["actor_id"])
                            self._interactions.put(item)
        except TransportError as exc:
            self.rejected_payloads += 1
            log.warning("rejected %s from actor %s: %s", what, actor, exc.message)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
