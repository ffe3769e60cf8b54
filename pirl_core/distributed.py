"""The learner across N processes (``torchrun``): one rank serves, every rank trains.

Design (docs/design.md, "Learner beyond one GPU"): rank 0 is the learner a user knows (gRPC
server, rollouts, telemetry, checkpoints, the output-dir lock); ranks 1..N-1 own no files and no
sockets. Per update, rank 0 *broadcasts the whole batch* and every rank computes the advantages
over it and draws the same minibatch order from the same generator; each rank then evaluates only
its contiguous shard of every minibatch (:meth:`Distributed.shard`). Why broadcast rather than
scatter each minibatch: GAE and advantage normalisation need whole episodes and the whole batch,
so computing them once per rank on identical inputs makes them global by construction (no
reduction to get wrong), and it costs one transfer per update instead of one per minibatch per
epoch. Loss terms are minibatch means, so a shard's loss is weighted by its share of the global
minibatch; DDP averages gradients over ranks, so the weight is multiplied by the world size and the
averaged gradient equals the one-process gradient up to float summation order. The statistics that
decide something (approx_kl for the early stop, the ratio check, the loss finiteness, the log-prob
mismatch bound) are all-reduced before any rank decides, so every rank takes the same branch.

Control: rank 0 waits for actors for as long as they take, so the other ranks do not wait in a
collective (which has a timeout: ``learner.collective_timeout_s``) but poll a command key in the
rendezvous store. Collectives then only ever wait for a peer that is computing, and a dead peer
ends them with an error that :meth:`Distributed.peer_failures` turns into
:class:`RankFailedError` (exit ``ExitCode.RANK_FAILED``) naming the rank.

Strategy: ``ddp`` (default) keeps a full replica and one identical AdamW state per rank, so rank
0's state *is* the full state and checkpoints are written from it unchanged (LeRobot's layout).
``fsdp`` shards parameters, gradients and AdamW state over the ranks (FSDP2 ``fully_shard``; frozen
parameters are sharded too but never get a gradient). No rank then holds the full state, so a push or a
checkpoint is a collective: rank 0 sends "publish" or "save", every rank gathers the full state, and rank 0
loads it into a CPU twin of the trainer (plain modules and AdamW, the one-process layout) that the
unchanged push and checkpoint code read. Every FSDP forward all-gathers, so every rank runs the same
number of forwards per minibatch (:meth:`Distributed.forwards`). FSDP reduce-scatters only the gradients
that exist, so the ranks' backwards must reach the same parameters: true of the recipes here (every head is
used on every row); a head used on some rows only would need a zero-weighted term in ``_Evaluate``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import pickle
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pirl_core.errors import ConfigError, ExitCode, PirlError

COMMAND_POLL_S = 5.0
"""How often a follower rank re-checks for rank 0's next command (it waits as long as rollouts take)."""


class RankFailedError(PirlError):
    """A learner rank died or stopped answering: the update in flight is lost, nothing is saved."""

    exit_code = ExitCode.RANK_FAILED


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


class _Evaluate(nn.Module):
    """``ActorCritic.evaluate`` as a ``forward``: DDP only reduces gradients of a forward it ran."""

    def __init__(self, actor_critic: nn.Module) -> None:
        super().__init__()
        self.actor_critic = actor_critic

    def forward(self, obs: dict[str, Tensor], chain: Tensor, sde_step: Tensor):
        return self.actor_critic.evaluate(obs, chain, sde_step)


@dataclass
class Distributed:
    """One rank's view of the process group, and every collective the learner uses."""

    rank: int
    world_size: int
    local_rank: int
    strategy: str
    backend: str
    store: Any
    timeout_s: float
    _sent: int = 0
    _received: int = 0
    _model: nn.Module | None = field(default=None, repr=False)
    _twin: Any = field(default=None, repr=False)  # fsdp, rank 0: the trainer in full, on CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up

    @classmethod
    def from_env(cls, strategy: str, device: str, timeout_s: float) -> Distributed | None:
        """Join the process group torchrun described, or None for a plain single process."""
        rank, world, local_rank = world_from_env()
        if world <= 1:
            return None
        if strategy not in ("ddp", "fsdp"):  # validate() refuses it too; a direct caller may not
            raise ConfigError("learner.strategy", strategy, "'ddp' or 'fsdp'")
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
        ctx = cls(rank, world, local_rank, strategy, backend, dist.PrefixStore("cmd", run_store), timeout_s)
        ctx.store.set(f"pid/{rank}", f"{socket.gethostname()} {os.getpid()}")
        return ctx

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    def wrap(self, trainer) -> None:
        """Route the trainer's forward passes through DDP or FSDP and give it this context's reductions."""
        if self.sharded:
            self._shard(trainer)
            trainer.dist = self
            return
        device_ids = [self.local_rank] if self.backend == "nccl" else None
        self._model = nn.parallel.DistributedDataParallel(
            _Evaluate(trainer.actor_critic),
            device_ids=device_ids,
            broadcast_buffers=False,
            # GRPO leaves the value head unused, Flow-SDE's hybrid step may skip the noise head.
            find_unused_parameters=True,
        )
        trainer.dist = self

    def _shard(self, trainer) -> None:
        """Shard the synced trainer in place: FSDP2 swaps the parameters for DTensors, so the
        optimizers are rebuilt over them and given the (full, identical on every rank) state they had."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        names = _optimizer_names(trainer)
        full = {name: opt.state_dict() for name, opt in trainer.optimizers.items()}
        if self.is_main:
            self._twin = _cpu_twin(trainer)
        mesh = init_device_mesh(self._device().type, (self.world_size,))
        self._model = fully_shard(_Evaluate(trainer.actor_critic), mesh=mesh)
        trainer.optimizers = trainer.build_optimizers()
        options = StateDictOptions(full_state_dict=True)
        for name, opt in trainer.optimizers.items():
            if full[name]["state"]:  # a fresh AdamW has none; a restored or synced one does
                state = _by_name(full[name], names[name])
                set_optimizer_state_dict(self._model, opt, state, options=options)
            for group, saved in zip(opt.param_groups, full[name]["param_groups"], strict=True):
                group.update({k: v for k, v in saved.items() if k != "params"})

    def full_trainer(self, trainer, command: str):
        """The trainer with full tensors, for a push or a checkpoint (``command``). DDP: rank 0's
        own. FSDP: a collective (rank 0 announces it, see :func:`follow`); on rank 0 the CPU twin
        holding the gathered state, on the other ranks None."""
        if not self.sharded:
            return trainer
        if self.is_main:
            self.send(command)
        return self.gather_full(trainer)

    def gather_full(self, trainer):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        assert self._model is not None, "wrap() the trainer first"
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model = get_model_state_dict(self._model, options=options)
        optimizers = {  # a fresh AdamW has no state: asking for it would step it once (lr 0) to make some
            name: get_optimizer_state_dict(self._model, opt, options=options)
            for name, opt in trainer.optimizers.items()
            if opt.state
        }
        if not self.is_main:
            return None
        twin = self._twin
        prefix = "actor_critic."
        twin.actor_critic.load_state_dict({k.removeprefix(prefix): v for k, v in model.items()})
        names = _optimizer_names(twin)
        for name, state in optimizers.items():
            twin.optimizers[name].load_state_dict(_by_index(state, names[name]))
        twin.generator.set_state(trainer.generator.get_state())
        return twin

    # ------------------------------------------------------------------ trainer hooks

    def evaluate(self, obs: dict[str, Tensor], chain: Tensor, sde_step: Tensor, sync: bool):
        """A forward whose backward all-reduces gradients (``sync``) or only accumulates them."""
        assert self._model is not None, "wrap() the trainer first"
        if self.sharded:  # accumulate unsharded gradients; the last backward reduce-scatters them
            self._model.set_requires_gradient_sync(sync)
            return self._model(obs, chain, sde_step)
        context = contextlib.nullcontext() if sync else self._model.no_sync()
        with context:
            return self._model(obs, chain, sde_step)

    def forwards(self, index: Tensor, micro_batch_size: int) -> int:
        """How many forwards every rank runs on this minibatch: under FSDP each one all-gathers, so
        a rank with fewer rows pads to the busiest rank's count (weight-0 chunks); DDP needs one."""
        if not self.sharded:
            return 1
        rows = [part.numel() for part in index.tensor_split(self.world_size)]
        if micro_batch_size <= 0:
            return 1
        return max(1, *(math.ceil(n / micro_batch_size) for n in rows))

    @property
    def grad_scale(self) -> float:
        """DDP averages gradients over ranks; shard weights are shares of the global minibatch."""
        return float(self.world_size)

    def shard(self, index: Tensor) -> Tensor:
        """This rank's contiguous part of a minibatch (sizes differ by at most one row)."""
        return index.tensor_split(self.world_size)[self.rank]

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def reduce(self, sums: dict[str, float], maxima: dict[str, float]) -> dict[str, float]:
        """Sum the weighted statistics and take the maximum of the others, over all ranks."""
        device = self._device()
        out: dict[str, float] = {}
        for values, op in ((sums, dist.ReduceOp.SUM), (maxima, dist.ReduceOp.MAX)):
            if not values:
                continue
            t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
            dist.all_reduce(t, op=op)
            out.update(zip(values, t.cpu().tolist(), strict=True))
        return out

    def reduce_rows(self, rows: Tensor) -> Tensor:
        """Rows computed by exactly one rank each (zeros elsewhere), summed into the full tensor."""
        t = rows.to(self._device(), torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to("cpu", rows.dtype)

    def gather_cat(self, tensor: Tensor) -> Tensor:
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)

    # ------------------------------------------------------------------ rank 0 -> followers

    def send(self, kind: str, **fields: Any) -> None:
        """Tell the followers what comes next (rank 0 only); a stop needs no collective."""
        self.store.set(f"cmd/{self._sent}", pickle.dumps({"kind": kind, **fields}))
        self._sent += 1

    def stop_followers(self) -> None:
        """Best effort: the store is gone when torchrun's agent is (its ranks are stopping anyway)."""
        with contextlib.suppress(RuntimeError, dist.DistError):
            self.send("stop")

    def receive(self) -> dict[str, Any]:
        """Wait, without a collective's timeout, for rank 0's next command."""
        key = f"cmd/{self._received}"
        while True:
            try:
                self.store.wait([key], timedelta(seconds=COMMAND_POLL_S))
                break
            except RuntimeError as exc:
                if "timeout" not in str(exc).lower():
                    raise RankFailedError(
                        f"the rendezvous store (torchrun's agent, or rank 0) is gone: {str(exc)[:120]}; "
                        f"learner rank {self.rank} stops"
                    ) from exc
                if 0 in self.dead_ranks():
                    raise self.rank_failed(
                        [0], f"while rank {self.rank} waited for its next command"
                    ) from exc
        self._received += 1
        return pickle.loads(self.store.get(key))

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank (rollout tensors, trainer state)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def sync_trainer_state(self, trainer) -> None:
        """Every rank starts from rank 0's weights, optimizer state and minibatch generator
        (restored from a checkpoint or freshly built), so the replicas never differ."""
        state = None
        if self.is_main:
            state = {
                "model": {k: v.cpu() for k, v in trainer.actor_critic.state_dict().items()},
                "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
                "generator": trainer.generator.get_state(),
                "updates_done": trainer.updates_done,
            }
        state = self.broadcast(state)
        if not self.is_main:
            trainer.actor_critic.load_state_dict(state["model"])
            for name, opt in trainer.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            trainer.generator.set_state(state["generator"])
            trainer.updates_done = state["updates_done"]

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


def _optimizer_names(trainer) -> dict[str, list[str]]:
    """Each optimizer's parameters as names in the FSDP root (``_Evaluate``), in the optimizer's order:
    the one-process checkpoint keys optimizer state by that position, FSDP by the name."""
    names = {id(p): f"actor_critic.{n}" for n, p in trainer.actor_critic.named_parameters()}
    return {
        name: [names[id(p)] for g in opt.param_groups for p in g["params"]]
        for name, opt in trainer.optimizers.items()
    }


def _by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A one-process optimizer state dict (keys: positions) keyed by parameter names."""
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {names[i]: v for i, v in state["state"].items()}, "param_groups": groups}


def _by_index(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of :func:`_by_name`: what ``torch.optim.Optimizer.state_dict`` would give."""
    index = {n: i for i, n in enumerate(names)}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
    return {"state": {index[n]: v for n, v in state["state"].items()}, "param_groups": groups}


def _cpu_twin(trainer):
    """A full, plain copy of the trainer on CPU (rank 0 under FSDP): what pushes and checkpoints read."""
    twin = copy.copy(trainer)
    twin.actor_critic = copy.deepcopy(trainer.actor_critic).to("cpu")
    twin.dist = None
    twin.optimizers = twin.build_optimizers()
    twin.generator = torch.Generator(device="cpu")
    return twin


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


def follow(cfg, ctx: Distributed, build_trainer) -> int:
    """A follower rank's whole life: build the same trainer, take rank 0's state, then run each
    update rank 0 announces on the batch it broadcasts. It never opens the output dir."""
    from pirl_core.rollout import RolloutBatch

    trainer = build_trainer(cfg)
    # Rank 0 says "start" once its checks passed (lock, resume plan); a refused run sends "stop".
    if ctx.receive()["kind"] != "start":
        return ExitCode.OK
    with ctx.peer_failures():
        ctx.sync_trainer_state(trainer)
        ctx.wrap(trainer)
        while True:
            command = ctx.receive()
            if command["kind"] == "stop":
                return ExitCode.OK
            if command["kind"] in ("publish", "save"):
                ctx.gather_full(trainer)
            if command["kind"] == "update":
                tensors = ctx.broadcast(None)
                trainer.update(
                    RolloutBatch.from_tensors(tensors),
                    update_index=command["step"],
                    on_policy=command["on_policy"],
                )
