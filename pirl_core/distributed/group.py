"""One rank's place in the ``torchrun`` process group: joining it, the broadcast, and naming a
rank that died.

The group also owns the run's rendezvous store (a prefix of torchrun's, per restart): every rank
registers ``host pid`` there when it joins, which is how :meth:`ProcessGroup.dead_ranks` tells a
dead peer from a slow one, and :mod:`pirl_core.distributed.commands` keeps rank 0's commands there.
A collective that fails because a peer died becomes :class:`RankFailedError` (exit
``ExitCode.RANK_FAILED``) naming the rank (:meth:`ProcessGroup.peer_failures`).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pirl_core.errors import ExitCode, PirlError


class RankFailedError(PirlError):
    """A learner rank died or stopped answering: the update in flight is lost, nothing is saved."""

    exit_code = ExitCode.RANK_FAILED


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


@dataclass
class ProcessGroup:
    """This rank's process group: who it is, its backend, and the run's store."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    store: Any  # the run's store: the pid registry and rank 0's commands
    timeout_s: float

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def join(cls, device: str, timeout_s: float) -> ProcessGroup:
        """Join the process group torchrun described (``world_from_env`` says there is one)."""
        rank, world, local_rank = world_from_env()
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        _stop_with_parent()
        if backend == "nccl":
            torch.cuda.set_device(local_rank)  # "cuda" then means this rank's GPU
        # torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE); a plain spawn has rank 0 host it.
        host_store = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
        timeout = timedelta(seconds=timeout_s)
        store = dist.TCPStore(
            os.environ.get("MASTER_ADDR", "127.0.0.1"),
            int(os.environ["MASTER_PORT"]),
            world,
            is_master=host_store,
            timeout=timeout,
        )
        run_store = dist.PrefixStore(f"pirl/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group(
            backend, store=dist.PrefixStore("pg", run_store), rank=rank, world_size=world, timeout=timeout
        )
        group = cls(rank, world, local_rank, backend, dist.PrefixStore("cmd", run_store), timeout_s)
        group.store.set(f"pid/{rank}", f"{socket.gethostname()} {os.getpid()}")
        return group

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def device(self) -> torch.device:
        """Where this rank's collectives run (its GPU under nccl, the CPU under gloo)."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank (rollout tensors, trainer state)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device())
        return box[0]

    # ------------------------------------------------------------------ failures

    def dead_ranks(self) -> list[int]:
        """Ranks on this host whose process is gone (ranks on other nodes are not judged here:
        their own node's torchrun agent reports them)."""
        dead = []
        here = socket.gethostname()
        for rank in range(self.world_size):
            try:
                host, pid = self.store.get(f"pid/{rank}").decode().rsplit(" ", 1)
            except (RuntimeError, ValueError):
                continue
            if host == here and not _alive(int(pid)):
                dead.append(rank)
        return dead

    @contextlib.contextmanager
    def peer_failures(self) -> Iterator[None]:
        """A collective that failed because a peer died becomes one line naming the rank."""
        try:
            yield
        except PirlError:
            raise
        except (RuntimeError, dist.DistError) as exc:
            dead = self.lost_peers()
            if not dead and "timed out" not in str(exc).lower() and "timeout" not in str(exc).lower():
                raise
            first_line = (str(exc).splitlines() or [""])[0][:160]
            raise self.rank_failed(
                dead, f"during an update ({type(exc).__name__}: {first_line}); nothing of it is saved"
            ) from exc

    def lost_peers(self) -> list[int]:
        return [r for r in self.dead_ranks() if r != self.rank]

    def rank_failed(self, dead: list[int], when: str) -> RankFailedError:
        who = f"rank {', '.join(map(str, dead))} died" if dead else "a rank stopped answering"
        return RankFailedError(
            f"learner {who} {when}; the whole learner stops (exit {int(ExitCode.RANK_FAILED)}). "
            "torchrun's failure report names the rank's own exit; resume with --resume "
            "(actors wait for the learner and reconnect)"
        )


def _stop_with_parent() -> None:
    """SIGTERM this rank when torchrun's agent dies (even by SIGKILL): its workers run in their own
    sessions, so nothing else would stop an orphaned rank 0 that holds the port and the lock."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
