"""X-VLA at scale: sampling and PPO-update throughput, peak memory, push bytes and the two
actor/learner invariants, for float32/bfloat16 x VLM trained/frozen x micro-batch sizes, with
today's path (float32, VLM trained, full state-dict push, no log-prob recompute) as the baseline
of the same run.

On CUDA it builds ``policy.size = "full"`` (LeRobot's default X-VLA, ~0.88 B, random init) at
256x256 cameras and chunk 30 (10 executed), as ``bench`` runs it. Without CUDA it falls back to a
reduced size (the tiny architecture, ``--hidden-dim`` wide, 64x64 cameras, chunk 8) and says so.

``--policy-type pi05`` (or ``pi0``) runs the same tables for LeRobot's π (full: 3.6 B parameters;
the action-expert's unused vocabulary head stays frozen in every variant; the block-level precision
study is X-VLA's only). For π0.5 as ``pi05_bench`` runs it on a GPU::

    python benchmarks/xvla_scale.py --policy-type pi05 --camera 224 --chunk 50 --action-steps 5 \
        --denoise-steps 5 --dtypes bfloat16 --micro 8 16

What is measured, per variant (one model build; its initial weights are restored before each):

* **sample**: ``ActorCritic.act`` (encode + K noisy steps + value) per chunk batch B;
* **update**: one ``PolicyTrainer.update`` over ``--transitions`` transitions sampled by the same
  variant (1 epoch, minibatch ``--minibatch``), transitions/s and peak memory
  (``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS over the update, sampled,
  which at the reduced size is mostly the interpreter and libraries), and the largest activation
  total autograd saves for one backward ("saved activations", same measure on CPU and GPU);
* **push**: bytes of one parameter push and the time to build it (today: full fp32 state dict);
* **ratio_check**, **logprob_mismatch** (max |Δ| rollout vs learner, the actor sampling at batch
  ``--actor-batch`` in the variant's precision, weights as pushed) and **approx_kl**.

``--kl-sweep`` adds the KL-at-scale check (CPU-sized): approx_kl and mean |Δθ|/lr after ONE Adam
step versus trainable-parameter count, for sum and mean log-density reductions.

Usage (GPU, a few minutes)::

    python benchmarks/xvla_scale.py
    python benchmarks/xvla_scale.py --minibatch 32 --micro 0 8 --transitions 128

CPU, short::

    OMP_NUM_THREADS=2 python benchmarks/xvla_scale.py --hidden-dim 128 --transitions 16 \
        --minibatch 8 --micro 0 4 --sample-batch 1 4 --kl-sweep
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import RunConfig, load_config  # noqa: E402
from pirl_core.policies.factory import COMPUTE_DTYPES, make_adapter  # noqa: E402
from pirl_core.policies.pi.adapter import VLM_PREFIX as PI_VLM_PREFIX  # noqa: E402
from pirl_core.policies.xvla.adapter import VLM_PREFIX as XVLA_VLM_PREFIX  # noqa: E402

# The VLM of each LeRobot family (frozen by recipe.train_vlm = false), and the profile its reduced
# size starts from.
VLM_PREFIXES = {"xvla": XVLA_VLM_PREFIX, "pi05": PI_VLM_PREFIX, "pi0": PI_VLM_PREFIX}
PROFILES = {"xvla": "libero_tiny", "pi05": "pi05_smoke", "pi0": "pi05_smoke"}
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic  # noqa: E402
from pirl_core.recipe.trainer import PolicyTrainer  # noqa: E402
from pirl_core.rollout import RolloutBatch  # noqa: E402
from pirl_core.transport.push import parameters_to_tensors, push_nbytes  # noqa: E402
from tests.batches import one_chunk_episodes  # noqa: E402
from tests.libero_synthetic import DEFAULT_TASK, synthetic_raw_obs  # noqa: E402

GIB = 1024**3
MIB = 1024**2


@dataclass
class Variant:
    dtype: str
    train_vlm: bool
    micro: int
    recompute: bool
    lean_push: bool

    @property
    def name(self) -> str:
        if self.dtype == "float32" and self.train_vlm and not self.recompute and not self.lean_push:
            return "today (fp32, VLM trained, full push, no recompute)"
        vlm = "VLM trained" if self.train_vlm else "VLM frozen"
        micro = f"micro {self.micro}" if self.micro else "no micro"
        return f"{'bf16' if self.dtype == 'bfloat16' else 'fp32'}, {vlm}, {micro}, recompute"


class PeakMemory:
    """Peak accelerator memory (CUDA) or peak process RSS (CPU, sampled every 20 ms)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            proc = psutil.Process()
            self.peak = proc.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(0.02):
                    self.peak = max(self.peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()


class SavedActivations:
    """Largest total of tensors autograd keeps for one backward (one micro-batch's forward),
    excluding parameters: the activation memory that micro-batches, a frozen VLM and gradient
    checkpointing act on, measured the same way on CPU and GPU (checkpointed blocks save
    nothing here: their own hooks take over inside them)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.params = {p.data_ptr() for p in module.parameters()}
        self.current = 0
        self.peak = 0
        self.backward_seen = False
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.backward_seen:
            self.current, self.backward_seen = 0, False
        if t.data_ptr() not in self.params:
            self.current += t.numel() * t.element_size()
            self.peak = max(self.peak, self.current)
        return t

    def _unpack(self, t: torch.Tensor) -> torch.Tensor:
        self.backward_seen = True
        return t

    def __enter__(self) -> SavedActivations:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_config(args: argparse.Namespace, cuda: bool) -> RunConfig:
    overrides: dict[str, object] = {
        "seed": 0,
        "policy.type": args.policy_type,
        "policy.size": args.size,
        "policy.device": "cuda" if cuda else "cpu",
        "policy.hidden_dim": args.hidden_dim,
        "policy.chunk_size": args.chunk,
        "policy.action_steps": args.action_steps,
        "policy.gradient_checkpointing": args.gradient_checkpointing,
        "env.camera_size": args.camera,
        "recipe.lr": args.lr,
        "recipe.value_lr": args.lr * 20,
        "recipe.noise_lr": args.lr * 20,
        "recipe.update_epochs": 1,
        "recipe.logprob_action_reduction": args.reduction,
        "recipe.logprob_step_reduction": args.reduction,
        "recipe.logprob_tolerance": 0.0,  # measured here, not enforced
    }
    return load_config(PROFILES[args.policy_type], overrides)


def observations(ac: ActorCritic, batch: int, seed: int, camera: int) -> dict[str, torch.Tensor]:
    raw = synthetic_raw_obs(batch=batch, seed=seed, size=camera, task=DEFAULT_TASK)
    return {k: v.to(ac.device) for k, v in ac.adapter.prepare_obs(raw).items()}


def sample_batch(ac: ActorCritic, n: int, actor_batch: int, camera: int) -> RolloutBatch:
    """``n`` one-chunk transitions sampled by ``ac`` in rounds of ``actor_batch`` (as an actor with
    that many envs would), rewards spread so advantages are non-zero."""
    parts = []
    gen = torch.Generator().manual_seed(0)
    for first in range(0, n, actor_batch):
        b = min(actor_batch, n - first)
        obs = observations(ac, b, seed=first, camera=camera)
        out = ac.act(obs, gen)
        parts.append((obs, out))
    cpu = {k: torch.cat([p[0][k] for p in parts]).cpu() for k in parts[0][0]}
    cat = lambda f: torch.cat([getattr(p[1], f) for p in parts]).cpu()  # noqa: E731
    return one_chunk_episodes(
        cpu, cat("chain"), cat("sde_step"), cat("logp"), cat("value"), reward=torch.linspace(-1.0, 1.0, n)
    )


def vlm_prefix(ac: ActorCritic) -> str:
    from pirl_core.policies.pi.adapter import PiAdapter

    return PI_VLM_PREFIX if isinstance(ac.adapter, PiAdapter) else XVLA_VLM_PREFIX


def configure(ac: ActorCritic, dtype: str, train_vlm: bool) -> None:
    """Switch one built model between variants (same effect as building with these settings)."""
    adapter = ac.adapter
    adapter.compute_dtype = COMPUTE_DTYPES[dtype]
    vlm = vlm_prefix(ac)
    always = tuple(p for p in adapter.frozen_prefixes if p != vlm)  # e.g. π's unused vocabulary head
    adapter.frozen_prefixes = always if train_vlm else (*always, vlm)
    adapter.set_rl_mode()
    ac.frozen_fingerprint = None  # recomputed by the next push (hashing 2.3 GB costs seconds)


def full_push_bytes(ac: ActorCritic) -> tuple[int, float]:
    """Today's push: every state-dict tensor, float32, copied to the CPU."""
    t0 = time.perf_counter()
    tensors = {n: t.detach().to("cpu").contiguous().clone() for n, t in ac.state_dict().items()}
    return sum(t.numel() * t.element_size() for t in tensors.values()), time.perf_counter() - t0


def push_summary(ac: ActorCritic) -> None:
    """Bytes per push of this model: today's full float32 state dict vs the lean pushes (real
    ``parameters_to_tensors`` output, fingerprint included)."""
    today = sum(t.numel() * t.element_size() for t in ac.state_dict().values())
    print("\n## parameter push per version")
    print("| push | MiB | x today |")
    print("|---|---|---|")
    print(f"| today: full state dict, fp32 | {today / MIB:.1f} | 1.000 |")
    for dtype, train_vlm in (("float32", True), ("float32", False), ("bfloat16", True), ("bfloat16", False)):
        configure(ac, dtype, train_vlm)
        t0 = time.perf_counter()
        push = parameters_to_tensors(ac)
        seconds = time.perf_counter() - t0
        nbytes = push_nbytes(push)
        del push
        what = f"trainable only ({'VLM trained' if train_vlm else 'VLM frozen'}), {dtype}"
        print(f"| {what} (built in {seconds:.1f} s) | {nbytes / MIB:.1f} | {nbytes / today:.3f} |")
    configure(ac, "float32", True)


def run_variant(
    ac: ActorCritic, cfg: RunConfig, variant: Variant, initial: dict[str, torch.Tensor], args
) -> dict[str, float]:
    ac.load_state_dict(initial)
    configure(ac, variant.dtype, variant.train_vlm)
    cfg.recipe.micro_batch_size = variant.micro
    cfg.recipe.recompute_logprobs = variant.recompute
    cfg.recipe.minibatches = max(1, args.transitions // args.minibatch)
    if variant.lean_push:
        t0 = time.perf_counter()
        push = parameters_to_tensors(ac)
        push_s = time.perf_counter() - t0
        push_b = push_nbytes(push)
        pushed = dict(push)
        pushed.pop("pirl.frozen_fingerprint")
        ac.load_state_dict(pushed, strict=False)  # the actor samples with the pushed (rounded) weights
        del push, pushed
    else:
        push_b, push_s = full_push_bytes(ac)
    batch = sample_batch(ac, args.transitions, args.actor_batch, args.camera)
    ac.load_state_dict(initial)  # the learner holds the float32 weights
    trainer = PolicyTrainer(ac, cfg.recipe, seed=0)
    device = ac.device
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with PeakMemory(device) as peak, SavedActivations(ac) as saved:
        sync(device)
        t0 = time.perf_counter()
        metrics = trainer.update(batch)
        sync(device)
        update_s = time.perf_counter() - t0
    row = {
        "update_s": update_s,
        "tps": args.transitions / update_s,
        "peak_gib": peak.peak / GIB,
        "saved_mib": saved.peak / MIB,
        "push_mib": push_b / MIB,
        "push_s": push_s,
        "ratio_check": metrics["ratio_check"],
        "mismatch_mean": metrics["logprob_mismatch_mean"],
        "mismatch_max": metrics["logprob_mismatch_max"],
        "approx_kl": metrics["approx_kl"],
    }
    del trainer
    gc.collect()
    return row


def sampling_table(ac: ActorCritic, args, device: torch.device) -> None:
    print(f"\n## sample one chunk (K={args.denoise_steps}), ms")
    print("| B | fp32 | bf16 autocast | speed-up |")
    print("|---|---|---|---|")
    for b in args.sample_batch:
        obs = observations(ac, b, seed=1, camera=args.camera)
        gen = torch.Generator().manual_seed(0)
        times = {}
        for dtype in ("float32", "bfloat16"):
            configure(ac, dtype, True)
            times[dtype] = timeit(lambda o=obs, g=gen: ac.act(o, g), device, args.repeats)
        print(
            f"| {b} | {times['float32'] * 1e3:.1f} | {times['bfloat16'] * 1e3:.1f} | "
            f"{times['float32'] / times['bfloat16']:.2f}x |"
        )
    configure(ac, "float32", True)


def precision_table(ac: ActorCritic, args, device: torch.device) -> None:
    """Autocast over float32 weights vs bfloat16 weights, forward + backward of the action
    transformer's blocks (the part that trains) on a minibatch-sized token batch. bf16 weights
    would also need a float32 master copy for the optimizer (an lr of 5e-6 on weights of ~0.02 is
    below bf16's resolution), so the question is only whether skipping the per-pass weight cast
    buys enough speed to pay for a second weight copy and its synchronisation."""
    import copy

    blocks = ac.adapter.model.transformer.blocks
    hidden = ac.adapter.model.transformer.hidden_size
    seq = min(ac.adapter.model.transformer.pos_emb.shape[1], 256)
    x = torch.randn(args.minibatch, seq, hidden, device=device)

    def run(stack: torch.nn.Module, autocast: bool, dtype: torch.dtype) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            h = x.to(dtype).requires_grad_(True)
            for block in stack:
                h = block(h)
            h.float().square().mean().backward()
        stack.zero_grad(set_to_none=True)

    bf16_blocks = copy.deepcopy(blocks).to(torch.bfloat16)
    modes = {
        "fp32": lambda: run(blocks, False, torch.float32),
        "bf16 autocast (fp32 weights)": lambda: run(blocks, True, torch.float32),
        "bf16 weights": lambda: run(bf16_blocks, False, torch.bfloat16),
    }
    print(
        f"\n## precision: forward + backward of the action transformer ({len(blocks)} blocks, "
        f"{args.minibatch} x {seq} tokens x {hidden})"
    )
    print("| mode | ms | x fp32 | peak GiB |")
    print("|---|---|---|---|")
    base = None
    for name, fn in modes.items():
        with PeakMemory(device) as peak:
            ms = timeit(fn, device, args.repeats) * 1e3
        base = base or ms
        print(f"| {name} | {ms:.1f} | {base / ms:.2f} | {peak.peak / GIB:.2f} |")


def variants(args) -> list[Variant]:
    out = [Variant("float32", True, 0, False, False)]  # today's path: the baseline
    for dtype in args.dtypes:
        for train_vlm in (True, False):
            for micro in args.micro:
                out.append(Variant(dtype, train_vlm, micro, True, True))
    return out


def update_table(ac: ActorCritic, cfg: RunConfig, args) -> None:
    initial = {n: t.detach().clone() for n, t in ac.state_dict().items()}
    print(
        f"\n## PPO update: {args.transitions} transitions, 1 epoch, minibatch {args.minibatch}, "
        f"lr {args.lr:g}, reductions {args.reduction}/{args.reduction}, actor batch {args.actor_batch}"
    )
    print(
        "| variant | update s | transitions/s | x today | peak GiB | saved activations MiB | x today | "
        "push MiB | x today | push s | ratio_check | logprob_mismatch mean / max | approx_kl |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for v in variants(args):
        try:
            row = run_variant(ac, cfg, v, initial, args)
        except torch.cuda.OutOfMemoryError:
            print(f"| {v.name} | out of memory |")
            gc.collect()
            torch.cuda.empty_cache()
            continue
        base = base or row
        print(
            f"| {v.name} | {row['update_s']:.2f} | {row['tps']:.1f} | {row['tps'] / base['tps']:.2f} | "
            f"{row['peak_gib']:.2f} | {row['saved_mib']:.1f} | {row['saved_mib'] / base['saved_mib']:.2f} | "
            f"{row['push_mib']:.1f} | "
            f"{row['push_mib'] / base['push_mib']:.3f} | {row['push_s']:.2f} | {row['ratio_check']:.2e} | "
            f"{row['mismatch_mean']:.2e} / {row['mismatch_max']:.2e} | {row['approx_kl']:.3g} |",
            flush=True,
        )
    ac.load_state_dict(initial)


def kl_after_one_step(ac: ActorCritic, cfg: RunConfig, batch: RolloutBatch, lr: float) -> tuple[float, float]:
    """approx_kl between the policy before and after ONE AdamW step on ``batch``, and the mean
    |Δθ|/lr over trainable policy parameters (≈ 1 when Adam's first step is lr·sign(g))."""
    cfg.recipe.minibatches = 1
    cfg.recipe.update_epochs = 1
    cfg.recipe.lr = lr
    cfg.recipe.recompute_logprobs = False
    cfg.recipe.logprob_tolerance = 0.0
    trainer = PolicyTrainer(ac, cfg.recipe, seed=0)
    params = [p for p in ac.adapter.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    with torch.no_grad():
        logp0, _, _ = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
    trainer.update(batch)
    with torch.no_grad():
        logp1, _, _ = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
    log_ratio = logp1 - logp0
    kl = float(((log_ratio.exp() - 1) - log_ratio).mean())
    step = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(params, before, strict=True)])
    return kl, float(step.mean() / lr)


def kl_sweep(args) -> None:
    """Trainable-parameter count vs approx_kl after one Adam step (CPU-sized tiny X-VLA widths)."""
    print(f"\n## approx_kl after ONE AdamW step at lr {args.lr:g} (tiny X-VLA widths, float32, CPU)")
    print("| hidden_dim | trainable params | reductions | approx_kl | mean abs(step)/lr |")
    print("|---|---|---|---|---|")
    for hidden in args.kl_widths:
        for reduction in ("sum", "mean"):
            cfg = load_config(
                "libero_tiny",
                {
                    "policy.hidden_dim": hidden,
                    "recipe.logprob_action_reduction": reduction,
                    "recipe.logprob_step_reduction": reduction,
                    "recipe.value_lr": 0.0,
                    "recipe.noise_lr": 0.0,
                },
            )
            ac = build_actor_critic(make_adapter(cfg, [DEFAULT_TASK]), cfg.recipe, seed=0)
            batch = sample_batch(ac, 8, 8, cfg.env.camera_size)
            n_params = sum(p.numel() for p in ac.adapter.parameters())
            kl, step = kl_after_one_step(ac, cfg, batch, args.lr)
            print(f"| {hidden} | {n_params / 1e6:.2f} M | {reduction}/{reduction} | {kl:.3g} | {step:.2f} |")


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy-type", default="xvla", choices=sorted(VLM_PREFIXES))
    parser.add_argument("--size", default="full" if cuda else "tiny", choices=["tiny", "full"])
    parser.add_argument("--hidden-dim", type=int, default=128, help="tiny size only")
    parser.add_argument("--camera", type=int, default=256 if cuda else 64)
    parser.add_argument("--chunk", type=int, default=30 if cuda else 8)
    parser.add_argument("--action-steps", type=int, default=10 if cuda else 4)
    parser.add_argument("--denoise-steps", type=int, default=4)
    parser.add_argument("--sample-batch", type=int, nargs="+", default=[1, 10, 64] if cuda else [1, 4, 16])
    parser.add_argument("--transitions", type=int, default=128 if cuda else 16)
    parser.add_argument("--minibatch", type=int, default=32 if cuda else 8)
    parser.add_argument("--micro", type=int, nargs="+", default=[0, 8] if cuda else [0, 4])
    parser.add_argument("--actor-batch", type=int, default=16 if cuda else 4)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--reduction", choices=["sum", "mean"], default="sum")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kl-sweep", action="store_true")
    parser.add_argument("--kl-widths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--skip-updates", action="store_true")
    args = parser.parse_args()

    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    size = (
        f"full (LeRobot's default {args.policy_type})"
        if args.size == "full"
        else f"reduced: tiny ({args.policy_type})"
    )
    print(
        f"# xvla_scale on {device_name}; size {size}; camera {args.camera}; chunk {args.chunk} "
        f"({args.action_steps} executed); torch {torch.__version__}"
    )
    cfg = make_config(args, cuda)
    cfg.recipe.denoise_steps = args.denoise_steps
    t0 = time.perf_counter()
    ac = build_actor_critic(make_adapter(cfg, [DEFAULT_TASK]), cfg.recipe, seed=0)
    total = sum(p.numel() for p in ac.parameters())
    vlm = sum(p.numel() for n, p in ac.adapter.named_parameters() if n.startswith(vlm_prefix(ac)))
    print(
        f"built in {time.perf_counter() - t0:.1f} s: {total / 1e6:.1f} M parameters "
        f"({vlm / 1e6:.1f} M VLM, {(total - vlm) / 1e6:.1f} M action head/expert + heads)"
    )
    push_summary(ac)
    if not args.skip_updates:
        if args.policy_type == "xvla":  # the block-level precision study is X-VLA's action transformer
            precision_table(ac, args, ac.device)
        sampling_table(ac, args, ac.device)
        update_table(ac, cfg, args)
    if args.kl_sweep:
        del ac
        gc.collect()
        kl_sweep(args)


if __name__ == "__main__":
    main()
