"""The learner across 2 gloo ranks on CPU (pirl_core.distributed).

* Equality: one update on a fixed toy batch, 2 ranks (uneven shards, micro-batches, recompute on
  and off) vs one process: parameters within ATOL/RTOL (float summation order is the only
  difference), identical on both ranks, and the same decision-making metrics.
* The real entry point under torchrun (slow): a 2-rank run writes LeRobot checkpoints from rank 0
  only; resume 2 -> 1 and 1 -> 2 ranks continue; a killed rank stops the learner with exit 7.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import torch.multiprocessing as mp

from pirl_core.cli import parse_args
from pirl_core.config import load_config
from pirl_core.distributed import Distributed
from pirl_core.errors import ExitCode
from pirl_core.launch import learner_argv
from pirl_core.rollout import RolloutBatch, collect_rollouts
from pirl_core.telemetry import read_records
from tests.e2e_helpers import SHAPED_TOY, child_env, free_port, spawn, start, wait_all
from tests.inprocess.local_loop import build_loop

ATOL, RTOL = 1e-5, 1e-4
"""Stated tolerance of N ranks vs one process (parameters after two updates of 7 minibatch steps x 2
epochs each): only the order of float additions in the gradient reduction differs."""
OVERRIDES = {
    "env.n_envs": 16,
    "recipe.minibatches": 7,  # 48 rows -> minibatches of 7: shards of 4 and 3 rows
    "recipe.micro_batch_size": 3,
    "recipe.update_epochs": 2,
    "policy.hidden_dim": 32,
}
DECIDING = ("approx_kl", "clip_frac", "ratio_check", "policy_loss", "value_loss", "grad_norm")


def _two_updates(trainer, state, ctx: Distributed | None = None) -> list[dict[str, float]]:
    """Update 1 keeps the rollout log-probs, update 2 re-scores them (both reduction paths). Under
    FSDP the policy acts as the learner publishes it: gathered in full, rank 0 samples, broadcasts."""
    metrics = []
    for seed, recompute in ((0, False), (1, True)):
        trainer.recipe = dataclasses.replace(trainer.recipe, recompute_logprobs=recompute)
        policy = state.actor_critic
        if ctx is not None and ctx.sharded:
            full = ctx.full_trainer(trainer, "publish") if ctx.is_main else ctx.gather_full(trainer)
            policy = full.actor_critic if full is not None else None
        batch = None
        if policy is not None:
            batch, _, _ = collect_rollouts(
                state.env,
                policy,
                list(range(16)),
                torch.Generator().manual_seed(seed),
                state.cfg.policy.action_steps,
            )
        if ctx is not None and ctx.sharded:
            batch = RolloutBatch.from_tensors(
                ctx.broadcast(batch.to_tensors() if batch is not None else None)
            )
        metrics.append(trainer.update(batch))
    return metrics


FSDP_OVERRIDES = {**OVERRIDES, "recipe.grad_clip": 0.05}  # below the toy's norms: clipping acts


def _rank_main(
    rank: int, world: int, port: int, out: str, overrides: dict | None = None, strategy: str = "ddp"
) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    ctx = Distributed.from_env(strategy, "cpu", timeout_s=60.0)
    assert ctx is not None
    state = build_loop(load_config("toy", overrides or OVERRIDES))
    ctx.sync_trainer_state(state.trainer)
    state.trainer = ctx.wrap(state.trainer)  # a new trainer: wrap() leaves the plain one as it was
    metrics = _two_updates(state.trainer, state, ctx)
    if ctx.is_main:
        full = ctx.full_trainer(state.trainer, "save")
    else:  # what follow() does on "save": join the gather (FSDP); a DDP replica is full already
        full = ctx.gather_full(state.trainer) if ctx.sharded else state.trainer
    result: dict = {"metrics": metrics, "sharded_state": _sharded_state(state.trainer)}
    if full is not None:  # rank 0: the full (gathered, for FSDP) parameters and optimizer state
        result["params"] = full.actor_critic.state_dict()
        result["optimizers"] = {n: o.state_dict() for n, o in full.optimizers.items()}
    torch.save(result, f"{out}/rank{rank}.pt")
    ctx.close()


def _sharded_state(trainer) -> bool:
    """True when this rank holds only its shards of the AdamW moments (FSDP's DTensor state)."""
    from torch.distributed.tensor import DTensor

    moments = [s["exp_avg"] for o in trainer.optimizers.values() for s in o.state.values()]
    local = sum(m.to_local().numel() for m in moments if isinstance(m, DTensor))
    return (
        bool(moments)
        and all(isinstance(m, DTensor) for m in moments)
        and local < sum(m.numel() for m in moments)
    )


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_ranks_give_the_one_process_update(tmp_path: Path, strategy: str) -> None:
    overrides = FSDP_OVERRIDES if strategy == "fsdp" else OVERRIDES
    mp.start_processes(
        _rank_main,
        args=(2, free_port(), str(tmp_path), overrides, strategy),
        nprocs=2,
        start_method="spawn",
    )
    torch.manual_seed(0)
    state = build_loop(load_config("toy", overrides))
    initial = {k: v.clone() for k, v in state.actor_critic.state_dict().items()}
    reference = _two_updates(state.trainer, state)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["sharded_state"] == ranks[1]["sharded_state"] == (strategy == "fsdp")
    for name, ref in state.actor_critic.state_dict().items():
        if strategy == "ddp":
            assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name  # replicas agree
        torch.testing.assert_close(ranks[0]["params"][name], ref, atol=ATOL, rtol=RTOL, msg=name)
    for name, opt in state.trainer.optimizers.items():  # gathered state: the one-process layout
        want, got = opt.state_dict(), ranks[0]["optimizers"][name]
        assert got["param_groups"] == want["param_groups"]
        for index, moments in want["state"].items():
            for key, value in moments.items():
                torch.testing.assert_close(got["state"][index][key], value, atol=ATOL, rtol=RTOL)
    if strategy == "fsdp":  # clipping acted, on the global norm (a per-shard norm would differ)
        assert all(m["grad_norm"] > overrides["recipe.grad_clip"] for m in reference)
    moved = max(float((ranks[0]["params"][k] - v).abs().max()) for k, v in initial.items())
    assert moved > 100 * ATOL  # the updates moved the parameters far beyond the tolerance
    for got, want, other in zip(ranks[0]["metrics"], reference, ranks[1]["metrics"], strict=True):
        assert got["minibatch_steps"] == want["minibatch_steps"] == 14
        for key in DECIDING:
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
            assert got[key] == other[key], key  # every rank decides on the same numbers
    assert reference[1]["logprob_recomputed"] == ranks[0]["metrics"][1]["logprob_recomputed"] == 1.0


# --------------------------------------------------------------------------- the real entry point

FLAGS = ["--profile", "toy", *SHAPED_TOY, "--learner.collective_timeout_s=60"]


def _learner(nproc: int, args: list[str], log: Path) -> subprocess.Popen:
    """The learner as launch builds it: plain for 1 rank, torchrun for more."""
    cli = parse_args("learner", args)
    return spawn(list(learner_argv(cli, nproc, python=sys.executable)), log)


def _run_pair(out: Path, nproc: int, updates: int, *extra: str) -> str:
    args = [
        *FLAGS,
        f"--output_dir={out}",
        f"--learner.port={free_port()}",
        f"--learner.updates={updates}",
        *extra,
    ]
    log = out.parent / f"learner-{nproc}-{updates}.log"
    learner = _learner(nproc, args, log)
    actor = start("pirl_core.actor", args, out.parent / f"actor-{nproc}-{updates}.log")
    codes = wait_all([learner, actor], timeout=180)
    text = log.read_text(errors="replace")
    assert codes == [0, 0], text[-3000:]
    return text


def _records(out: Path, kind: str) -> list[dict]:
    return [r for r in read_records(out / "telemetry" / "learner.jsonl") if r["kind"] == kind]


def _wait_for(what: str, done, learner: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert learner.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_torchrun_checkpoints_resume_across_world_sizes_and_a_killed_rank_exits_7(tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = _run_pair(out, 2, 1)  # rank 0 writes step 1 (LeRobot layout) from the 2-rank run
    assert "world_size=2" in log
    assert (out / "checkpoints" / "000001" / "pretrained_model" / "model.safetensors").is_file()
    _run_pair(out, 1, 2, "--resume")  # 2 -> 1 rank: world size is a tunable

    _run_pair(out, 2, 3, "--resume")  # 1 -> 2 ranks
    assert [r["update"] for r in _records(out, "metrics")] == [1, 2, 3]
    assert [r["world_size"] for r in _records(out, "metrics")] == [2.0, 1.0, 2.0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000001", "000002", "000003", "last"]

    # No actor: rank 0 waits for rollouts while rank 1 is SIGKILLed; torchrun tears the rest down
    # and rank 0 names the rank (exit 7; plain torchrun would exit 1).
    args = [*FLAGS, f"--output_dir={out}", f"--learner.port={free_port()}", "--learner.updates=5", "--resume"]
    log_path = tmp_path / "killed.log"
    learner = _learner(2, args, log_path)
    try:
        _wait_for("ready", lambda: "ready" in log_path.read_text(errors="replace"), learner, log_path)
        children = psutil.Process(learner.pid).children()
        ranks = {int(p.environ()["RANK"]): p for p in children if "RANK" in p.environ()}
        ranks[1].kill()
        code = learner.wait(timeout=90)
    finally:
        if learner.poll() is None:
            os.killpg(learner.pid, signal.SIGKILL)
    text = log_path.read_text(errors="replace")
    assert code == ExitCode.RANK_FAILED, text[-3000:]  # pirl_core.torchrun keeps the learner's code
    assert "Root Cause" in text and "rank      : 1" in text  # torchrun's own report names rank 1 too
    assert "error: learner rank 1 died while rank 0 waited for rollouts" in text, text[-3000:]
    errors = _records(out, "error")
    assert errors and errors[-1]["exit_code"] == int(ExitCode.RANK_FAILED)
    assert (out / "checkpoints" / "last").resolve().name == "000003"  # nothing lost or overwritten


@pytest.mark.slow
def test_fsdp_run_publishes_checkpoints_and_resumes_across_world_sizes(tmp_path: Path) -> None:
    """Pushes and checkpoints gather the sharded state (rank 0 writes LeRobot's layout); a 2-rank
    FSDP checkpoint resumes on one process, and a one-process checkpoint restores into FSDP shards."""
    out = tmp_path / "run"
    log = _run_pair(out, 2, 1, "--learner.strategy=fsdp")
    assert "world_size=2" in log
    assert (
        out / "checkpoints" / "000001" / "training_state" / "policy" / "optimizer_state.safetensors"
    ).is_file()
    _run_pair(out, 1, 2, "--resume", "--learner.strategy=fsdp")  # 2 -> 1: one process ignores the strategy
    _run_pair(out, 2, 3, "--resume", "--learner.strategy=fsdp")  # 1 -> 2: full state loaded into shards
    metrics = _records(out, "metrics")
    assert [r["update"] for r in metrics] == [1, 2, 3]
    assert [r["world_size"] for r in metrics] == [2.0, 1.0, 2.0]
    assert all(r["ratio_check"] <= 1e-4 for r in metrics)  # the actors sampled what the ranks trained
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000001", "000002", "000003", "last"]


def test_console_sampler_lists_torchrun_ranks_with_memory() -> None:
    """The learner pane's rank lines come from the real process tree (ranks found by ``RANK``)."""
    from pirl_console.procstats import TreeSampler
    from pirl_console.widgets.process_pane import rank_lines

    spawn_ranks = (
        "import os, subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " env={**os.environ, 'RANK': str(r)}) for r in (1, 0)]\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    agent = subprocess.Popen([sys.executable, "-c", spawn_ranks], stdout=subprocess.PIPE, env=child_env())
    try:
        assert agent.stdout is not None and agent.stdout.readline() == b"up\n"
        sampler = TreeSampler()
        deadline = time.monotonic() + 10  # sampled about once a second, as the learner pane does
        while (stats := sampler.sample(agent.pid)) is not None and len(stats.ranks) < 2:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert stats is not None and [r.rank for r in stats.ranks] == [0, 1]
        assert all(r.rss_bytes > 0 for r in stats.ranks)
        lines = rank_lines(stats)
        assert len(lines) == 2 and lines[0].startswith("rank 0  pid ") and "rss " in lines[0]
    finally:
        for child in psutil.Process(agent.pid).children():
            child.kill()
        agent.kill()
        agent.wait()
    assert rank_lines(None) == []


def test_launch_and_console_start_the_learner_under_torchrun_for_nproc_above_one() -> None:
    from pirl_core.launch import child_commands

    one = child_commands(parse_args("launch", ["--profile", "toy"]), python="py")[0].argv
    assert one[:3] == ("py", "-m", "pirl_core.learner")
    args = parse_args("launch", ["--profile", "toy", "--learner.nproc=2"])
    learner, actor = child_commands(args, python="py")
    assert learner.argv[:5] == ("py", "-m", "pirl_core.torchrun", "--standalone", "--nproc-per-node=2")
    assert learner.argv[6:8] == ("-m", "pirl_core.learner") and "--learner.nproc=2" in learner.argv
    assert actor.argv[:3] == ("py", "-m", "pirl_core.actor")


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("--learner.nproc=0", "learner.nproc"),
        ("--learner.strategy=zero3", "learner.strategy"),
        ("--learner.collective_timeout_s=0", "learner.collective_timeout_s"),
    ],
)
def test_bad_distributed_settings_name_the_field(flag: str, field: str) -> None:
    from pirl_core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_args("learner", ["--profile", "toy", *flag.split()])
    assert err.value.message.startswith(f"{field}: got ")


def test_an_unknown_strategy_is_refused_under_torchrun_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from pirl_core.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as err:
        Distributed.from_env("zero3", "cpu", timeout_s=5.0)
    assert err.value.message.startswith("learner.strategy: got 'zero3', expected 'ddp' or 'fsdp'")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert Distributed.from_env("fsdp", "cpu", timeout_s=5.0) is None  # one process: nothing to shard


def test_torchrun_wrapper_keeps_rank_0s_exit_code() -> None:
    from types import SimpleNamespace

    from pirl_core.torchrun import exit_code_of

    failed = lambda code: SimpleNamespace(exitcode=code)  # noqa: E731 - torchrun's ProcessFailure fields
    assert exit_code_of({0: failed(3), 1: failed(-15)}) == ExitCode.RESUME_MISMATCH  # rank 0 chose it
    assert exit_code_of({1: failed(-9), 0: failed(-15)}) == ExitCode.RANK_FAILED  # rank 0 was torn down
    assert exit_code_of({1: failed(1)}) == ExitCode.RANK_FAILED


def test_a_rank_unreadable_at_first_is_found_on_a_later_sample(monkeypatch) -> None:
    """A process's environment can read empty right after it starts (seen under load): the sampler
    must ask again rather than remember "no rank" for that pid."""
    from pirl_console import procstats

    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=child_env())
    reads: list[int] = []

    def flaky_rank(proc) -> int | None:  # the agent's environment: empty at the first read only
        if proc.pid != agent.pid:
            return None
        reads.append(proc.pid)
        return None if len(reads) == 1 else 3

    monkeypatch.setattr(procstats, "_rank_of", flaky_rank)
    try:
        sampler = procstats.TreeSampler()
        root = procstats.psutil.Process(agent.pid)
        # the root itself is never listed as a rank, so sample the parent of the agent: this process
        first = sampler.sample(root.ppid())
        second = sampler.sample(root.ppid())
        assert first is not None and second is not None
        assert agent.pid not in [r.pid for r in first.ranks]
        assert [(r.pid, r.rank) for r in second.ranks if r.pid == agent.pid] == [(agent.pid, 3)]
        assert reads == [agent.pid, agent.pid]
    finally:
        agent.kill()
        agent.wait()
