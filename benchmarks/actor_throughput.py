"""Actor throughput on LIBERO: bare step loop vs the actor's collection loop, env workers, render size.

Everything runs in one process run on the same task (libero_10 task 0, ``control_mode=absolute``,
``hard_reset=false`` as in ``libero_tiny``), so the ratios are meaningful on a busy machine:

* **bare loop**: one in-process sub-env stepped with a fixed action (hold the start pose), no
  policy; steps/s at render 256 (LeRobot's path) and at 64 (the policy's size).
* **reset**: seconds per reset (soft, as libero_tiny; hard, LIBERO's default, in full mode).
* **collection**: ``collect_rollouts`` with ``libero_tiny``'s tiny X-VLA (one policy call per chunk
  for all sub-envs), one episode per sub-env, env steps/s excluding resets, for: in-process (the
  ``env.workers=1`` path), one worker process, and 2, 4, ... workers where cores allow (one
  sub-env per worker), each at render 64 and 256. The time split (``time_*`` fractions) shows
  what pipelining inference against stepping could win at most (the inference share).
* **smoke collection**: one policy version of ``libero_tiny`` (what smoke was before issue 12;
  2 episodes x 16 steps, resets included):
  "before" = the pre-workers path (n_envs=1 in-process, render 256 + resize), "after" =
  ``env.n_envs=2`` with the default workers and render 64.

Every env runs a few warm-up steps before it is timed (a fresh process's first renders compile
Mesa's shaders). Worker processes use one llvmpipe thread (``LP_NUM_THREADS=1``), the in-process
rows Mesa's default, as before this change.

* **chunk step** (issue 18): ``step_chunk`` with 8 executed steps per chunk (smoke's and
  ``libero_small``'s ``action_steps``), rendering only the observation that is read, against the
  same envs with ``env.render_every_step=true`` (every frame rendered, the behaviour before the
  chunk step); smoke's env (libero_object task 0), a fixed hold action, 1 and 2 workers (one sub-env
  each), render 128 and 256. The two variants are measured in alternating blocks so a busy machine
  slows both alike.
* **smoke runs** (``--smoke-runs``): ``python -m pirl_core.launch --profile smoke`` twice, with
  ``env.render_every_step`` true and false, and the actors' ``env_steps_per_s`` and the wall
  times from their telemetry.

Goals on a 2-core machine: in-process/1-worker collection >= 0.9 x bare loop (render 64);
2 workers >= 1.7 x 1 worker; smoke collection after/before >= 3; chunk step >= 4 x every-step
rendering at 8 steps per chunk. Usage::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/actor_throughput.py [--short] [--max-workers 16]
    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/actor_throughput.py --chunk-only [--smoke-runs]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.process_env import configure_process  # noqa: E402

configure_process()  # MUJOCO_GL before anything imports mujoco

from pirl_core.config import load_config  # noqa: E402
from pirl_core.envs.libero import LiberoVectorEnv  # noqa: E402
from pirl_core.envs.workers import WorkerVectorEnv, available_cores  # noqa: E402
from pirl_core.rollout import TIME_PARTS, collect_rollouts  # noqa: E402
from pirl_core.rollout_plan import version_rounds  # noqa: E402

SMOKE_OVERRIDES = ["env.task_ids=[0]", "env.hard_reset=false"]


def build_policy(cfg):
    from pirl_core.recipe.actor_critic import actor_critic_for

    ac = actor_critic_for(cfg)
    ac.adapter.set_rl_mode()
    return ac


def make(cfg, mode: str, render: int):
    """mode: 'inproc' (the env.workers=1 path) or 'wN' (N worker processes)."""
    env_cfg = cfg.env
    if mode == "inproc":
        return LiberoVectorEnv(env_cfg, render_size=render)
    workers = int(mode[1:])
    if render != min(env_cfg.camera_size, 256):
        env_cfg = dataclasses.replace(env_cfg, camera_size=render)  # workers render at camera_size
    return WorkerVectorEnv(env_cfg, workers)


def bare_loop(env, steps: int) -> float:
    raw = env.reset([0])
    action = np.zeros((1, 7))
    action[0, :3] = raw["robot_state"]["eef"]["pos"][0]  # absolute control: hold the start position
    action[0, 6] = -1.0
    env.step(action)  # warm-up (first render allocates buffers)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    return steps / (time.perf_counter() - t0)


def warm_up(env, steps: int = 3) -> None:
    """A few steps first: a fresh process's first renders pay Mesa's shader compilation."""
    raw = env.reset(list(range(env.num_envs)))
    action = np.zeros((env.num_envs, 7))
    action[:, :3] = raw["robot_state"]["eef"]["pos"]
    action[:, 6] = -1.0
    for _ in range(steps):
        env.step(action)


def reset_seconds(env, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        env.reset([i % 2] * env.num_envs)
    return (time.perf_counter() - t0) / n


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collection(env, ac, action_steps: int) -> dict[str, float]:
    """One episode per sub-env (``env.episode_length`` steps); env steps/s excluding the reset.

    Also CPU seconds: this process (policy, bookkeeping) and each worker. ``quiet_steps_per_s``
    projects the rate on uncontended cores: the actor and its workers alternate (inference, then
    stepping), so a round costs the actor's CPU plus the busiest worker's (resets included in
    both, so it is a conservative figure)."""
    ids = list(range(env.num_envs))
    pids = list(getattr(env, "pids", []))
    cpu0, wcpu0 = time.process_time(), [_cpu_s(p) for p in pids]
    with torch.no_grad():
        _, _, timing = collect_rollouts(env, ac, ids, torch.Generator().manual_seed(0), action_steps)
    actor_cpu = time.process_time() - cpu0
    worker_cpu = [_cpu_s(p) - c for p, c in zip(pids, wcpu0, strict=True)]
    wall = timing["collect_s"] - timing["reset_s"]
    out = {"env_steps_per_s": timing["env_steps"] / wall, "collect_s": timing["collect_s"]}
    out["cpu_ms_per_step"] = 1e3 * (actor_cpu + sum(worker_cpu)) / timing["env_steps"]
    out["quiet_steps_per_s"] = timing["env_steps"] / (actor_cpu + max(worker_cpu, default=0.0))
    parts = {p: timing.get(f"{p}_s", 0.0) for p in ("env_step", "render", "inference")}
    parts["idle"] = max(0.0, wall - sum(parts.values()))
    out.update({f"frac_{p}": v / wall for p, v in parts.items()})
    return out


def smoke_collection(cfg, env, ac) -> tuple[float, float]:
    """(wall seconds, quiet-core projection: actor CPU + busiest worker's CPU) for one version."""
    pids = list(getattr(env, "pids", []))
    cpu0, wcpu0 = time.process_time(), [_cpu_s(p) for p in pids]
    t0 = time.perf_counter()
    for _ in version_rounds(cfg, env, ac, actor_id=0, version=0):
        pass
    wall = time.perf_counter() - t0
    worker_cpu = [_cpu_s(p) - c for p, c in zip(pids, wcpu0, strict=True)]
    return wall, time.process_time() - cpu0 + max(worker_cpu, default=0.0)


CHUNK = 8  # executed steps per chunk: smoke's and libero_small's policy.action_steps


def chunk_env(render: int, workers: int, every_step: bool):
    """Smoke's env (libero_object task 0), one sub-env per worker, rendering at ``render``."""
    cfg = load_config("smoke", ["env.episode_length=1000000"]).env
    cfg = dataclasses.replace(
        cfg, n_envs=workers, workers=workers, camera_size=render, render_every_step=every_step
    )
    return LiberoVectorEnv(cfg) if workers == 1 else WorkerVectorEnv(cfg, workers)


def chunk_block(env, chunks: int) -> tuple[float, float]:
    """(env steps, wall seconds) of ``chunks`` chunk steps holding the start pose."""
    raw = env.reset(list(range(env.num_envs)))
    action = np.zeros((env.num_envs, CHUNK, 7))
    action[:, :, :3] = raw["robot_state"]["eef"]["pos"][:, None]
    action[:, :, 6] = -1.0
    limit = np.full(env.num_envs, CHUNK)
    env.step_chunk(action, limit)  # warm-up: first renders, caches
    t0 = time.perf_counter()
    steps = 0
    for _ in range(chunks):
        steps += int(env.step_chunk(action, limit).executed.sum())
    return steps, time.perf_counter() - t0


def chunk_step_section(short: bool) -> dict[str, dict[str, float]]:
    """Chunk step vs every-step rendering, 1 and 2 workers, render 128 and 256 (alternating blocks)."""
    chunks, blocks = (4, 2) if short else (8, 3)
    out: dict[str, dict[str, float]] = {}
    for render in (128, 256):
        for workers in (1, 2):
            envs = {every: chunk_env(render, workers, every) for every in (True, False)}
            try:
                for env in envs.values():
                    env.num_init_states()  # workers: built before timing
                totals = {every: [0, 0.0] for every in envs}
                for _ in range(blocks):
                    for every, env in envs.items():
                        n, dt = chunk_block(env, chunks)
                        totals[every][0] += n
                        totals[every][1] += dt
            finally:
                for env in envs.values():
                    env.close()
            every_rate = totals[True][0] / totals[True][1]
            chunk_rate = totals[False][0] / totals[False][1]
            label = f"w{workers}/r{render}"
            out[label] = {
                "every_step_steps_per_s": every_rate,
                "chunk_steps_per_s": chunk_rate,
                "ratio": chunk_rate / every_rate,
            }
            print(
                f"chunk step {label:<8} every-step rendering {every_rate:6.2f} env steps/s, chunk step "
                f"{chunk_rate:6.2f} env steps/s: x{chunk_rate / every_rate:.2f} (goal >= 4)",
                flush=True,
            )
    return out


def smoke_runs() -> dict[str, dict[str, float]]:
    """Smoke twice (render_every_step true, then false); env steps/s and wall from telemetry."""
    import subprocess
    import tempfile

    out: dict[str, dict[str, float]] = {}
    for every in ("true", "false"):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pirl_core.launch",
                    "--profile=smoke",
                    f"--env.render_every_step={every}",
                    f"--output_dir={tmp}/smoke",
                ],
                check=True,
                cwd=Path(__file__).resolve().parents[1],
                stdout=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - t0
            rates, collect = [], []
            for path in Path(tmp).glob("smoke/**/telemetry/actor-*.jsonl"):
                for line in path.read_text().splitlines():
                    rec = json.loads(line)
                    if "env_steps_per_s" in rec:
                        rates.append(float(rec["env_steps_per_s"]))
                        collect.append(float(rec.get("collect_s", 0.0)))
        out[every] = {
            "wall_s": wall,
            "env_steps_per_s": sum(rates) / max(1, len(rates)),
            "collect_s": sum(collect),
        }
        print(
            f"smoke render_every_step={every}: wall {wall:.0f} s, actor env_steps_per_s "
            f"{out[every]['env_steps_per_s']:.2f}, collection {out[every]['collect_s']:.0f} s",
            flush=True,
        )
    ratio = out["false"]["env_steps_per_s"] / max(out["true"]["env_steps_per_s"], 1e-9)
    out["ratio"] = {"env_steps_per_s": ratio}
    print(f"smoke env_steps_per_s chunk step / every-step rendering: x{ratio:.2f} (goal >= 3)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="fewer steps (noisy, ~3x quicker)")
    parser.add_argument("--max-workers", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--chunk-only", action="store_true", help="only the chunk-step section")
    parser.add_argument(
        "--smoke-runs", action="store_true", help="also run smoke twice (chunk step vs every step)"
    )
    args = parser.parse_args()
    if args.chunk_only:
        results = {"chunk_step": chunk_step_section(args.short)}
        if args.smoke_runs:
            results["smoke_runs"] = smoke_runs()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    steps = 24 if args.short else 80
    cores = available_cores()
    counts = [n for n in (2, 4, 8, 16) if n <= min(cores, args.max_workers)] or [2]
    print(f"cores usable: {cores}; steps per measurement: {steps}; short={args.short}", flush=True)
    results: dict[str, object] = {"cores": cores, "short": args.short, "steps": steps}

    smoke = load_config("libero_tiny", SMOKE_OVERRIDES)
    ac = build_policy(smoke)
    length = [f"env.episode_length={steps + 1}"]  # the bare loop's warm-up step + steps
    one = load_config("libero_tiny", SMOKE_OVERRIDES + length + ["env.n_envs=1", "env.workers=1"])

    # -------------------------------------------------------------- bare loop, resets, 1 sub-env
    envs = {render: make(one, "inproc", render) for render in (256, 64)}
    bare = {render: bare_loop(env, steps) for render, env in envs.items()}
    results["bare_steps_per_s"] = bare
    print(
        f"bare loop (1 env, fixed action): render256 {bare[256]:.2f} steps/s, render64 {bare[64]:.2f} steps/s"
    )
    resets = {"soft": reset_seconds(envs[64], 2 if args.short else 4)}
    if not args.short:
        hard = LiberoVectorEnv(dataclasses.replace(one.env, hard_reset=True))
        resets["hard"] = reset_seconds(hard, 2)
        hard.close()
    results["reset_s"] = resets
    print("reset s: " + ", ".join(f"{k} {v:.2f}" for k, v in resets.items()))

    # -------------------------------------------------------------- collection loop
    coll: dict[str, dict[str, float]] = {}

    def run(label: str, cfg, mode: str, render: int, env=None) -> None:
        built = env is None
        t0 = time.perf_counter()
        env = env or make(cfg, mode, render)
        env.num_init_states()  # workers: wait until built (construction is not collection)
        start_s = time.perf_counter() - t0
        warm_up(env)
        try:
            row = collection(env, ac, smoke.policy.action_steps)
        finally:
            if built:
                env.close()
        row["start_s"] = start_s
        coll[label] = row
        fr = " ".join(f"{p}={row.get('frac_' + p, 0):.2f}" for p in TIME_PARTS if "frac_" + p in row)
        print(
            f"collect {label:<12} {row['env_steps_per_s']:6.2f} env steps/s, cpu {row['cpu_ms_per_step']:5.0f} "
            f"ms/step, quiet-core projection {row['quiet_steps_per_s']:6.2f} steps/s (start {start_s:.1f} s; {fr})"
        )

    for render in (64, 256):
        run(f"inproc/r{render}", one, "inproc", render, env=envs[render])
        run(f"w1/r{render}", one, "w1", render)
        for n in counts:
            cfg_n = load_config(
                "libero_tiny", SMOKE_OVERRIDES + length + [f"env.n_envs={n}", f"env.workers={n}"]
            )
            if render == 256 and n > 2 and args.short:
                continue
            run(f"w{n}/r{render}", cfg_n, f"w{n}", render)
    results["collection"] = coll

    # -------------------------------------------------------------- smoke's collection phase
    smoke_one = load_config("libero_tiny", SMOKE_OVERRIDES + ["env.n_envs=1", "env.workers=1"])
    envs[256].max_episode_steps = smoke.env.episode_length
    before, before_quiet = smoke_collection(
        smoke_one, envs[256], ac
    )  # pre-workers path: n_envs=1, render 256 + resize
    for env in envs.values():
        env.close()
    after_cfg = load_config("libero_tiny", SMOKE_OVERRIDES + ["env.n_envs=2"])
    from pirl_core.envs.workers import make_vector_env

    after_env = make_vector_env(after_cfg.env)
    warm_up(after_env)  # as warm as the "before" env, which ran the bare loop
    try:
        after, after_quiet = smoke_collection(after_cfg, after_env, ac)
    finally:
        after_env.close()
    results["smoke_collection_s"] = {
        "before": before,
        "after": after,
        "before_quiet_projection": before_quiet,
        "after_quiet_projection": after_quiet,
    }
    print(
        f"smoke collection (2 episodes x 16 steps, resets included): before {before:.2f} s, after {after:.2f} s; "
        f"quiet-core projection before {before_quiet:.2f} s, after {after_quiet:.2f} s"
    )

    # -------------------------------------------------------------- ratios against the goals
    w1 = max(coll["inproc/r64"]["env_steps_per_s"], coll["w1/r64"]["env_steps_per_s"])
    ratios = {
        "inproc_vs_bare_r64 (goal >= 0.9)": coll["inproc/r64"]["env_steps_per_s"] / bare[64],
        "w1proc_vs_inproc_r64": coll["w1/r64"]["env_steps_per_s"] / coll["inproc/r64"]["env_steps_per_s"],
        "w2_vs_1worker_r64 (goal >= 1.7)": coll["w2/r64"]["env_steps_per_s"] / w1,
        "render64_vs_256_bare": bare[64] / bare[256],
        "smoke_before_over_after (goal >= 3)": before / after,
        "smoke_before_over_after_quiet_projection": before_quiet / after_quiet,
        "pipelining_bound_w2_r64 (inference share)": coll["w2/r64"].get("frac_inference", 0.0),
    }
    for n in counts[1:]:
        ratios[f"w{n}_vs_1worker_r64"] = coll[f"w{n}/r64"]["env_steps_per_s"] / w1
    quiet_w1 = max(coll["inproc/r64"]["quiet_steps_per_s"], coll["w1/r64"]["quiet_steps_per_s"])
    for n in counts:
        ratios[f"w{n}_vs_1worker_r64_quiet_projection"] = coll[f"w{n}/r64"]["quiet_steps_per_s"] / quiet_w1
    results["chunk_step"] = chunk_step_section(args.short)
    for label, row in results["chunk_step"].items():
        ratios[f"chunk_step_vs_every_step_{label} (goal >= 4)"] = row["ratio"]
    if args.smoke_runs:
        results["smoke_runs"] = smoke_runs()
        ratios["smoke_env_steps_chunk_vs_every_step (goal >= 3)"] = results["smoke_runs"]["ratio"][
            "env_steps_per_s"
        ]
    results["ratios"] = ratios
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:<44} {v:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
