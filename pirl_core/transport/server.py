"""The learner's side of LeRobot's ``LearnerService``: a thin servicer over two parts.

* :class:`~pirl_core.transport.broadcast.ParameterBroadcast` — publish parameters to every actor;
* :class:`~pirl_core.transport.collector.RolloutCollector` — accept (or reject) inbound rollouts.

:class:`LearnerServer` owns the gRPC server (port, TLS, the auth interceptor, size caps) and the
handshake: every call of an actor carries its run id (``pirl_core.runid``); one of another run is
refused at its first call (``Ready``) with ``FAILED_PRECONDITION`` naming both runs. Then the actor
announces its run identity (``checkpoints.identity.actor_identity``) in the metadata of
``StreamParameters``; a mismatch is refused the same way, naming each differing field with both
values. The learner keeps serving everyone else.

Parameter headers always carry, besides the caller's fields: ``kind="parameters"``,
``version``, ``done`` (bool), ``learner_epoch`` (random per server start, so an actor can tell a
restarted learner from an old one) and ``published_at`` (unix seconds).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import uuid
import weakref
from concurrent import futures
from typing import Any

import grpc
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.errors import TransportError
from pirl_core.progress import VersionProgress
from pirl_core.transport.auth import TokenInterceptor
from pirl_core.transport.broadcast import ANONYMOUS, ParameterBroadcast
from pirl_core.transport.collector import Rollout, RolloutCheck, RolloutCollector
from pirl_core.transport.payload import encode_payload
from pirl_core.transport.wire import (
    ACTOR_ID_METADATA,
    IDENTITY_HASH_METADATA,
    IDENTITY_METADATA,
    MAX_MESSAGE_BYTES,
    PROGRESS_METADATA,
    RUN_ID_METADATA,
    metadata_value,
    server_options,
)

log = logging.getLogger(__name__)


class Handshake:
    """Compares an actor's run id, then its announced run identity, with the learner's (None:
    accept anyone). Handlers run on gRPC's thread pool: the refusal count is kept under a lock."""

    def __init__(self, identity: dict[str, Any] | None, run_id: str | None = None) -> None:
        from pirl_core.checkpoints.identity import identity_hash

        self.identity = identity
        self.hash = identity_hash(identity) if identity is not None else None
        self.run_id = run_id
        self._lock = threading.Lock()
        self._refused = 0

    @property
    def refused(self) -> int:
        """Actors refused so far."""
        with self._lock:
            return self._refused

    def count_refusal(self) -> None:
        with self._lock:
            self._refused += 1

    def problem(self, context: grpc.ServicerContext, actor: str) -> str | None:
        """None when the actor may proceed, else the one-line reason."""
        other_run = self.run_problem(context, actor)
        if other_run is not None:
            return other_run
        if self.identity is None or metadata_value(context, IDENTITY_HASH_METADATA) == self.hash:
            return None
        from pirl_core.checkpoints.identity import compare_identity

        raw = metadata_value(context, IDENTITY_METADATA)
        try:
            announced = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            announced = None
        if not isinstance(announced, dict):
            return (
                f"actor {actor} announced no run identity; start actor and learner from the same pirl "
                "checkout with the same --profile and overrides"
            )
        diffs = compare_identity(self.identity, announced)
        if not diffs:  # same fields, different hash: a different pirl version hashes differently
            diffs = ["identity hash differs (different pirl versions?)"]
        return (
            f"actor {actor} does not match the learner's run: {'; '.join(diffs)}. Start the actor with "
            "the learner's --profile and overrides (the values named 'learner')"
        )

    def run_problem(self, context: grpc.ServicerContext, actor: str) -> str | None:
        """The actor belongs to another run (or names none): the reason, naming both runs."""
        if self.run_id is None:
            return None
        announced = metadata_value(context, RUN_ID_METADATA)
        if announced == self.run_id:
            return None
        theirs = f"run {announced!r}" if announced else "no run"
        return (
            f"actor {actor} belongs to {theirs}, this learner serves run {self.run_id!r}: another run's "
            "learner holds this port (give each run its own --learner.port), or start the actor with "
            "this learner's --output_dir (or the same --learner.run_id on both sides)"
        )


class _Servicer(services_pb2_grpc.LearnerServiceServicer):
    """gRPC handlers only; the state lives in the parts passed in."""

    def __init__(
        self,
        broadcast: ParameterBroadcast,
        collector: RolloutCollector,
        handshake: Handshake,
        contacts: dict[str, float],
        progress: dict[str, VersionProgress] | None = None,
    ):
        self.broadcast = broadcast
        self.collector = collector
        self.handshake = handshake
        self.contacts = contacts  # actor id -> monotonic time of its last Ready (a liveness signal)
        self.progress = {} if progress is None else progress  # actor id -> its last reported progress

    def Ready(self, request, context):  # noqa: N802 (gRPC method name)
        actor = metadata_value(context, ACTOR_ID_METADATA)
        other_run = self.handshake.run_problem(context, actor or ANONYMOUS)
        if other_run is not None:  # an actor of another run stops at its first call
            self._refuse(context, actor or ANONYMOUS, other_run)
        if actor and self.handshake.problem(context, actor) is None:
            self.contacts[actor] = time.monotonic()
            reported = VersionProgress.decode(metadata_value(context, PROGRESS_METADATA))
            if reported is not None:  # advisory: a malformed value is dropped, the beat still counts
                self.progress[actor] = reported
        return services_pb2.Empty()

    def _refuse(self, context: grpc.ServicerContext, actor: str, problem: str) -> None:
        self.handshake.count_refusal()
        log.warning("refused actor %s: %s", actor, problem)
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)

    def StreamParameters(self, request, context):  # noqa: N802
        actor = metadata_value(context, ACTOR_ID_METADATA) or ANONYMOUS
        problem = self.handshake.problem(context, actor)
        if problem is not None:
            self._refuse(context, actor, problem)
        # Wake this handler (and delivery waiters) the moment the client goes away.
        context.add_callback(self.broadcast.wake)
        yield from self.broadcast.stream(actor, context.peer(), context.is_active)

    def SendTransitions(self, request_iterator, context):  # noqa: N802
        actor = metadata_value(context, ACTOR_ID_METADATA) or ANONYMOUS
        other_run = self.handshake.run_problem(context, actor)
        if other_run is not None:
            self._refuse(context, actor, other_run)
        try:
            self.collector.receive(request_iterator, actor)
        except TransportError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        return services_pb2.Empty()

    def SendInteractions(self, request_iterator, context):  # noqa: N802
        # Episode statistics travel in the rollout header; this RPC is not part of pirl's protocol.
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "pirl sends episode statistics in the rollout header")


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

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 50151,
        *,
        max_workers: int = 32,
        token: str = "",
        credentials: grpc.ServerCredentials | None = None,
        identity: dict[str, Any] | None = None,
        run_id: str | None = None,
        rollout_check: RolloutCheck | None = None,
        max_payload_bytes: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_workers = max_workers
        self.epoch = uuid.uuid4().hex[:12]
        self._token = token
        self._credentials = credentials
        self._max_payload_bytes = max_payload_bytes
        self._server: grpc.Server | None = None
        self.broadcast = ParameterBroadcast()
        self.collector = RolloutCollector(rollout_check, max_payload_bytes)
        self.handshake = Handshake(identity, run_id)
        self._contacts: dict[str, float] = {}
        self._progress: dict[str, VersionProgress] = {}

    @property
    def rejected_payloads(self) -> int:
        """Rollout requests refused so far (malformed, wrong for this run, oversized)."""
        return self.collector.rejected

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LearnerServer:
        """Bind and serve. Port 0 picks a free port (``self.port`` is updated)."""
        if self._server is not None:
            raise RuntimeError("LearnerServer.start() called twice")
        receive_cap = MAX_MESSAGE_BYTES if self._max_payload_bytes is None else self._max_payload_bytes + 4096
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="pirl-learner-rpc"),
            options=server_options(receive_cap),
            interceptors=[TokenInterceptor(self._token)] if self._token else None,
        )
        services_pb2_grpc.add_LearnerServiceServicer_to_server(
            _Servicer(self.broadcast, self.collector, self.handshake, self._contacts, self._progress), server
        )
        address = f"{self.host}:{self.port}"
        try:
            if self._credentials is not None:
                bound = server.add_secure_port(address, self._credentials)
            else:
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
        self.broadcast.stop()
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
        if self.broadcast.finished:
            raise RuntimeError("publish_parameters() after finish()")
        t0 = time.perf_counter()
        full = {**(header or {}), "kind": "parameters", "version": int(version), "done": False}
        payload = self._encode(full, tensors)
        encode_s = time.perf_counter() - t0
        _, actors = self.broadcast.publish(int(version), payload)
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
        disconnected; False after ``timeout``. Only the newest stream per actor id counts."""
        seq = self.broadcast.latest_seq()
        return seq is None or self.broadcast.wait_sent(self.broadcast.current_streams(), seq, timeout)

    def wait_for_actors(self, n: int, timeout: float) -> bool:
        """Block until ``n`` distinct actor ids hold a parameter stream (or ``timeout``)."""
        return self.broadcast.wait_for_actors(n, timeout)

    def finish(self, reason: str = "done", timeout: float = 5.0, step: int | None = None) -> dict[str, Any]:
        """Tell every actor the run is over (a final ``done`` message) and wait up to ``timeout``.

        Actors that connect afterwards (while the server still runs) get the same message at
        once. ``reason`` ("done", "interrupted", "terminated") and ``step`` tell an actor whether
        the run is over or must be resumed. Returns ``{"notified": actors sent the message, "pending": still connected but not
        sent it within ``timeout``, "gone": disconnected before it was sent}``.
        """
        version = self.broadcast.latest_version()
        header = {"kind": "parameters", "version": version, "done": True, "reason": reason}
        payload = self._encode(header if step is None else {**header, "step": int(step)}, {})
        targets = self.broadcast.current_streams()
        pub, _ = self.broadcast.publish(version, payload, done=True)
        self.broadcast.wait_sent(targets, pub.seq, timeout)
        return self.broadcast.delivery(targets, pub.seq)

    # ------------------------------------------------------------------ rollouts
    def get_rollout(self, timeout: float | None = None) -> Rollout | None:
        """Next accepted rollout ``(header, tensors)`` in arrival order, or None after ``timeout``."""
        return self.collector.get(timeout)

    def pending_rollouts(self) -> int:
        return self.collector.pending()

    def last_contact(self, actor_id: int | str) -> float | None:
        """``time.monotonic()`` of the actor's last ``Ready`` call (its heartbeat while it sends no
        rollouts, e.g. during periodic evaluation), or None if it never called."""
        return self._contacts.get(str(actor_id))

    def actor_progress(self, actor_id: int | str) -> VersionProgress | None:
        """The progress the actor's last heartbeat carried while it collected (None: none yet)."""
        return self._progress.get(str(actor_id))

    def connected_actors(self) -> list[dict[str, Any]]:
        """One entry per live parameter stream: actor id, peer, uptime, last version and push cost."""
        return self.broadcast.connected()
