"""Rank 0 -> followers: what comes next ("start", "update", "publish", "save", "stop").

Why not a collective: rank 0 waits for actors for as long as rollouts take, and a collective has
a timeout (``learner.collective_timeout_s``). Followers instead poll a numbered key in the run's
store (:class:`pirl_core.distributed.group.ProcessGroup`), so collectives only ever wait for a
peer that is computing, and a follower whose rank 0 died says so instead of hanging.
"""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch.distributed as dist

from pirl_core.distributed.group import ProcessGroup, RankFailedError

COMMAND_POLL_S = 5.0
"""How often a follower rank re-checks for rank 0's next command (it waits as long as rollouts take)."""


@dataclass
class CommandChannel:
    """Numbered commands in the group's store: rank 0 sends, every follower receives each in order."""

    group: ProcessGroup
    _sent: int = 0
    _received: int = 0

    def send(self, kind: str, **fields: Any) -> None:
        """Tell the followers what comes next (rank 0 only); a stop needs no collective."""
        self.group.store.set(f"cmd/{self._sent}", pickle.dumps({"kind": kind, **fields}))
        self._sent += 1

    def stop_followers(self) -> None:
        """Best effort: the store is gone when torchrun's agent is (its ranks are stopping anyway)."""
        with contextlib.suppress(RuntimeError, dist.DistError):
            self.send("stop")

    def receive(self) -> dict[str, Any]:
        """Wait, without a collective's timeout, for rank 0's next command."""
        group = self.group
        key = f"cmd/{self._received}"
        while True:
            try:
                group.store.wait([key], timedelta(seconds=COMMAND_POLL_S))
                break
            except RuntimeError as exc:
                if "timeout" not in str(exc).lower():
                    raise RankFailedError(
                        f"the rendezvous store (torchrun's agent, or rank 0) is gone: {str(exc)[:120]}; "
                        f"learner rank {group.rank} stops"
                    ) from exc
                if 0 in group.dead_ranks():
                    raise group.rank_failed(
                        [0], f"while rank {group.rank} waited for its next command"
                    ) from exc
        self._received += 1
        return pickle.loads(group.store.get(key))
