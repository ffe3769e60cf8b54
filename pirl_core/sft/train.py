"""The SFT loop: LeRobot's own loss (``XVLAPolicy.forward``, ``PI05Policy.forward``, ...) on
demonstration chunks, AdamW, grad clip. What differs between policy families (the policy, its
processors, how a demonstration becomes its batch, its checkpoint files) is the family's
``SftSupport`` (:mod:`pirl_core.policies.registry`).

Why LeRobot's loss and nothing of pirl's: the checkpoint must be an ordinary LeRobot policy, trained
the way ``lerobot-train`` would train it (X-VLA: flow matching towards the clean chunk, BCE on the
gripper channels), so pirl's RL starts from a policy any LeRobot tool recognises. The policy trains in
train mode: the action transformer's hard-coded dropout 0.1 is active here, as in ``lerobot-train``;
pirl's RL adapter later runs the same weights in eval mode (docs/design.md, "SFT").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pirl_core.config import RunConfig
from pirl_core.errors import ConfigError, DivergedError
from pirl_core.recipe.cotrain import sft_loss
from pirl_core.recipe.demo_data import DemoBatcher, check_family_inputs, open_demos, read_info


@dataclass
class SftArgs:
    dataset: Path
    out: Path
    cfg: RunConfig
    steps: int
    batch_size: int
    lr: float
    schedule: str  # "cosine" (to 10 % of lr after warmup) or "constant"
    warmup: int
    weight_decay: float
    grad_clip: float
    log_every: int
    workers: int
    repo_id: str | None = None


@dataclass
class SftResult:
    out: Path
    steps: int
    first_loss: float
    last_loss: float
    seconds: float
    n_params: int
    checkpoint_bytes: int
    pad_fraction: float


def check_out_dir(out: Path) -> None:
    """Refuse an existing non-empty ``--out``: nothing on disk is overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("--out", str(out), "a new or empty directory", hint="choose another path")


def lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """Linear warmup, then constant or cosine down to 10 % (LeRobot's X-VLA preset decays to a floor)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _loader(dataset, batch_size: int, workers: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(dataset) >= batch_size,
        num_workers=workers,
        generator=gen,
        persistent_workers=workers > 0,
    )


def run_sft(args: SftArgs, log=print) -> SftResult:
    from pirl_core.policies.registry import policy_family
    from pirl_core.sft.checkpoint import save_sft_checkpoint

    check_out_dir(args.out)
    cfg = args.cfg
    info = read_info(args.dataset, args.repo_id)
    sft = policy_family(cfg.policy.type).sft
    check_family_inputs(sft, cfg, info, args.dataset)
    dataset = open_demos(args.dataset, info, cfg.policy.chunk_size)
    built = sft.build(cfg)
    policy = built.policy
    policy_pre, policy_post = sft.policy_processors(built)
    sft.check_instructions(policy_pre, [str(t) for t in dataset.meta.tasks.index], ConfigError)
    batcher = DemoBatcher(sft.demo_processor(cfg.env.camera_size), policy_pre, sft.demo_features)
    params = [p for p in policy.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in policy.parameters())
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: lr_factor(s, args.steps, args.warmup, args.schedule)
    )
    log(
        f"sft: {info.episodes} episodes / {info.frames} frames of {args.dataset} ({info.image_size} px -> "
        f"camera {cfg.env.camera_size}), {sft.label or cfg.policy.type} {cfg.policy.size} {n_params / 1e6:.2f} M params, "
        f"chunk {cfg.policy.chunk_size}, batch {args.batch_size}, {args.steps} steps"
    )
    torch.manual_seed(cfg.seed)  # flow-matching t and noise draws inside the policy's forward
    policy.train()
    loader = _loader(dataset, args.batch_size, args.workers, cfg.seed)
    batches = iter(loader)
    first = last = float("nan")
    window: list[float] = []
    padded = total = 0
    t0 = time.perf_counter()
    for step in range(args.steps):
        try:
            raw = next(batches)
        except StopIteration:
            batches = iter(loader)
            raw = next(batches)
        pad = raw.get("action_is_pad")
        if pad is not None:
            padded += int(pad.sum())
            total += pad.numel()
        loss, parts = sft_loss(policy, batcher, raw)
        if not torch.isfinite(loss):
            raise DivergedError(f"sft: loss is {loss.item()} at step {step + 1} ({parts}); nothing was saved")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        optim.step()
        sched.step()
        value = float(loss.detach())
        first = value if step == 0 else first
        window.append(value)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            last = sum(window) / len(window)
            rate = (step + 1) / (time.perf_counter() - t0)
            log(
                f"step {step + 1}/{args.steps}  loss {last:.4f}  {sft.describe_loss(parts)}  "
                f"grad {float(grad_norm):.3f}  lr {sched.get_last_lr()[0]:.2e}  {rate:.2f} steps/s"
            )
            window = []
    seconds = time.perf_counter() - t0
    policy.eval()
    provenance = {
        "dataset": args.dataset.name,  # a name, not a path: the checkpoint is shipped
        "repo_id": info.repo_id,
        "episodes": info.episodes,
        "frames": info.frames,
        "image_size": info.image_size,
        "policy_type": cfg.policy.type,
        "policy_size": cfg.policy.size,
        "camera_size": cfg.env.camera_size,
        "control_mode": cfg.env.control_mode,
        "chunk_size": cfg.policy.chunk_size,
        "seed": cfg.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip,
        "first_loss": first,
        "last_loss": last,
        "seconds": round(seconds, 1),
        "padded_action_fraction": padded / total if total else 0.0,
    }
    size = save_sft_checkpoint(
        lambda directory: sft.save(built, policy_pre, policy_post, directory), args.out, provenance
    )
    return SftResult(
        out=args.out,
        steps=args.steps,
        first_loss=first,
        last_loss=last,
        seconds=seconds,
        n_params=n_params,
        checkpoint_bytes=size,
        pad_fraction=padded / total if total else 0.0,
    )
