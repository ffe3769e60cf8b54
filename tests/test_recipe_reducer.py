"""The trainer's one boundary to distribution (pirl_core.recipe.reducer): what it hands a reducer,
that its decisions use what the reducer hands back, that wrapping for DDP leaves the given trainer
as it was, and that the trainer module knows nothing of torch.distributed or of the SFT app."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from pirl_core.config import load_config
from pirl_core.recipe.reducer import LocalReducer
from pirl_core.recipe.stats import LOSS_TERMS, UpdateStats
from pirl_core.recipe.trainer import PolicyTrainer
from pirl_core.rollout import collect_rollouts
from tests.inprocess.local_loop import build_loop

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = {
    "env.n_envs": 16,
    "recipe.minibatches": 3,
    "recipe.micro_batch_size": 4,
    "recipe.update_epochs": 2,
    "recipe.recompute_logprobs": True,
    "recipe.drift_probe_states": 0,
}


class RecordingReducer(LocalReducer):
    """One process's answers, with every question the trainer asked written down."""

    def __init__(self, add_kl: float = 0.0) -> None:
        self.calls: list[tuple[str, object]] = []
        self.add_kl = add_kl

    def shard(self, index: Tensor) -> Tensor:
        self.calls.append(("shard", index.numel()))
        return index

    def syncing(self, sync: bool):
        self.calls.append(("syncing", sync))
        return contextlib.nullcontext()

    def reduce(self, sums, maxima):
        self.calls.append(("reduce", (tuple(sums), tuple(maxima))))
        out = super().reduce(sums, maxima)
        out["approx_kl"] += self.add_kl
        return out

    def reduce_rows(self, rows: Tensor) -> Tensor:
        self.calls.append(("reduce_rows", tuple(rows.shape)))
        return rows

    def gather_cat(self, tensor: Tensor) -> Tensor:
        self.calls.append(("gather_cat", tensor.numel()))
        return tensor

    def norm(self, norm: Tensor) -> float:
        self.calls.append(("norm", None))
        return float(norm)

    def of(self, kind: str) -> list[object]:
        return [arg for name, arg in self.calls if name == kind]


def _trainer_and_batch(reducer=None, **extra: object):
    torch.manual_seed(0)
    state = build_loop(load_config("toy", {**OVERRIDES, **extra}))
    trainer = state.trainer
    if reducer is not None:
        trainer = PolicyTrainer(state.actor_critic, state.cfg.recipe, seed=state.cfg.seed, reducer=reducer)
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, list(range(16)), torch.Generator().manual_seed(0), 4
    )
    return trainer, batch


def test_the_update_meets_other_processes_only_through_its_reducer() -> None:
    reducer = RecordingReducer()
    trainer, batch = _trainer_and_batch(reducer)
    metrics = trainer.update(batch)
    plain, plain_batch = _trainer_and_batch()
    reference = plain.update(plain_batch)

    n, steps = len(batch), 2 * 3
    assert metrics.keys() == reference.keys()  # the same record, value for value
    for key in metrics.keys() - {"update_s", "samples_per_s"}:
        assert metrics[key] == reference[key], key
    for name, param in trainer.actor_critic.named_parameters():
        assert torch.equal(param, dict(plain.actor_critic.named_parameters())[name]), name
    # one statistics reduction per minibatch: the loss terms summed, the ratio deviation's maximum
    # only on the first (the ratio check), the log-prob differences gathered once
    reductions = reducer.of("reduce")
    assert len(reductions) == steps == metrics["minibatch_steps"]
    assert reductions[0] == (("loss", *LOSS_TERMS), ("ratio_dev_max",))
    assert all(r == (("loss", *LOSS_TERMS), ()) for r in reductions[1:])
    assert len(reducer.of("gather_cat")) == 1
    # recompute on: the re-scored rows meet once, as the whole batch
    assert reducer.of("reduce_rows") == [(n,)]
    # every minibatch is sharded (recompute + 2 epochs, each chunk list asked once per pass); only
    # a minibatch's last chunk syncs gradients (micro-batches of 4 rows: several chunks)
    syncs = reducer.of("syncing")
    assert syncs.count(True) == steps and syncs.count(False) > steps
    assert len(reducer.of("shard")) >= steps
    assert len(reducer.of("norm")) == steps * len(trainer.optimizers)  # each group's norm, every step


def test_decisions_use_the_reduced_statistics() -> None:
    """A reducer that reports a large approx_kl (as the ranks' sum might be) stops the update before
    its first step, although this process's own KL is 0 there (ratio 1 before any step)."""
    trainer, batch = _trainer_and_batch(RecordingReducer(add_kl=1.0), **{"recipe.target_kl": 0.01})
    before = {k: v.clone() for k, v in trainer.actor_critic.state_dict().items()}
    metrics = trainer.update(batch)
    assert metrics["kl_stopped"] == 1.0 and metrics["early_stop_epoch"] == 0.0
    assert metrics["minibatch_steps"] == 0.0
    assert all(torch.equal(v, trainer.actor_critic.state_dict()[k]) for k, v in before.items())


def test_update_stats_declares_the_telemetry_keys_in_record_order() -> None:
    """The keys the console, the report and learner.jsonl read, in the order a record has them."""
    keys = list(UpdateStats().metrics())
    assert keys == [
        "samples", "kept_frac", "adv_mean", "adv_std", "return_mean", "return_std", "explained_variance",
        "lr_policy", "lr_value", "lr_noise", "ratio_check", "logprob_mismatch_mean", "logprob_mismatch_max",
        "logprob_recomputed", "kl_stopped", "critic_warmup", "drift_stopped", "early_stop_epoch",
        "minibatch_steps", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "grad_norm",
        "grad_norm_value", "grad_norm_noise", "skipped", "update_s", "samples_per_s",
    ]  # fmt: skip
    stats = dataclasses.replace(UpdateStats(), sft_loss=3.0, drift={"action_drift_xyz_mm": 1.0}, drift_s=0.5)
    stats.add_step(dict.fromkeys(LOSS_TERMS, 1.0), {"policy": 2.0})
    stats.add_step(dict.fromkeys(LOSS_TERMS, 3.0), {"policy": 4.0})
    out = stats.metrics()
    assert out["policy_loss"] == 2.0 and out["grad_norm"] == 3.0 and out["grad_norm_value"] == 0.0
    assert out["sft_loss"] == 1.5 and out["action_drift_xyz_mm"] == 1.0 and "drift" not in out
    assert list(out)[-6:] == [
        "sft_loss",
        "action_drift_xyz_mm",
        "drift_s",
        "skipped",
        "update_s",
        "samples_per_s",
    ]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, function-local and TYPE_CHECKING imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_trainer_knows_nothing_of_torch_distributed_or_the_sft_app() -> None:
    recipe = ROOT / "pirl_core" / "recipe"
    for name in ("trainer.py", "reducer.py", "stats.py", "ppo.py"):
        source = (recipe / name).read_text()
        imports = _imports(recipe / name)
        assert not any(m.startswith(("torch.distributed", "pirl_core.distributed")) for m in imports), name
        assert "torch.distributed" not in source and "self.dist" not in source, name
    for path in recipe.glob("*.py"):  # co-training lives in the recipe layer; pirl_core.sft imports it
        assert not any(m.startswith("pirl_core.sft") for m in _imports(path)), path.name
    tree = ast.parse((recipe / "trainer.py").read_text())
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "dist" not in attributes  # no `if self.dist is None` branches: the reducer answers instead


def test_wrapping_for_ddp_returns_a_new_trainer_and_leaves_the_given_one_alone(tmp_path: Path) -> None:
    from pirl_core.distributed.group import ProcessGroup
    from pirl_core.distributed.reducer import CollectiveReducer
    from pirl_core.distributed.sharding import Replicated

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        trainer, batch = _trainer_and_batch()
        before = dict(vars(trainer))
        wrapped = Replicated(ProcessGroup(0, 1, 0, "gloo", store, 10.0)).wrap(trainer)
        assert vars(trainer) == before  # same objects in every attribute: nothing was set on it
        assert wrapped is not trainer and isinstance(wrapped.reducer, CollectiveReducer)
        assert wrapped.actor_critic is trainer.actor_critic and wrapped.optimizers is trainer.optimizers
        assert wrapped.forward is wrapped.reducer.module and wrapped.drift is None
        assert torch.equal(wrapped.generator.get_state(), trainer.generator.get_state())
        assert wrapped.update(batch)["minibatch_steps"] == 6.0  # a world of one: DDP runs the update
    finally:
        torch.distributed.destroy_process_group()
