"""X-VLA chunk inference, and what caching the observation encoding saves over K denoising steps.

What is timed (one process, one run, so the ratios are meaningful on a busy machine):

* **prepare_obs**: raw LIBERO batch -> X-VLA input tensors through LeRobot's processors.
* **encode**: the Florence-2 pass (DaViT over both views + BART encoder).
* **predict**: one action-transformer evaluation at (x_t, t) with a cached context.
* **chunk (pirl)**: ``ActorCritic.act`` with the profile's recipe (encode once + K noisy steps +
  value head): what the actor pays per chunk. **chunk (LeRobot)**: ``XVLAPolicy.predict_action_chunk``
  with the same K (``generate_actions``; no log-prob), for reference.
* **cached vs uncached over K**: encode once + K predicts, versus encode + predict at every step,
  at rollout (no grad) and at update (forward + backward of the K-step chain). Ratio = uncached /
  cached time.

Median over ``--repeats`` after warm-up. Usage::

    OMP_NUM_THREADS=1 python benchmarks/xvla_encoding.py [--profile libero_tiny] [--batch 1 8] [--steps 4 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import load_config  # noqa: E402
from pirl_core.policies.xvla.adapter import XVLAAdapter, build_xvla_adapter  # noqa: E402
from pirl_core.recipe.actor_critic import build_actor_critic  # noqa: E402
from tests.libero_synthetic import DEFAULT_TASK, synthetic_raw_obs  # noqa: E402


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def k_steps(adapter: XVLAAdapter, obs: dict, x1: torch.Tensor, steps: int, cached: bool) -> torch.Tensor:
    """K clean-action -> Euler steps; the context is encoded once (cached) or at every step."""
    ctx = adapter.encode(obs) if cached else None
    x, total = x1, x1.new_zeros(())
    for k in range(steps):
        t = torch.full((x.shape[0],), 1 - k / steps, device=x.device)
        pred = adapter.predict(x, t, ctx if cached else adapter.encode(obs))
        total = total + pred.value.square().mean()
        x = x - (1 / steps) * (x - pred.value) / t[:, None, None]
    return total


def bench_batch(
    adapter: XVLAAdapter, ac, cfg, batch: int, steps_list: list[int], repeats: int
) -> list[tuple[str, ...]]:
    """Rows of the table for one batch size."""
    dev = torch.device(cfg.policy.device)
    tag = f"B={batch}"
    raw = synthetic_raw_obs(batch)
    obs = {k: v.to(dev) for k, v in adapter.prepare_obs(raw).items()}
    x1 = torch.randn(batch, adapter.chunk_size, adapter.action_dim, device=dev)
    t1 = torch.ones(batch, device=dev)
    gen = torch.Generator().manual_seed(0)
    k = cfg.recipe.denoise_steps
    rows: list[tuple[str, ...]] = []
    with torch.no_grad():
        ctx = adapter.encode(obs)
        rows.append((tag, "prepare_obs", f"{timeit(lambda: adapter.prepare_obs(raw), repeats):.2f}"))
        rows.append((tag, "encode (Florence-2)", f"{timeit(lambda: adapter.encode(obs), repeats):.2f}"))
        rows.append((tag, "predict (1 step)", f"{timeit(lambda: adapter.predict(x1, t1, ctx), repeats):.2f}"))
        rows.append((tag, f"chunk, pirl act (K={k})", f"{timeit(lambda: ac.act(obs, gen), repeats):.2f}"))
        adapter.policy.config.num_denoising_steps = k
        lerobot_ms = timeit(lambda: adapter.policy.predict_action_chunk(obs), repeats)
        rows.append((tag, f"chunk, LeRobot predict_action_chunk (K={k})", f"{lerobot_ms:.2f}"))
    adapter.set_rl_mode()  # predict_action_chunk calls policy.eval() and no_grad; restore RL mode

    def update(s: int, cached: bool) -> None:
        adapter.zero_grad(set_to_none=True)
        k_steps(adapter, obs, x1, s, cached).backward()

    for steps in steps_list:
        with torch.no_grad():
            c = timeit(lambda s=steps: k_steps(adapter, obs, x1, s, True), repeats)
            u = timeit(lambda s=steps: k_steps(adapter, obs, x1, s, False), repeats)
        rows.append((tag, f"rollout K={steps}: cached / uncached", f"{c:.2f} / {u:.2f}  (x{u / c:.2f})"))
        c = timeit(lambda s=steps: update(s, True), repeats)
        u = timeit(lambda s=steps: update(s, False), repeats)
        rows.append(
            (tag, f"update K={steps} (fwd+bwd): cached / uncached", f"{c:.2f} / {u:.2f}  (x{u / c:.2f})")
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="libero_tiny")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default=None, help="override policy.device (e.g. cuda)")
    args = ap.parse_args()

    overrides = [f"policy.device={args.device}"] if args.device else []
    cfg = load_config(args.profile, overrides)
    adapter = build_xvla_adapter(cfg, [DEFAULT_TASK])
    ac = build_actor_critic(adapter, cfg.recipe, seed=cfg.seed)
    dev = torch.device(cfg.policy.device)
    n_params = sum(p.numel() for p in adapter.parameters())
    print(
        f"X-VLA ({cfg.policy.size}, {n_params / 1e6:.2f} M params) on {dev}, torch threads {torch.get_num_threads()}, "
        f"camera {cfg.env.camera_size}, chunk {adapter.chunk_size}x{adapter.action_dim}, recipe {cfg.recipe.method}"
    )

    rows: list[tuple[str, ...]] = []
    for batch in args.batch:
        rows += bench_batch(adapter, ac, cfg, batch, args.steps, args.repeats)

    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'batch':<{w0}}  {'what':<{w1}}  ms (median of {args.repeats})")
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
