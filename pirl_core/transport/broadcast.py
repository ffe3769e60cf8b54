"""Parameter broadcast: one published slot, every actor's stream sends the newest version.

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
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lerobot.transport import services_pb2

from pirl_core.transport.wire import TransferState, iter_chunks

log = logging.getLogger(__name__)

# How often a parameter handler re-checks liveness when nothing wakes it (the RPC done-callback
# normally wakes it at once; this bounds the worst case).
_POLL_S = 0.25
ANONYMOUS = "?"


@dataclass
class Published:
    seq: int
    version: int
    payload: bytes
    done: bool


@dataclass
class StreamState:
    """Bookkeeping for one live StreamParameters call (one per connected actor)."""

    stream_id: int
    actor_id: str
    peer: str
    connected_at: float = field(default_factory=time.time)
    sent_seq: int = 0
    version_sent: int | None = None
    last_send_s: float | None = None
    last_send_mb: float | None = None


class ParameterBroadcast:
    """The latest published payload and the streams that follow it. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Published | None = None
        self._seq = itertools.count(1)
        self._stream_ids = itertools.count(1)
        self._streams: dict[int, StreamState] = {}
        self._stopping = False
        self.finished = False

    # ------------------------------------------------------------------ learner side
    def publish(self, version: int, payload: bytes, *, done: bool = False) -> tuple[Published, int]:
        """Make ``payload`` the latest; returns it and the number of streams connected now."""
        with self._cond:
            if done:
                self.finished = True
            pub = Published(next(self._seq), int(version), payload, done=done)
            self._latest = pub
            self._cond.notify_all()
            return pub, len(self._streams)

    def latest_version(self) -> int:
        with self._cond:
            return self._latest.version if self._latest is not None else 0

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def current_streams(self) -> list[StreamState]:
        """Live streams, but only the newest per actor id.

        An actor that reconnected after a network drop may leave a half-open old stream behind
        until keepalive notices (~30 s); that one must not hold up delivery waits or finish().
        """
        with self._cond:
            newest: dict[str, StreamState] = {}
            anonymous: list[StreamState] = []
            for s in self._streams.values():
                if s.actor_id == ANONYMOUS:
                    anonymous.append(s)
                elif s.actor_id not in newest or s.stream_id > newest[s.actor_id].stream_id:
                    newest[s.actor_id] = s
            return [*newest.values(), *anonymous]

    def wait_sent(self, targets: list[StreamState], seq: int, timeout: float) -> bool:
        """True once every target has been sent publication ``seq`` or has disconnected."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(s.sent_seq < seq and s.stream_id in self._streams for s in targets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, _POLL_S))
            return True

    def delivery(self, targets: list[StreamState], seq: int) -> dict[str, int]:
        with self._cond:
            notified = sum(s.sent_seq >= seq for s in targets)
            pending = sum(s.sent_seq < seq and s.stream_id in self._streams for s in targets)
        return {"notified": notified, "pending": pending, "gone": len(targets) - notified - pending}

    def latest_seq(self) -> int | None:
        with self._cond:
            return None if self._latest is None else self._latest.seq

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

    def connected(self) -> list[dict[str, Any]]:
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

    # ------------------------------------------------------------------ one actor's stream
    def stream(self, actor_id: str, peer: str, is_active: Any) -> Iterator[Any]:
        """The messages of one StreamParameters call until the client leaves or the run ends."""
        with self._cond:
            state = StreamState(next(self._stream_ids), actor_id, peer)
            self._streams[state.stream_id] = state
            self._cond.notify_all()
        log.info("actor %s connected (%s)", actor_id, peer)
        try:
            while True:
                with self._cond:
                    while (
                        (self._latest is None or self._latest.seq == state.sent_seq)
                        and not self._stopping
                        and is_active()
                    ):
                        self._cond.wait(_POLL_S)
                    if self._stopping or not is_active():
                        return
                    pub = self._latest
                assert pub is not None
                t0 = time.perf_counter()
                for msg in iter_chunks(pub.payload, services_pb2.Parameters):
                    if not is_active():
                        return
                    if msg.transfer_state == TransferState.TRANSFER_END:
                        # Book it before handing over the last chunk: once the client has it,
                        # it may hang up (it does after `done`) and gRPC then never resumes
                        # this generator.
                        with self._cond:
                            state.sent_seq = pub.seq
                            state.version_sent = pub.version
                            state.last_send_s = time.perf_counter() - t0
                            state.last_send_mb = len(pub.payload) / 1e6
                            self._cond.notify_all()
                    yield msg
                if pub.done:
                    return
        finally:
            with self._cond:
                self._streams.pop(state.stream_id, None)
                self._cond.notify_all()
            log.info("actor %s parameter stream closed (%s)", actor_id, peer)
