"""The actor's side of LeRobot's ``LearnerService``: wait for the learner, follow its parameters,
send rollouts (each carrying its round's episode statistics in the header).

Why not LeRobot's actor helpers: its ``Ready()`` call has no deadline (an actor started before
the learner hangs or fails depending on gRPC's internal backoff, which grows to 120 s), and a
broken parameter stream is not re-established. Here:

* :meth:`ActorClient.wait_for_learner` retries ``Ready`` with a per-call deadline and capped
  exponential backoff until ``connect_timeout_s``, then raises a TransportError that says what to
  check. Either process may start first.
* A background thread holds the ``StreamParameters`` stream, decodes each payload and keeps only
  the newest; if the stream breaks it reconnects (same rules) and the learner re-sends the latest
  version on the new stream. :meth:`receive_parameters` blocks for a version >= ``min_version``.
* Every call carries the actor id, the run id, the auth token (if any) and the run identity
  (handshake); a learner that refuses the run or the identity (``FAILED_PRECONDITION``), the token (``UNAUTHENTICATED``)
  or a rollout (``INVALID_ARGUMENT``) ends the actor with one TransportError line (exit 5).
* A payload from a *different learner epoch* (the learner restarted, maybe resumed at a lower
  version) is always returned, whatever ``min_version`` says, so an actor never waits forever
  for a version the new learner will not reach.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from pirl_core.errors import TransportError
from pirl_core.progress import VersionProgress
from pirl_core.transport.payload import decode_payload, encode_payload
from pirl_core.transport.wire import (
    ACTOR_ID_METADATA,
    AUTH_METADATA,
    IDENTITY_HASH_METADATA,
    IDENTITY_METADATA,
    PROGRESS_METADATA,
    RUN_ID_METADATA,
    client_options,
    iter_chunks,
    reassemble,
)

log = logging.getLogger(__name__)

# CANCELLED too: a learner shutting down sends GOAWAY, which cancels calls in flight; for a
# restarting learner that is a reason to retry, not proof that something else listens there.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def backoff_delays(initial: float = 0.1, factor: float = 2.0, cap: float = 2.0) -> Iterator[float]:
    """0.1, 0.2, 0.4, ... capped at ``cap`` seconds: quick to notice a learner that just started,
    without hammering one that is down."""
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * factor)


def _refused(target: str, exc: grpc.RpcError) -> TransportError:
    """The learner refused this actor (token or run identity): its own words, one line."""
    return TransportError(f"learner at {target} refused this actor: {exc.details()}")


class ActorClient:
    """Actor-side transport. ``receive_parameters`` / ``send_*`` may be called from one thread
    while the parameter stream runs in its own; ``close()`` from any thread."""

    def __init__(
        self,
        host: str,
        port: int,
        actor_id: int | str,
        connect_timeout_s: float = 300.0,
        *,
        ready_deadline_s: float = 2.0,
        send_timeout_s: float = 600.0,
        backoff_cap_s: float = 2.0,
        identity: dict[str, Any] | None = None,
        run_id: str | None = None,
        auth_token: str = "",
        tls_ca: bytes | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.actor_id = actor_id
        self.connect_timeout_s = float(connect_timeout_s)
        self.ready_deadline_s = ready_deadline_s
        self.send_timeout_s = send_timeout_s
        self.backoff_cap_s = backoff_cap_s
        self.target = f"{host}:{self.port}"
        metadata = [(ACTOR_ID_METADATA, str(actor_id))]
        if run_id:
            metadata.append((RUN_ID_METADATA, run_id))
        if auth_token:
            metadata.append((AUTH_METADATA, auth_token))
        if identity is not None:
            from pirl_core.checkpoints.identity import identity_hash

            metadata.append((IDENTITY_METADATA, json.dumps(identity, sort_keys=True)))
            metadata.append((IDENTITY_HASH_METADATA, identity_hash(identity)))
        self._metadata = tuple(metadata)
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            self._channel = grpc.secure_channel(self.target, credentials, options=client_options())
        else:
            self._channel = grpc.insecure_channel(self.target, options=client_options())
        self._stub = services_pb2_grpc.LearnerServiceStub(self._channel)
        self._closed = threading.Event()
        self._cond = threading.Condition()
        self._latest: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None
        self._epoch: str | None = None
        self._epoch_changed = False
        self._error: TransportError | None = None
        self._thread: threading.Thread | None = None
        self._call: Any = None
        self.reconnects = 0

    # ------------------------------------------------------------------ connection
    def wait_for_learner(self, timeout_s: float | None = None) -> float:
        """Block until the learner answers ``Ready``; returns seconds waited.

        Raises TransportError after ``timeout_s`` (default ``connect_timeout_s``) naming host:port
        and what to check, or at once if something that is not a pirl learner answers.
        """
        timeout_s = self.connect_timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        delays = backoff_delays(cap=self.backoff_cap_s)
        last = "no attempt"
        while not self._closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._stub.Ready(
                    services_pb2.Empty(),
                    timeout=max(0.05, min(self.ready_deadline_s, remaining)),
                    metadata=self._metadata,
                    wait_for_ready=True,
                )
                return time.monotonic() - t0
            except grpc.RpcError as exc:
                code = exc.code()
                if self._closed.is_set():
                    break  # close() cancelled the call
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION):
                    raise _refused(self.target, exc) from exc  # token or another run: at once
                if code not in _RETRYABLE:
                    raise TransportError(
                        f"{self.target} answered Ready with {code.name}: {exc.details()}; "
                        "is a pirl learner (python -m pirl_core.learner) listening there?"
                    ) from exc
                last = code.name
            remaining = deadline - time.monotonic()
            if remaining > 0:
                self._closed.wait(min(next(delays), remaining))
        if self._closed.is_set():
            raise TransportError(f"actor {self.actor_id}: client closed while waiting for {self.target}")
        raise TransportError(
            f"no learner answered at {self.target} within {timeout_s:g}s (last: {last}). Check that "
            f"`python -m pirl_core.learner` is running, that --learner.host/--learner.port match on "
            f"both sides, and raise --actor.connect_timeout_s if the learner needs longer to start"
        )

    def heartbeat(self, progress: VersionProgress | None = None) -> bool:
        """One ``Ready`` call telling the learner this actor is alive and working although it sends no
        rollout (periodic evaluation, or a collection round, can take longer than
        ``learner.actor_timeout_s``). ``progress`` (while collecting) rides along in the
        ``pirl-progress`` metadata; the learner's waiting notice shows it. Called from the work
        loop itself, not a thread, so a hung actor stops beating. Best effort: False when the
        learner did not answer (the next rollout send reports a real failure loudly)."""
        metadata = self._metadata
        if progress is not None:
            metadata = (*metadata, (PROGRESS_METADATA, progress.encode()))
        try:
            self._stub.Ready(services_pb2.Empty(), timeout=self.ready_deadline_s, metadata=metadata)
        except grpc.RpcError:
            return False
        return True

    # ------------------------------------------------------------------ parameters
    def start(self) -> ActorClient:
        """Start following the learner's parameter stream (idempotent; called lazily)."""
        with self._cond:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._stream_loop, name=f"pirl-actor{self.actor_id}-params", daemon=True
                )
                self._thread.start()
        return self

    def receive_parameters(
        self, min_version: int = 0, timeout: float | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Newest parameters with ``header["version"] >= min_version`` (blocking), or the done signal.

        The done signal is ``(header, {})`` with ``header["done"] is True`` (and ``"reason"``).
        Parameters from a restarted learner (new ``learner_epoch``) are returned regardless of
        ``min_version``. Raises TransportError if the learner is unreachable for longer than
        ``connect_timeout_s`` or nothing suitable arrives within ``timeout`` seconds.
        """
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None:
                    header, tensors = self._latest
                    if header.get("done") or header["version"] >= min_version or self._epoch_changed:
                        self._epoch_changed = False
                        return header, tensors
                if self._error is not None:
                    raise self._error
                if self._closed.is_set():
                    raise TransportError(f"actor {self.actor_id}: client closed")
                if deadline is None:
                    self._cond.wait(1.0)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    have = None if self._latest is None else self._latest[0].get("version")
                    raise TransportError(
                        f"actor {self.actor_id}: no parameters with version >= {min_version} from "
                        f"{self.target} within {timeout:g}s (newest received: {have})"
                    )
                self._cond.wait(remaining)

    def _stream_loop(self) -> None:
        first = True
        while not self._closed.is_set():
            try:
                self.wait_for_learner()
            except TransportError as exc:
                self._fail(exc)
                return
            if not first:
                self.reconnects += 1
            first = False
            try:
                # Not wait_for_ready: Ready has just answered, so the channel is up; a learner that
                # vanished since then must fail this call at once (the loop then waits for it under
                # connect_timeout_s), not queue it until some learner listens again, for ever.
                call = self._stub.StreamParameters(
                    services_pb2.Empty(), metadata=self._metadata, wait_for_ready=False
                )
            except ValueError:  # close() shut the channel between the check above and this call
                if self._closed.is_set():
                    return
                raise
            self._call = call
            try:
                for blob in reassemble(call, f"parameters from {self.target}"):
                    header, tensors = decode_payload(blob)
                    if self._deliver(header, tensors):
                        return  # done: the learner finished the run
                log.warning("actor %s: learner closed the parameter stream; reconnecting", self.actor_id)
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return
                if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED):
                    self._fail(_refused(self.target, exc))  # handshake or token: retrying cannot help
                    return
                log.warning(
                    "actor %s: parameter stream broke (%s); reconnecting", self.actor_id, exc.code().name
                )
            except TransportError as exc:
                # A malformed stream is a bug or a version mismatch, not a network blip: surface it.
                call.cancel()
                self._fail(exc)
                return
            finally:
                self._call = None

    def _deliver(self, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> bool:
        with self._cond:
            epoch = header.get("learner_epoch")
            if self._epoch is not None and epoch != self._epoch:
                self._epoch_changed = True
            self._epoch = epoch
            self._latest = (header, tensors)
            self._cond.notify_all()
        return bool(header.get("done"))

    def _fail(self, exc: TransportError) -> None:
        with self._cond:
            self._error = exc
            self._cond.notify_all()

    # ------------------------------------------------------------------ rollouts / stats
    def send_rollout(self, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> dict[str, float]:
        """Send one rollout batch; ``header`` carries ``version``, ``round``, ``episodes`` and the
        round's episode ``stats``. Returns size and time.

        ``actor_id`` and ``kind="rollout"`` are added to the header. Retries while the learner is
        unreachable, up to ``connect_timeout_s`` (a resend of a round that did arrive is dropped
        by the learner: it keys rounds by actor, version and round); a payload the learner
        rejects raises TransportError at once.
        """
        full = {"kind": "rollout", **header, "actor_id": self.actor_id}
        data = encode_payload(tensors, full)
        t0 = time.perf_counter()
        self._send(self._stub.SendTransitions, services_pb2.Transition, data, "rollout")
        return {"mb": len(data) / 1e6, "send_s": time.perf_counter() - t0}

    def _send(self, method: Callable[..., Any], message_class: type, data: bytes, what: str) -> None:
        deadline = time.monotonic() + self.connect_timeout_s
        delays = backoff_delays(cap=self.backoff_cap_s)
        while True:
            if self._closed.is_set():
                raise TransportError(f"actor {self.actor_id}: client closed; {what} not sent")
            try:
                method(
                    iter_chunks(data, message_class),
                    timeout=self.send_timeout_s,
                    metadata=self._metadata,
                    # Fail fast while the learner is down; this loop owns the backoff and the
                    # connect_timeout_s budget (wait_for_ready would wait out send_timeout_s).
                    wait_for_ready=False,
                )
                return
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise TransportError(
                        f"learner at {self.target} rejected the {what}: {exc.details()}"
                    ) from exc
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION):
                    raise _refused(self.target, exc) from exc
                remaining = deadline - time.monotonic()
                if code not in _RETRYABLE or remaining <= 0:
                    raise TransportError(
                        f"could not send {what} ({len(data) / 1e6:.1f} MB) to {self.target}: "
                        f"{code.name} {exc.details()}; is the learner still running?"
                    ) from exc
                log.warning("actor %s: sending %s failed (%s); retrying", self.actor_id, what, code.name)
                self._closed.wait(min(next(delays), remaining))

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Cancel the parameter stream and close the channel. Idempotent."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()
        with self._cond:
            self._cond.notify_all()
        self._channel.close()  # also cancels a Ready/send call that is waiting out its deadline
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def __enter__(self) -> ActorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
