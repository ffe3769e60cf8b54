"""How the trainer's model is spread over the ranks (``learner.strategy``), and the full state
back for a push or a checkpoint.

``ddp`` (default, :class:`Replicated`) keeps a full replica and one identical AdamW state per rank,
so rank 0's state *is* the full state and checkpoints are written from it unchanged (LeRobot's
layout). ``fsdp`` (:class:`Sharded`) shards parameters, gradients and AdamW state over the ranks
(FSDP2 ``fully_shard``; frozen parameters are sharded too but never get a gradient). No rank then
holds the full state, so a push or a checkpoint is a collective: rank 0 sends "publish" or "save",
every rank gathers the full state, and rank 0 loads it into a CPU twin of the trainer (plain
modules and AdamW, the one-process layout) that the unchanged push and checkpoint code read. FSDP
reduce-scatters only the gradients that exist, so the ranks' backwards must reach the same
parameters: true of the recipes here (every head is used on every row); a head used on some rows
only would need a zero-weighted term in :class:`Evaluate`.

Neither strategy changes the trainer it is given: :meth:`Replicated.wrap` / :meth:`Sharded.wrap`
return a new :class:`PolicyTrainer` on the same model and update state, driven through the wrapped
forward and a :mod:`pirl_core.distributed.reducer`.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from pirl_core.distributed.group import ProcessGroup
from pirl_core.distributed.reducer import CollectiveReducer, ShardedReducer
from pirl_core.recipe.reducer import Reducer
from pirl_core.recipe.trainer import PolicyTrainer


class Evaluate(nn.Module):
    """``ActorCritic.evaluate`` as a ``forward``: DDP only reduces gradients of a forward it ran."""

    def __init__(self, actor_critic: nn.Module) -> None:
        super().__init__()
        self.actor_critic = actor_critic

    def forward(self, obs: dict[str, Tensor], chain: Tensor, sde_step: Tensor):
        return self.actor_critic.evaluate(obs, chain, sde_step)


def sync_trainer_state(group: ProcessGroup, trainer: PolicyTrainer) -> None:
    """Every rank starts from rank 0's weights, optimizer state and minibatch generator
    (restored from a checkpoint or freshly built), so the replicas never differ."""
    state = None
    if group.is_main:
        state = {
            "model": {k: v.cpu() for k, v in trainer.actor_critic.state_dict().items()},
            "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
            "generator": trainer.generator.get_state(),
            "updates_done": trainer.updates_done,
        }
    state = group.broadcast(state)
    if not group.is_main:
        trainer.actor_critic.load_state_dict(state["model"])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        trainer.generator.set_state(state["generator"])
        trainer.updates_done = state["updates_done"]


def driven_by(trainer: PolicyTrainer, module: nn.Module, reducer: Reducer, optimizers=None) -> PolicyTrainer:
    """A trainer on ``trainer``'s model, co-training term, update RNG state and count whose
    forwards go through ``module`` and whose statistics meet in ``reducer``. No drift probe: its
    forwards would bypass the wrapper (config validation refuses ``max_action_drift_mm`` there)."""
    wrapped = PolicyTrainer(
        trainer.actor_critic,
        trainer.recipe,
        forward=module,
        reducer=reducer,
        sft=trainer.sft,
        drift=False,
        optimizers=optimizers,
    )
    wrapped.generator.set_state(trainer.generator.get_state())
    wrapped.updates_done = trainer.updates_done
    return wrapped


class Replicated:
    """``learner.strategy = "ddp"``: a full replica per rank, gradients all-reduced."""

    sharded = False

    def __init__(self, group: ProcessGroup) -> None:
        self.group = group

    def wrap(self, trainer: PolicyTrainer) -> PolicyTrainer:
        """The trainer whose forwards run through DDP, with the same AdamWs."""
        device_ids = [self.group.local_rank] if self.group.backend == "nccl" else None
        module = nn.parallel.DistributedDataParallel(
            Evaluate(trainer.actor_critic),
            device_ids=device_ids,
            broadcast_buffers=False,
            # GRPO leaves the value head unused, Flow-SDE's hybrid step may skip the noise head.
            find_unused_parameters=True,
        )
        return driven_by(trainer, module, CollectiveReducer(self.group, module), trainer.optimizers)

    def gather_full(self, trainer: PolicyTrainer) -> PolicyTrainer:
        """A replica is full already."""
        return trainer


class Sharded:
    """``learner.strategy = "fsdp"``: parameters, gradients and AdamW state sharded over the ranks."""

    sharded = True

    def __init__(self, group: ProcessGroup) -> None:
        self.group = group
        self._module: nn.Module | None = None
        self._twin: PolicyTrainer | None = None  # rank 0: the trainer in full, on CPU

    def wrap(self, trainer: PolicyTrainer) -> PolicyTrainer:
        """Shard the synced trainer's model: FSDP2 swaps the parameters for DTensors, so the new
        trainer's optimizers are built over them and given the (full, identical on every rank)
        state the old ones had."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        names = _optimizer_names(trainer)
        full = {name: opt.state_dict() for name, opt in trainer.optimizers.items()}
        if self.group.is_main:
            self._twin = PolicyTrainer(
                copy.deepcopy(trainer.actor_critic).to("cpu"), trainer.recipe, drift=False
            )
        mesh = init_device_mesh(self.group.device().type, (self.group.world_size,))
        self._module = fully_shard(Evaluate(trainer.actor_critic), mesh=mesh)
        wrapped = driven_by(trainer, self._module, ShardedReducer(self.group, self._module))
        options = StateDictOptions(full_state_dict=True)
        for name, opt in wrapped.optimizers.items():
            if full[name]["state"]:  # a fresh AdamW has none; a restored or synced one does
                state = _by_name(full[name], names[name])
                set_optimizer_state_dict(self._module, opt, state, options=options)
            for group, saved in zip(opt.param_groups, full[name]["param_groups"], strict=True):
                group.update({k: v for k, v in saved.items() if k != "params"})
        return wrapped

    def gather_full(self, trainer: PolicyTrainer) -> PolicyTrainer | None:
        """A collective: every rank gathers the full state; rank 0 returns its CPU twin holding it,
        the other ranks None."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        assert self._module is not None and (self._twin is not None or not self.group.is_main), "wrap() first"
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model = get_model_state_dict(self._module, options=options)
        optimizers = {  # a fresh AdamW has no state: asking for it would step it once (lr 0) to make some
            name: get_optimizer_state_dict(self._module, opt, options=options)
            for name, opt in trainer.optimizers.items()
            if opt.state
        }
        twin = self._twin
        if twin is None:
            return None
        prefix = "actor_critic."
        twin.actor_critic.load_state_dict({k.removeprefix(prefix): v for k, v in model.items()})
        names = _optimizer_names(twin)
        for name, state in optimizers.items():
            twin.optimizers[name].load_state_dict(_by_index(state, names[name]))
        twin.generator.set_state(trainer.generator.get_state())
        return twin


def _optimizer_names(trainer: PolicyTrainer) -> dict[str, list[str]]:
    """Each optimizer's parameters as names in the FSDP root (:class:`Evaluate`), in the optimizer's
    order: the one-process checkpoint keys optimizer state by that position, FSDP by the name."""
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
