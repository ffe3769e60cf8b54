"""Where did RL move the policy? SFT vs an RL checkpoint on the demonstration frames, per channel.

Why: PPO bounds the change of what it scores (the Flow-Noise chain of the executed xyz and rot6d
channels), measured as approx_kl and clip fraction. X-VLA's gripper is a logit outside the chain
(pirl_core/policies/xvla/adapter.py): PPO's ratio never sees it, yet it shares every weight with the scored
channels. This compares both policies' deterministic chunks (LeRobot's ``predict_action_chunk``,
same noise) on the same frames with the expert's actions: xyz error in mm and gripper decisions.
Usage::

    python benchmarks/libero_lift_drift.py --demos outputs/lift/demos --sft outputs/lift/sft \\
        --rl outputs/lift/rl/checkpoints/last/pretrained_model [--frames 256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import load_config  # noqa: E402
from pirl_core.policies.xvla.build import build_xvla_policy  # noqa: E402
from pirl_core.policies.xvla.processors import make_demo_processor, make_policy_processors  # noqa: E402
from pirl_core.recipe import demo_schema as schema  # noqa: E402
from pirl_core.recipe.demo_data import DemoBatcher, open_demos, read_info  # noqa: E402

XYZ = slice(0, 3)


def chunks(policy_dir: str, profile: str, demos: Path, frames: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(predicted chunks, expert chunks) for ``frames`` evenly spaced dataset frames."""
    cfg = load_config(profile, [f"policy.pretrained_path={policy_dir}"])
    built = build_xvla_policy(cfg)
    policy = built.policy.eval()
    policy_pre, _ = make_policy_processors(policy.config, built.domain_id)
    batcher = DemoBatcher(make_demo_processor(cfg.env.camera_size), policy_pre)
    info = read_info(demos, None)
    dataset = open_demos(demos, info, cfg.policy.chunk_size)
    index = torch.linspace(0, len(dataset) - 1, frames).long().tolist()
    preds, targets = [], []
    for start in range(0, len(index), 32):
        items = [dataset[i] for i in index[start : start + 32]]
        raw = {k: torch.stack([it[k] for it in items]) for k in (*schema.IMAGE_KEYS, schema.STATE_KEY)}
        raw[schema.ACTION_KEY] = torch.stack([it[schema.ACTION_KEY] for it in items])
        raw["task"] = [it["task"] for it in items]
        batch = batcher(raw)
        torch.manual_seed(seed + start)
        with torch.no_grad():
            preds.append(policy.predict_action_chunk(batch))
        targets.append(raw[schema.ACTION_KEY])
    return torch.cat(preds), torch.cat(targets)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demos", required=True)
    p.add_argument("--sft", required=True)
    p.add_argument("--rl", required=True)
    p.add_argument("--profile", default="libero_small")
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--steps", type=int, default=8, help="chunk steps compared (the executed ones)")
    args = p.parse_args(argv)
    demos = Path(args.demos)
    sft, expert = chunks(args.sft, args.profile, demos, args.frames, seed=0)
    rl, _ = chunks(args.rl, args.profile, demos, args.frames, seed=0)
    s = slice(0, args.steps)
    grip = schema.GRIPPER_CHANNEL

    def xyz_mm(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a[:, s, XYZ] - b[:, s, XYZ]).norm(dim=-1).mean() * 1000)

    def closes(a: torch.Tensor) -> torch.Tensor:
        return a[:, s, grip] > 0.5

    print(f"{args.frames} demonstration frames, first {args.steps} chunk steps, deterministic chunks")
    print("| | SFT | RL |")
    print("|---|---|---|")
    print(f"| xyz error vs expert (mm) | {xyz_mm(sft, expert):.1f} | {xyz_mm(rl, expert):.1f} |")
    agree = lambda a: float((closes(a) == (expert[:, s, grip] > 0.5)).float().mean())  # noqa: E731
    print(f"| gripper decision = expert's | {agree(sft):.3f} | {agree(rl):.3f} |")
    print(
        f"RL vs SFT: xyz moved {xyz_mm(rl, sft):.1f} mm on average; gripper decision flipped on "
        f"{float((closes(rl) != closes(sft)).float().mean()):.3f} of steps"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
