"""``python -m pirl_core.sft --dataset DIR --out CKPT [--profile P] [--steps N] [--batch-size B] ...``

Trains an X-VLA, π0 or π0.5 (``policy.type``; ``policy.size`` of the profile: tiny, small, or a
pretrained checkpoint to fine-tune) on a demonstration dataset with LeRobot's flow-matching loss
and writes a LeRobot pretrained-model directory that ``--policy.size=pretrained
--policy.pretrained_path=CKPT`` loads. Dotted overrides (``--policy.type=pi05 --policy.size=small
--env.camera_size=128``) change the profile. π trains for absolute control (``env.control_mode``
is set to "absolute" unless given). Exit 2: bad flags, dataset (a π without
observation.libero_state) or an existing non-empty --out (left untouched); exit 6: loss NaN/inf.
"""

from __future__ import annotations

import os
from pathlib import Path

from pirl_core.argparse_base import UsageParser
from pirl_core.cli import dotted_overrides, run_main
from pirl_core.config import DEFAULT_PROFILE, load_config
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.policies.registry import policy_families, policy_family
from pirl_core.sft.train import SftArgs, check_out_dir, run_sft


def parse(argv: list[str] | None) -> SftArgs:
    p = UsageParser(
        prog="python -m pirl_core.sft", description=__doc__.split("\n\n")[1], usage_on_error=False
    )
    p.add_argument(
        "--dataset", required=True, help="LeRobot dataset directory (pirl_core/recipe/demo_schema.py)"
    )
    p.add_argument("--out", required=True, help="checkpoint directory to create (must not exist or be empty)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name or .toml (policy, env, seed)")
    p.add_argument("--repo-id", default=None, help="dataset repo id (default: meta/info.json or local/<dir>)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (0: save the initial policy)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=10.0, help="LeRobot X-VLA preset: 10")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (PNG decoding)")
    p.add_argument("--seed", type=int, default=None, help="default: the profile's seed")
    known, rest = p.parse_known_args(argv)
    overrides = dotted_overrides(p, rest)
    if known.seed is not None:
        overrides.append(f"seed={known.seed}")
    for name, low in (("steps", 0), ("batch_size", 1), ("log_every", 1), ("workers", 0), ("warmup", 0)):
        if getattr(known, name) < low:
            raise ConfigError(f"--{name.replace('_', '-')}", getattr(known, name), f">= {low}")
    if not 0 < known.lr <= 1:
        raise ConfigError("--lr", known.lr, "in (0, 1]")
    if known.grad_clip <= 0:
        raise ConfigError("--grad-clip", known.grad_clip, "> 0")
    cfg = load_config(known.profile, overrides)
    sft = policy_family(cfg.policy.type).sft
    if sft is None:
        trainable = " or ".join(repr(n) for n in policy_families() if policy_family(n).sft is not None)
        raise ConfigError("policy.type", cfg.policy.type, f"{trainable} (a policy family SFT can train)")
    given = any(o.startswith("env.control_mode=") for o in overrides)
    if sft.control_mode is not None and cfg.env.control_mode != sft.control_mode and not given:
        # the profile's mode (pi05_smoke: relative, for LeRobot's π checkpoints), not the user's
        # choice: the family's SFT defines what its actions mean (run_sft refuses an explicit other)
        cfg = load_config(known.profile, [*overrides, f"env.control_mode={sft.control_mode}"])
    out = Path(known.out)
    check_out_dir(out)
    return SftArgs(
        dataset=Path(known.dataset),
        out=out,
        cfg=cfg,
        steps=known.steps,
        batch_size=known.batch_size,
        lr=known.lr,
        schedule=known.schedule,
        warmup=min(known.warmup, known.steps),
        weight_decay=known.weight_decay,
        grad_clip=known.grad_clip,
        log_every=known.log_every,
        workers=known.workers,
        repo_id=known.repo_id,
    )


def sft_control_mode(args: SftArgs) -> str | None:
    """The control mode the family's SFT trains for (None: the profile's, nothing to add)."""
    return policy_family(args.cfg.policy.type).sft.control_mode


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run_sft(args, log=lambda line: print(line, flush=True))
    print(
        f"sft done: {result.steps} steps in {result.seconds:.0f} s "
        f"({result.steps / max(result.seconds, 1e-9):.2f} steps/s), loss {result.first_loss:.4f} -> "
        f"{result.last_loss:.4f}, padded action steps {100 * result.pad_fraction:.1f} %"
    )
    print(
        f"checkpoint: {result.out} ({result.n_params / 1e6:.2f} M params, "
        f"model.safetensors {result.checkpoint_bytes / 2**20:.1f} MiB); load it with "
        f"--policy.size=pretrained --policy.pretrained_path={os.path.abspath(result.out)}"
        + (f" --env.control_mode={args.cfg.env.control_mode}" if sft_control_mode(args) else "")
    )
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
