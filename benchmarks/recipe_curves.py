"""Toy learning curves for the three recipe combinations, and the update cost of the Flow-SDE
hybrid vs Flow-Noise's joint chain at the same K.

    python benchmarks/recipe_curves.py                # defaults: 40 updates, seed 0
    python benchmarks/recipe_curves.py --updates 60 --seeds 0 1 2

Prints markdown tables. Curves: deterministic (ODE) success on 128 held-out initial states of the
sparse toy task (profiles/toy.toml) vs update, with cumulative wall time (collection + update,
evaluation excluded). Update cost: one ``PolicyTrainer.update`` (4 epochs x 4 minibatches) on the
same rollout batch for both methods, median of repeats; the ratio is measured in the same run.
Everything runs on CPU with one torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pirl_core.config import RunConfig, load_config  # noqa: E402
from pirl_core.rollout import collect_rollouts  # noqa: E402
from tests.inprocess.local_loop import build_loop, train_in_process  # noqa: E402

EVAL_EPISODES = 128
COMBOS = [("flow_noise", "ppo"), ("flow_sde", "ppo"), ("flow_sde", "grpo")]


def curves(updates: int, seeds: list[int], eval_every: int) -> None:
    rows: dict[tuple[str, str], list[list[dict]]] = {}
    for method, algorithm in COMBOS:
        rows[(method, algorithm)] = []
        for seed in seeds:
            cfg = load_config("toy", {"recipe.method": method, "recipe.algorithm": algorithm, "seed": seed})
            rows[(method, algorithm)].append(
                train_in_process(cfg, updates, eval_every=eval_every, eval_episodes=EVAL_EPISODES)
            )
    names = [f"{m}+{a}" for m, a in COMBOS]
    print(
        f"\n### Toy learning curves (point_reach, sparse; success on {EVAL_EPISODES} held-out states, mean of seeds {seeds})\n"
    )
    print("| update | " + " | ".join(f"{n} success | {n} wall s" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    for i, record in enumerate(rows[COMBOS[0]][0]):
        cells = []
        for combo in COMBOS:
            runs = rows[combo]
            success = statistics.mean(run[i]["eval_success"] for run in runs)
            wall = statistics.mean(run[i]["wall_s"] for run in runs)
            cells += [f"{success:.2f}", f"{wall:.1f}"]
        print(f"| {record['update']} | " + " | ".join(cells) + " |")
    print("\nFirst update reaching >= 0.9 (per seed):")
    for combo, name in zip(COMBOS, names, strict=True):
        firsts = [next((r["update"] for r in run if r["eval_success"] >= 0.9), None) for run in rows[combo]]
        print(f"- {name}: {firsts}")


def _update_seconds(cfg: RunConfig, batch, repeats: int) -> tuple[float, int]:
    # The batch comes from another policy (shared by both methods) and is re-used: off-policy by
    # design, so the ratio check is not enforced; the cost measured is the same.
    state = build_loop(cfg)
    state.trainer.update(batch, on_policy=False)  # warm-up (allocations, optimiser state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state.trainer.update(batch, on_policy=False)  # the batch is re-used: no longer on-policy
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(batch)


def update_cost(steps_list: list[int], hidden: list[int], repeats: int) -> None:
    print("\n### Update cost: Flow-SDE hybrid (1 scored step) vs Flow-Noise joint (K scored steps)\n")
    print("| K | MLP width | transitions | Flow-Noise update s | Flow-SDE update s | SDE / Noise |")
    print("|---|---|---|---|---|---|")
    for steps in steps_list:
        for width in hidden:
            common = {"recipe.denoise_steps": steps, "policy.hidden_dim": width, "recipe.algorithm": "ppo"}
            sde_cfg = load_config("toy", {**common, "recipe.method": "flow_sde"})
            noise_cfg = load_config("toy", {**common, "recipe.method": "flow_noise"})
            # One batch for both: chains from the Flow-SDE policy (with its stored stochastic
            # steps); Flow-Noise scores every transition of the same chains.
            source = build_loop(sde_cfg)
            batch, _, _ = collect_rollouts(
                source.env,
                source.actor_critic,
                list(range(64)),
                torch.Generator().manual_seed(0),
                sde_cfg.policy.action_steps,
            )
            t_noise, n = _update_seconds(noise_cfg, batch, repeats)
            t_sde, _ = _update_seconds(sde_cfg, batch, repeats)
            print(f"| {steps} | {width} | {n} | {t_noise:.3f} | {t_sde:.3f} | {t_sde / t_noise:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-curves", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_curves:
        curves(args.updates, args.seeds, args.eval_every)
    update_cost([4, 10], [64, 256], args.repeats)


if __name__ == "__main__":
    main()
