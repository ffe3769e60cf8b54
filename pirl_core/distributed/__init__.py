"""The learner across N processes (``torchrun``): one rank serves, every rank trains.

Design (docs/design.md, "Learner beyond one GPU"): rank 0 is the learner a user knows (gRPC
server, rollouts, telemetry, checkpoints, the output-dir lock); ranks 1..N-1 own no files and no
sockets. Per update, rank 0 *broadcasts the whole batch* and every rank computes the advantages
over it and draws the same minibatch order from the same generator; each rank then evaluates only
its contiguous shard of every minibatch. Why broadcast rather than scatter each minibatch: GAE and
advantage normalisation need whole episodes and the whole batch, so computing them once per rank
on identical inputs makes them global by construction (no reduction to get wrong), and it costs
one transfer per update instead of one per minibatch per epoch.

One job per module, none of which changes the trainer it is given:

* :mod:`.group` — joining the process group, the broadcast, naming a dead rank
  (:class:`RankFailedError`, exit ``ExitCode.RANK_FAILED``);
* :mod:`.commands` — rank 0 -> followers, polled in the store (no collective timeout while rank 0
  waits for actors);
* :mod:`.sharding` — ``learner.strategy`` (DDP replicas or FSDP shards): a new trainer driven
  through the wrapped forward, the full state back for a push or a checkpoint;
* :mod:`.reducer` — the trainer's reducer (:mod:`pirl_core.recipe.reducer`) as collectives.

:class:`Distributed` is the learner's handle on the three, :func:`follow` a follower rank's life.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pirl_core.distributed.commands import CommandChannel
from pirl_core.distributed.group import ProcessGroup, RankFailedError, world_from_env
from pirl_core.distributed.sharding import Replicated, Sharded, sync_trainer_state
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.recipe.trainer import PolicyTrainer

__all__ = ["Distributed", "RankFailedError", "follow", "world_from_env"]

STRATEGIES = {"ddp": Replicated, "fsdp": Sharded}


@dataclass
class Distributed:
    """One rank's process group, its command channel and its sharding strategy."""

    group: ProcessGroup
    commands: CommandChannel
    sharding: Replicated | Sharded

    @classmethod
    def from_env(cls, strategy: str, device: str, timeout_s: float) -> Distributed | None:
        """Join the process group torchrun described, or None for a plain single process."""
        if world_from_env()[1] <= 1:
            return None
        if strategy not in STRATEGIES:  # validate() refuses it too; a direct caller may not
            raise ConfigError("learner.strategy", strategy, "'ddp' or 'fsdp'")
        group = ProcessGroup.join(device, timeout_s)
        return cls(group, CommandChannel(group), STRATEGIES[strategy](group))

    @property
    def is_main(self) -> bool:
        return self.group.is_main

    @property
    def world_size(self) -> int:
        return self.group.world_size

    @property
    def sharded(self) -> bool:
        return self.sharding.sharded

    def close(self) -> None:
        self.group.close()

    # ------------------------------------------------------------------ the trainer

    def sync_trainer_state(self, trainer: PolicyTrainer) -> None:
        sync_trainer_state(self.group, trainer)

    def wrap(self, trainer: PolicyTrainer) -> PolicyTrainer:
        """The trainer to update with from here on: same model and state, the strategy's forward
        and the collectives' reducer (``trainer`` itself is left as it was)."""
        return self.sharding.wrap(trainer)

    def full_trainer(self, trainer: PolicyTrainer, command: str) -> PolicyTrainer | None:
        """The trainer with full tensors, for a push or a checkpoint (``command``). DDP: rank 0's
        own. FSDP: a collective (rank 0 announces it, see :func:`follow`); on rank 0 the CPU twin
        holding the gathered state, on the other ranks None."""
        if self.sharded and self.is_main:
            self.commands.send(command)
        return self.sharding.gather_full(trainer)

    def gather_full(self, trainer: PolicyTrainer) -> PolicyTrainer | None:
        return self.sharding.gather_full(trainer)

    # ------------------------------------------------------------------ rank 0 -> followers

    def send(self, kind: str, **fields: Any) -> None:
        self.commands.send(kind, **fields)

    def stop_followers(self) -> None:
        self.commands.stop_followers()

    def broadcast(self, obj: Any) -> Any:
        return self.group.broadcast(obj)

    # ------------------------------------------------------------------ failures

    def peer_failures(self) -> AbstractContextManager[None]:
        return self.group.peer_failures()

    def lost_peers(self) -> list[int]:
        return self.group.lost_peers()

    def rank_failed(self, dead: list[int], when: str) -> RankFailedError:
        return self.group.rank_failed(dead, when)


def follow(cfg, ctx: Distributed, build_trainer) -> int:
    """A follower rank's whole life: build the same trainer, take rank 0's state, then run each
    update rank 0 announces on the batch it broadcasts. It never opens the output dir."""
    from pirl_core.rollout import RolloutBatch

    trainer = build_trainer(cfg)
    # Rank 0 says "start" once its checks passed (lock, resume plan); a refused run sends "stop".
    if ctx.commands.receive()["kind"] != "start":
        return ExitCode.OK
    with ctx.group.peer_failures():
        ctx.sync_trainer_state(trainer)
        trainer = ctx.wrap(trainer)
        for command in _commands(ctx):
            if command["kind"] in ("publish", "save"):
                ctx.gather_full(trainer)
            if command["kind"] == "update":
                tensors = ctx.group.broadcast(None)
                trainer.update(
                    RolloutBatch.from_tensors(tensors),
                    update_index=command["step"],
                    on_policy=command["on_policy"],
                )
    return ExitCode.OK


def _commands(ctx: Distributed) -> Iterator[dict[str, Any]]:
    """Rank 0's commands until "stop"."""
    while (command := ctx.commands.receive())["kind"] != "stop":
        yield command
