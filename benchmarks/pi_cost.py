"""π0.5 / π0 vs X-VLA of a similar size on this machine: per-chunk inference and per-transition
update cost, and the full-size parameter counts built offline.

Each family is built from config at ``tiny`` and ``small`` (random init, offline), wrapped in the
recipe's ``ActorCritic`` exactly as actor and learner build it, and fed the same synthetic LIBERO
observations (``tests/libero_synthetic.py``) through its own LeRobot processors:

* **chunk**: ``ActorCritic.act`` — encode once + K noisy denoising steps + the value head — for one
  observation (what one inference of one sub-env costs the actor), median of ``--reps``;
* **update**: ``ActorCritic.evaluate`` (re-encode, re-score the stored chain, values) forward +
  backward over ``--batch`` transitions, per transition (what the learner pays per sample and epoch).

The ratio column is against X-VLA of the same size label in the same run; the families are timed
in turn, repetition by repetition, so background load falls on all of them alike. Full sizes (LeRobot's
own numbers) are built on the ``meta`` device: counts only, no memory.

    OMP_NUM_THREADS=2 python benchmarks/pi_cost.py            # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.process_env import configure_process  # noqa: E402

TASK = "pick up the alphabet soup and place it in the basket"
CAMERA = {"tiny": 64, "small": 128}


def build(policy_type: str, size: str):
    import pirl_core.policies  # noqa: F401  (registration)
    from pirl_core.config import load_config
    from pirl_core.policies.registry import policy_family
    from pirl_core.recipe.actor_critic import build_actor_critic

    profile = "libero_tiny" if policy_type == "xvla" else "pi05_smoke"
    cfg = load_config(
        profile, [f"policy.type={policy_type}", f"policy.size={size}", f"env.camera_size={CAMERA[size]}"]
    )
    adapter = policy_family(policy_type).make_adapter(cfg, [TASK])
    return build_actor_critic(adapter, cfg.recipe, seed=0)


class Subject:
    """One family at one size: its actor-critic, inputs and the two timed operations."""

    def __init__(self, policy_type: str, size: str, batch: int) -> None:
        from tests.libero_synthetic import synthetic_raw_obs

        self.ac = build(policy_type, size)
        self.params = sum(p.numel() for p in self.ac.adapter.parameters())
        side = CAMERA[size]
        self.one = self.ac.adapter.prepare_obs(synthetic_raw_obs(batch=1, size=side, task=TASK))
        self.many = self.ac.adapter.prepare_obs(synthetic_raw_obs(batch=batch, size=side, task=TASK))
        self.gen = torch.Generator().manual_seed(0)
        self.out = self.ac.act(self.many, self.gen)
        self.batch = batch
        self.chunk_s: list[float] = []
        self.update_s: list[float] = []

    def chunk(self) -> None:
        self.ac.act(self.one, self.gen)

    def update(self) -> None:
        logp, _, value = self.ac.evaluate(self.many, self.out.chain, self.out.sde_step)
        (-(logp.mean()) + value.pow(2).mean()).backward()
        self.ac.zero_grad(set_to_none=True)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(families: list[str], size: str, batch: int, reps: int) -> dict[str, Subject]:
    """Round-robin over the families, so background load hits each of them alike."""
    subjects = {f: Subject(f, size, batch) for f in families}
    for subject in subjects.values():  # warm-up
        subject.chunk()
        subject.update()
    for _ in range(reps):
        for subject in subjects.values():
            subject.chunk_s.append(_time(subject.chunk))
            subject.update_s.append(_time(subject.update) / batch)
    return subjects


def full_counts() -> list[tuple[str, float, float]]:
    """(family, total, trainable with the VLM frozen) in parameters, LeRobot's full sizes, on meta."""
    from pirl_core.config import load_config
    from pirl_core.policies.pi.arch import lerobot_pi_construction
    from pirl_core.policies.pi.build import pi_config, policy_classes

    rows = []
    for policy_type in ("pi0", "pi05"):
        cfg = load_config(
            "pi05_smoke", [f"policy.type={policy_type}", "policy.size=full", "env.camera_size=224"]
        )
        config = pi_config(cfg, "full")
        config.device = "meta"
        _, cls = policy_classes(policy_type)
        with torch.device("meta"), lerobot_pi_construction(None):
            policy = cls(config)
        pwe = policy.model.paligemma_with_expert
        total = sum(p.numel() for p in policy.parameters())
        vlm = sum(p.numel() for p in pwe.paligemma.parameters())
        unused = pwe.gemma_expert.lm_head.weight.numel()
        rows.append((policy_type, total, total - vlm - unused))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    parser.add_argument("--families", nargs="+", default=["xvla", "pi05", "pi0"])
    parser.add_argument("--batch", type=int, default=8, help="transitions per update pass")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    configure_process()
    print(f"torch threads {torch.get_num_threads()}; batch {args.batch}; median of {args.reps}")
    print(
        f"{'family':6} {'size':6} {'params':>9} {'chunk ms':>9} {'x xvla':>7} {'update ms/tr':>13} {'x xvla':>7}"
    )
    for size in args.sizes:
        subjects = measure(args.families, size, args.batch, args.reps)
        base = subjects.get("xvla")
        for family, subject in subjects.items():
            chunk_ms = 1e3 * statistics.median(subject.chunk_s)
            update_ms = 1e3 * statistics.median(subject.update_s)
            if base is not None:
                ratio_c = f"{chunk_ms / (1e3 * statistics.median(base.chunk_s)):.2f}"
                ratio_u = f"{update_ms / (1e3 * statistics.median(base.update_s)):.2f}"
            else:
                ratio_c = ratio_u = "-"
            print(
                f"{family:6} {size:6} {subject.params / 1e6:8.2f}M {chunk_ms:9.1f} {ratio_c:>7} "
                f"{update_ms:13.1f} {ratio_u:>7}",
                flush=True,
            )
    print("\nfull sizes (LeRobot's numbers, built offline on the meta device):")
    for family, total, trainable in full_counts():
        print(
            f"{family:6} total {total / 1e9:.3f} B; trainable with recipe.train_vlm=false {trainable / 1e6:.1f} M"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
