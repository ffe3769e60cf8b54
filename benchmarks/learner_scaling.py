"""Learner update wall time for 1 and N ranks (pirl_core.distributed, DDP), and the ratio.

Each row is one ``PolicyTrainer.update`` on the same fixed global batch (same minibatches, same
epochs): the 1-rank row is the plain single-process learner, the N-rank rows run exactly the code
path ``torchrun -m pirl_core.learner`` runs (batch broadcast, shards per rank, DDP all-reduce,
all-reduced statistics), spawned here with ``torch.multiprocessing`` so one script times both.
Time = median over ``--repeats`` updates after one warm-up, measured on rank 0 between barriers;
the ratio N-rank / 1-rank comes from the same run. CPU uses gloo with ``--threads`` torch threads
per rank; ``--device cuda`` uses nccl, one GPU per rank, and is skipped when fewer GPUs are visible.

Policies: ``toy`` (tiny MLP flow policy, real toy rollouts) and ``xvla`` (tiny random X-VLA at
64x64, synthetic LIBERO observations sampled by the policy itself, as benchmarks/xvla_scale.py).

    python benchmarks/learner_scaling.py                          # CPU, toy + tiny X-VLA, 1 and 2 ranks
    python benchmarks/learner_scaling.py --device cuda --nproc 1 2 4 --policies xvla --transitions 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import RunConfig, load_config  # noqa: E402
from pirl_core.distributed import Distributed  # noqa: E402
from pirl_core.rollout import RolloutBatch  # noqa: E402


def make_config(policy: str, device: str, minibatches: int, epochs: int, transitions: int) -> RunConfig:
    common = {
        "seed": 0,
        "policy.device": device,
        "recipe.update_epochs": epochs,
        "recipe.minibatches": minibatches,
        "recipe.logprob_tolerance": 0.0,
    }
    if policy == "toy":
        # 12-step episodes = 3 chunks per env: whole episodes, so GAE sees complete trajectories
        return load_config("toy", {**common, "env.n_envs": max(1, transitions // 3)})
    return load_config("smoke", {**common, "policy.size": "tiny", "env.camera_size": 64})


def make_batch(policy: str, cfg: RunConfig, trainer, transitions: int) -> RolloutBatch:
    """The same batch on every rank (seeded): toy rollouts, or X-VLA chunks on synthetic frames."""
    ac = trainer.actor_critic
    gen = torch.Generator().manual_seed(0)
    if policy == "toy":
        from pirl_core.envs.factory import make_env
        from pirl_core.rollout import collect_rollouts

        env = make_env(cfg)
        ids = list(range(cfg.env.n_envs))
        batch, _, _ = collect_rollouts(env, ac, ids, gen, cfg.policy.action_steps)
        return batch
    from tests.libero_synthetic import DEFAULT_TASK, synthetic_raw_obs

    raw = synthetic_raw_obs(batch=transitions, seed=0, size=cfg.env.camera_size, task=DEFAULT_TASK)
    obs = {k: v.to(ac.device) for k, v in ac.adapter.prepare_obs(raw).items()}
    with torch.no_grad():
        out = ac.act(obs, gen)
    from tests.batches import one_chunk_episodes

    return one_chunk_episodes(
        {k: v.cpu() for k, v in obs.items()},
        out.chain.cpu(),
        out.sde_step.cpu(),
        out.logp.cpu(),
        out.value.cpu(),
        reward=torch.linspace(-1.0, 1.0, transitions),
    )


def time_updates(args: argparse.Namespace, policy: str, ctx: Distributed | None) -> list[float]:
    from pirl_core.learner import build_trainer
    from pirl_core.seeding import seed_everything

    cfg = make_config(policy, args.device, args.minibatches, args.epochs, args.transitions)
    seed_everything(cfg.seed)
    trainer = build_trainer(cfg)
    batch = make_batch(policy, cfg, trainer, args.transitions)
    if ctx is not None:
        ctx.sync_trainer_state(trainer)
        ctx.wrap(trainer)
    times = []
    for i in range(args.repeats + 1):
        if ctx is not None:
            torch.distributed.barrier()
        if args.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trainer.update(batch, update_index=i, on_policy=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        if ctx is not None:
            torch.distributed.barrier()
        if i > 0:  # the first update warms allocators and DDP's buckets
            times.append(time.perf_counter() - started)
    return times


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, policy: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(args.threads)
    ctx = Distributed.from_env("ddp", args.device, timeout_s=600.0)
    times = time_updates(args, policy, ctx)
    if rank == 0:
        torch.save(times, out)
    ctx.close()


def measure(args: argparse.Namespace, policy: str, nproc: int) -> float:
    if nproc == 1:
        torch.set_num_threads(args.threads)
        return statistics.median(time_updates(args, policy, None))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/times.pt"
        mp.start_processes(_rank, args=(nproc, port, args, policy, out), nprocs=nproc, start_method="spawn")
        return statistics.median(torch.load(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", nargs="+", default=["toy", "xvla"], choices=["toy", "xvla"])
    parser.add_argument("--nproc", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--transitions", type=int, default=32, help="global batch (toy: whole 3-chunk episodes)"
    )
    parser.add_argument("--minibatches", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()
    if args.device == "cuda":
        visible = torch.cuda.device_count()
        skipped = [n for n in args.nproc if n > visible]
        if skipped:
            print(f"skipping nproc {skipped}: only {visible} GPU(s) visible")
        args.nproc = [n for n in args.nproc if n <= visible]
    backend = "nccl" if args.device == "cuda" else "gloo"
    print(
        f"device={args.device} backend={backend} threads/rank={args.threads} transitions={args.transitions} "
        f"minibatches={args.minibatches} epochs={args.epochs} repeats={args.repeats}\n"
    )
    print("| policy | ranks | update_s (median) | ratio vs 1 rank |")
    print("|---|---|---|---|")
    for policy in args.policies:
        base = None
        for nproc in args.nproc:
            seconds = measure(args, policy, nproc)
            base = seconds if nproc == 1 else base
            ratio = f"{seconds / base:.2f}" if base else "-"
            print(f"| {policy} | {nproc} | {seconds:.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
