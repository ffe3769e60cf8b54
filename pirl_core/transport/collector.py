"""Inbound rollouts: reassemble, decode, check against the learner's contract, queue or reject.

One message, one handler (LeRobot's ``rl/learner_service.py`` model): a rollout payload carries
its tensors and, in its header, the round's episode statistics, so nothing has to be matched up
across two RPCs. A request that fails any check is rejected for that request only (the caller
turns the :class:`~pirl_core.errors.TransportError` into gRPC ``INVALID_ARGUMENT``) and counted;
the learner's loop never sees it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch

from pirl_core.errors import TransportError
from pirl_core.transport.payload import decode_payload
from pirl_core.transport.wire import reassemble

log = logging.getLogger(__name__)

Rollout = tuple[dict[str, Any], dict[str, torch.Tensor]]
RolloutCheck = Callable[[dict[str, Any], dict[str, torch.Tensor]], None]


class RolloutCollector:
    """Thread-safe queue of accepted rollouts plus the count of rejected requests."""

    def __init__(self, check: RolloutCheck | None = None, max_payload_bytes: int | None = None) -> None:
        self._check = check
        self._max_bytes = max_payload_bytes
        self._queue: queue.Queue[Rollout] = queue.Queue()
        self._lock = threading.Lock()
        self._rejected = 0

    @property
    def rejected(self) -> int:
        with self._lock:
            return self._rejected

    def receive(self, messages: Iterable[Any], actor: str) -> None:
        """Accept every payload of one SendTransitions call; raise TransportError on the first bad one."""
        what = f"rollout from actor {actor}"
        try:
            for blob in reassemble(messages, what, self._max_bytes):
                header, tensors = decode_payload(blob)
                if self._check is not None:
                    self._check(header, tensors)
                self._queue.put((header, tensors))
        except TransportError as exc:
            with self._lock:
                self._rejected += 1
            log.warning("rejected %s: %s", what, exc.message)
            raise

    def get(self, timeout: float | None = None) -> Rollout | None:
        """Next accepted rollout in arrival order, or None after ``timeout``."""
        try:
            return self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return None

    def pending(self) -> int:
        return self._queue.qsize()
