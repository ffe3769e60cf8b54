"""Several lift runs on one chart and in one table: held-out success vs RL update per run.

Why: one lift run answers "did RL help with these settings"; the question a researcher asks next
is "which setting made the difference", which needs the runs side by side on the same held-out
init states. Reads each run's ``lift.json`` (written by ``benchmarks/libero_lift.py``), prints a
markdown table (before, after, lift with Wilson intervals, periodic curve) and writes one PNG::

    python benchmarks/libero_lift_compare.py --png docs/libero-lift.png \\
        "A: PPO=outputs/lift" "B: GRPO=outputs/lift_grpo"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pirl_core.eval.results import wilson_interval  # noqa: E402

DEFAULT_UPDATES = 8  # profiles/libero_small.toml's learner.updates, for lift.json files without "updates"


@dataclass
class LiftRun:
    label: str
    before: tuple[int, int]  # successes, episodes over all tasks
    after: tuple[int, int]
    curve: list[tuple[int, float]]  # periodic eval: (policy version, success rate)
    updates: int


def totals(per_task: Mapping[Any, Sequence[int]]) -> tuple[int, int]:
    return sum(s for s, _ in per_task.values()), sum(n for _, n in per_task.values())


def updates_of(record: dict) -> int:
    """Number of RL updates of a run: recorded by newer lift.json files, else read back from the
    command line it was run with, else the profile's default."""
    if "updates" in record:
        return int(record["updates"])
    argv = list(record.get("argv", []))
    for i, arg in enumerate(argv):
        if arg == "--updates" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--updates="):
            return int(arg.split("=", 1)[1])
    return DEFAULT_UPDATES


def load_run(spec: str) -> LiftRun:
    """``LABEL=WORKDIR`` (the directory holding lift.json)."""
    if "=" not in spec:
        raise SystemExit(f"error: run {spec!r}: expected LABEL=WORKDIR, e.g. 'A: PPO=outputs/lift'")
    label, work = spec.rsplit("=", 1)
    path = Path(work) / "lift.json"
    if not path.is_file():
        raise SystemExit(
            f"error: run {label!r}: {path} not found (run benchmarks/libero_lift.py --work {work})"
        )
    record = json.loads(path.read_text())
    curve = [(int(v), float(r)) for v, r in record["curve"]]
    return LiftRun(label, totals(record["before"]), totals(record["after"]), curve, updates_of(record))


def rate_cell(s: int, n: int) -> str:
    lo, hi = wilson_interval(s, n)
    return f"{s}/{n} = {s / n:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(runs: list[LiftRun]) -> str:
    lines = [
        "| run | before (SFT) | after RL | lift | periodic eval (version: success) |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        lift = r.after[0] / r.after[1] - r.before[0] / r.before[1]
        curve = ", ".join(f"{v}: {s:.2f}" for v, s in r.curve)
        lines.append(
            f"| {r.label} | {rate_cell(*r.before)} | {rate_cell(*r.after)} (v{r.updates}) | {lift:+.2f} | {curve} |"
        )
    return "\n".join(lines)


def plot(runs: list[LiftRun], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r in runs:
        points = dict(r.curve)
        points.setdefault(0, r.before[0] / r.before[1])
        points[r.updates] = r.after[0] / r.after[1]
        xs = sorted(points)
        (line,) = ax.plot(xs, [points[x] for x in xs], marker="o", label=r.label)
        ax.scatter([r.updates], [points[r.updates]], marker="*", s=140, color=line.get_color(), zorder=3)
    ax.set_xlabel("RL update (policy version); star: eval CLI on the last checkpoint")
    ax.set_ylabel("held-out success")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="benchmarks/libero_lift_compare.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("runs", nargs="+", help="LABEL=WORKDIR, one per lift run")
    p.add_argument("--png", required=True, help="where to write the chart")
    p.add_argument("--title", default="PI-RL from SFT on LIBERO: held-out success per run")
    args = p.parse_args(argv)
    runs = [load_run(spec) for spec in args.runs]
    print(markdown(runs))
    plot(runs, Path(args.png), args.title)
    print(f"chart: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
