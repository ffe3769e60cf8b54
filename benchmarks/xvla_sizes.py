"""Which X-VLA size to train by SFT: parameters, SFT step cost and RL chunk cost per candidate.

Why: ``policy.size = "small"`` must learn LIBERO pick-and-place from 128 px images (more width
and depth than tiny) while an RL rollout still samples a chunk every ``action_steps`` env steps on
a CPU core. For each candidate architecture this prints

* **params**: all parameters of the ``XVLAPolicy`` (what the checkpoint stores, float32);
* **sft fwd+bwd**: one ``XVLAPolicy.forward`` (LeRobot's flow-matching loss) + backward on a batch
  of ``--sft-batch`` at ``--camera`` px, train mode (what one SFT step costs, minus AdamW);
* **chunk**: ``ActorCritic.act`` at batch 1 with the profile's recipe (encode once + K noisy steps +
  value head), eval mode: what the actor pays per chunk.

Median over ``--repeats`` after warm-up. Usage::

    OMP_NUM_THREADS=1 python benchmarks/xvla_sizes.py [--camera 128] [--sft-batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.xvla_encoding import timeit  # noqa: E402  (one median-of-N timer for the X-VLA benchmarks)
from pirl_core.config import load_config  # noqa: E402
from pirl_core.policies.xvla.adapter import XVLAAdapter  # noqa: E402
from pirl_core.policies.xvla.build import (  # noqa: E402
    XVLA_ARCHS,
    BuiltPolicy,
    XVLAArch,
    arch_xvla_config,
    init_uninitialised_params,
    quiet_transformers,
)
from pirl_core.policies.xvla.libero import LIBERO_DOMAIN_ID  # noqa: E402
from pirl_core.policies.xvla.processors import (  # noqa: E402
    XVLAProcessors,
    make_env_processors,
    make_policy_processors,
)
from pirl_core.policies.xvla.tokenizer import TOKENIZER_DIR  # noqa: E402
from pirl_core.recipe.actor_critic import build_actor_critic  # noqa: E402
from tests.libero_synthetic import synthetic_raw_obs  # noqa: E402

# Candidates beside the table's sizes: a narrower and a wider/deeper "small".
CANDIDATES: dict[str, XVLAArch] = {
    **XVLA_ARCHS,
    "small_wide": dataclasses.replace(
        XVLA_ARCHS["small"], davit_depths=(1, 1, 3, 1), hidden_size=192, depth=6, heads=6, soft_prompts=16
    ),
    "small_narrow": dataclasses.replace(
        XVLA_ARCHS["small"],
        vlm_dim=64,
        davit_dims=(32, 32, 64, 64),
        davit_heads=(1, 1, 2, 2),
        hidden_size=128,
    ),
}


def build_adapter(cfg, arch: XVLAArch, size: str) -> XVLAAdapter:
    """``build_xvla_adapter`` for an architecture that need not be in the size table."""
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(0)
        policy = XVLAPolicy(arch_xvla_config(cfg, str(TOKENIZER_DIR), arch))
        init_uninitialised_params(policy)
    built = BuiltPolicy(policy, str(TOKENIZER_DIR), LIBERO_DOMAIN_ID, size)
    policy_pre, policy_post = make_policy_processors(policy.config, built.domain_id)
    env_pre, env_post = make_env_processors(cfg.env.camera_size)
    processors = XVLAProcessors(env_pre, policy_pre, policy_post, env_post)
    return XVLAAdapter(built, processors, cfg.policy.action_steps, size)


def measure(name: str, arch: XVLAArch, camera: int, sft_batch: int, repeats: int) -> tuple[str, ...]:
    cfg = load_config("smoke", [f"env.camera_size={camera}", "policy.size=small"])
    adapter = build_adapter(cfg, arch, name)
    policy = adapter.policy
    n_params = sum(p.numel() for p in policy.parameters())

    obs = adapter.prepare_obs(synthetic_raw_obs(sft_batch, size=camera))
    action = torch.randn(sft_batch, adapter.chunk_size, adapter.action_dim)
    action[..., list(adapter.gripper_idx)] = (action[..., list(adapter.gripper_idx)] > 0).float()
    batch = {**obs, "action": action}

    def sft_step() -> None:
        policy.zero_grad(set_to_none=True)
        loss, _ = policy.forward(batch)
        loss.backward()

    policy.train()
    sft_ms = timeit(sft_step, repeats)
    adapter.set_rl_mode()
    ac = build_actor_critic(adapter, cfg.recipe, seed=0)
    obs1 = adapter.prepare_obs(synthetic_raw_obs(1, size=camera))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        chunk_ms = timeit(lambda: ac.act(obs1, gen), repeats * 4)
    return (name, f"{n_params / 1e6:.2f}", f"{4 * n_params / 2**20:.1f}", f"{sft_ms:.0f}", f"{chunk_ms:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--camera", type=int, default=128)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES), help="candidate names")
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, camera {args.camera}, SFT batch {args.sft_batch}")
    head = ("size", "M params", "MB f32", f"sft fwd+bwd B={args.sft_batch} ms", "chunk B=1 ms")
    rows = [head]
    for name in args.only:
        rows.append(measure(name, CANDIDATES[name], args.camera, args.sft_batch, args.repeats))
        print("  ".join(rows[-1]), flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    for r in rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
