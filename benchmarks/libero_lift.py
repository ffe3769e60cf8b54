"""PI-RL lifting a VLA on LIBERO, end to end on this machine: demos -> SFT -> eval -> RL -> eval.

Why a benchmark and not a test: it is the result that makes the recipe credible (issue 12), and it
takes about an hour on two cores. Every stage is one of pirl's own commands, run as a subprocess
exactly as a researcher would type it (the commands are printed and logged), so the pipeline that
runs here is the one that scales to the real checkpoint on a GPU box:

1. ``python -m pirl_core.demos.record``: the scripted expert on the profile's tasks, training init
   states only, written as a LeRobot dataset;
2. ``python -m pirl_core.sft``: the ``small`` X-VLA trained on it with LeRobot's flow-matching loss,
   written as a LeRobot checkpoint;
3. ``python -m pirl_core.eval`` of that checkpoint on the validation and on the test init states
   (before), each its own run;
4. ``python -m pirl_core.launch --profile libero_small`` from the SFT checkpoint, with periodic
   evaluation (and ``checkpoints/best``) on the validation init states (the learning curve);
5. ``python -m pirl_core.eval`` of the RL run's last checkpoint on the validation and on the test
   init states (after).

The init states are split (``env.train_init_states`` / ``eval.val_init_states`` /
``eval.test_init_states``, disjoint; pirl_core/init_states.py): demos and RL draw from train, the run
selects on validation, and the claim is the test split, which nothing selected on. A profile
without a split falls back to one held-out evaluation (the last ``eval.episodes_per_task``
states). Prints per-task success before and after for each split with Wilson 95 % intervals,
writes ``lift.json`` (``before``/``after``: the test split; ``splits``: every split) and a
learning-curve PNG (validation success vs update). Stages whose output already exists are reused
with ``--reuse`` (e.g. to rerun RL only after changing a setting). Usage::

    MUJOCO_GL=egl python benchmarks/libero_lift.py --work outputs/lift [--png docs/libero-lift.png]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling libero_lift_compare

from libero_lift_compare import LiftRun, totals  # noqa: E402
from libero_lift_compare import plot as plot_runs  # noqa: E402

from pirl_core.config import RunConfig, load_config, split_states  # noqa: E402
from pirl_core.eval.results import wilson_interval  # noqa: E402
from pirl_core.process_env import configure_process  # noqa: E402

PROFILE = "libero_small"


@dataclass
class Stage:
    name: str
    argv: list[str]
    output: Path  # exists afterwards; with --reuse an existing one skips the stage


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/libero_lift.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="outputs/lift", help="directory for every stage's output")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--demos-per-task", type=int, default=20)
    p.add_argument("--sft-steps", type=int, default=2500)
    p.add_argument("--sft-batch-size", type=int, default=16)
    p.add_argument("--updates", type=int, default=None, help="RL updates (default: the profile's)")
    p.add_argument("--eval-every", type=int, default=None, help="periodic eval (default: the profile's)")
    p.add_argument("--png", default=None, help="learning-curve PNG (default: <work>/libero_lift.png)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile override for SFT, evaluation and RL (repeatable), e.g. --set env.episode_length=150",
    )
    p.add_argument("--reuse", action="store_true", help="skip stages whose output already exists")
    return p.parse_args(argv)


def has_output(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def run_stage(stage: Stage, logs: Path, reuse: bool) -> float | None:
    """Run one stage, teeing its output into ``logs/<name>.log``; returns its wall time. A reused
    stage reports the wall time recorded when it ran (``logs/<name>.wall_s``), or None when it
    ran elsewhere: a rerun must not claim that a stage took no time."""
    wall_file = logs / f"{stage.name}.wall_s"
    if has_output(stage.output):
        if reuse:
            print(f"== {stage.name}: reusing {stage.output}")
            return float(wall_file.read_text()) if wall_file.is_file() else None
        raise SystemExit(f"error: {stage.output} exists; pass --reuse or choose another --work")
    command = " ".join(shlex.quote(a) for a in stage.argv)
    print(f"== {stage.name}: {command}", flush=True)
    started = time.monotonic()
    with open(logs / f"{stage.name}.log", "w") as log:
        proc = subprocess.Popen(
            stage.argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(f"   {line}")
        rc = proc.wait()
    wall = time.monotonic() - started
    if rc != 0:
        raise SystemExit(f"error: stage {stage.name} exited {rc} (log: {logs / (stage.name + '.log')})")
    wall_file.write_text(f"{wall:.1f}\n")
    print(f"== {stage.name}: done in {wall:.0f} s", flush=True)
    return wall


def eval_splits(cfg: RunConfig) -> dict[str, list[int] | None]:
    """Split name -> per-task init states of the before/after evaluations: "val" and "test" when
    the profile splits its init states, else {"held-out": None} (the last eval.episodes_per_task)."""
    split = split_states(cfg)
    named = {"val": split["eval.val_init_states"], "test": split["eval.test_init_states"]}
    if any(split.values()):
        return {name: states for name, states in named.items() if states}
    return {"held-out": None}


def demo_first_state(cfg: RunConfig, per_task: int) -> int:
    """The first of ``per_task`` consecutive training init states the scripted expert records on
    (``demos.record --first-state``): demonstrations never touch validation or test states."""
    split = split_states(cfg)
    train = split["env.train_init_states"]
    if not train:  # every state outside validation and test
        excluded = set(split["eval.val_init_states"]) | set(split["eval.test_init_states"])
        train = [s for s in range(per_task + len(excluded)) if s not in excluded]
    chosen = train[:per_task]
    if len(chosen) < per_task or chosen != list(range(chosen[0], chosen[0] + per_task)):
        raise SystemExit(
            f"error: --demos-per-task={per_task} needs {per_task} consecutive training init states; "
            f"env.train_init_states={cfg.env.train_init_states!r} has {train[:per_task]}..."
        )
    return chosen[0]


def minutes(wall: float | None) -> str:
    return "reused (not timed here)" if wall is None else f"{wall / 60:.1f} min"


def eval_rates(info_path: Path) -> dict[int, tuple[int, int]]:
    """task id -> (successes, episodes) from an ``eval_info.json``."""
    info = json.loads(info_path.read_text())
    return {
        int(t["task_id"]): (sum(bool(s) for s in t["metrics"]["successes"]), len(t["metrics"]["successes"]))
        for t in info["per_task"]
    }


def periodic_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(policy version, held-out success) from the actor's ``kind=eval`` telemetry records."""
    points = []
    for path in sorted((run_dir / "telemetry").glob("actor-0*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            if record.get("kind") == "eval" and "success_rate" in record:
                points.append((int(record["step"]), float(record["success_rate"])))
    return sorted(dict(points).items())


def table(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], names: dict[int, str]
) -> str:
    rows = [("task", "instruction", "before (SFT)", "95% CI", "after (SFT+RL)", "95% CI")]

    def cell(s: int, n: int) -> tuple[str, str]:
        lo, hi = wilson_interval(s, n)
        return f"{s}/{n} = {s / n:.2f}", f"[{lo:.2f}, {hi:.2f}]"

    for tid in sorted(before):
        rows.append((str(tid), names.get(tid, ""), *cell(*before[tid]), *cell(*after[tid])))
    sb, nb = (sum(v[i] for v in before.values()) for i in (0, 1))
    sa, na = (sum(v[i] for v in after.values()) for i in (0, 1))
    rows.append(("all", "", *cell(sb, nb), *cell(sa, na)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_process()
    overrides = list(args.set)
    if args.updates is not None:
        overrides.append(f"learner.updates={args.updates}")
    if args.eval_every is not None:
        overrides.append(f"eval.every={args.eval_every}")
    work = Path(args.work).resolve()
    demos, sft, rl = (work / n for n in ("demos", "sft", "rl"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.profile, [*overrides, f"policy.pretrained_path={sft}"])
    tasks = ",".join(str(t) for t in cfg.env.task_ids)
    splits = eval_splits(cfg)
    claim = "test" if "test" in splits else next(iter(splits))

    def eval_flags(states: list[int] | None) -> list[str]:
        chosen = (
            ["--init-states=held-out", f"--episodes={cfg.eval.episodes_per_task}"]
            if states is None
            else [f"--init-states={','.join(map(str, states))}", f"--episodes={len(states)}"]
        )
        return [f"--tasks={tasks}", *chosen, f"--episode-length={cfg.env.episode_length}", "--videos=0"]

    def eval_dir(when: str, split: str) -> Path:  # the unsplit layout keeps its old names (--reuse)
        return work / (f"eval_{when}" if split == "held-out" else f"eval_{when}_{split}")

    sets = [f"--{o}" for o in args.set]

    def pirl(module: str, *argv: str) -> list[str]:
        return [sys.executable, "-m", f"pirl_core.{module}", *argv]

    stages = [
        Stage(
            "demos",
            pirl(
                "demos.record",
                f"--suite={cfg.env.suite}",
                f"--tasks={tasks}",
                f"--episodes-per-task={args.demos_per_task}",
                f"--first-state={demo_first_state(cfg, args.demos_per_task)}",
                f"--camera-size={cfg.env.camera_size}",
                f"--out={demos}",
            ),
            demos,
        ),
        Stage(
            "sft",
            pirl(
                "sft",
                f"--dataset={demos}",
                f"--out={sft}",
                f"--profile={args.profile}",
                "--policy.size=small",
                f"--steps={args.sft_steps}",
                f"--batch-size={args.sft_batch_size}",
                *sets,
            ),
            sft,
        ),
        *(
            Stage(
                eval_dir("before", split).name,
                pirl(
                    "eval",
                    f"--profile={args.profile}",
                    f"--policy.pretrained_path={sft}",
                    *eval_flags(states),
                    f"--out={eval_dir('before', split)}",
                    *sets,
                ),
                eval_dir("before", split),
            )
            for split, states in splits.items()
        ),
        Stage(
            "rl",
            pirl(
                "launch",
                f"--profile={args.profile}",
                f"--policy.pretrained_path={sft}",
                f"--output_dir={rl}",
                *(f"--{o}" for o in overrides),
            ),
            rl,
        ),
        *(
            Stage(
                eval_dir("after", split).name,
                pirl("eval", str(rl), *eval_flags(states), f"--out={eval_dir('after', split)}"),
                eval_dir("after", split),
            )
            for split, states in splits.items()
        ),
    ]
    walls = {s.name: run_stage(s, logs, args.reuse) for s in stages}

    rate = lambda d: sum(s for s, _ in d.values()) / max(1, sum(n for _, n in d.values()))  # noqa: E731
    results: dict[str, dict[str, Any]] = {}
    for split, states in splits.items():
        before = eval_rates(eval_dir("before", split) / "eval_info.json")
        after = eval_rates(eval_dir("after", split) / "eval_info.json")
        info = json.loads((eval_dir("after", split) / "eval_info.json").read_text())
        names = {int(t["task_id"]): t.get("instruction", "") for t in info["per_task"]}
        shown = (
            f"init states {states[0]}-{states[-1]}"
            if states
            else f"last {cfg.eval.episodes_per_task} init states"
        )
        print()
        print(f"{split} success on {cfg.env.suite} tasks {tasks} ({shown} of each task):")
        print(table(before, after, names))
        print(f"{split} lift: {rate(after) - rate(before):+.3f} absolute")
        results[split] = {
            "states": states,
            "before": {str(k): v for k, v in before.items()},
            "after": {str(k): v for k, v in after.items()},
            "lift": rate(after) - rate(before),
        }
    before = {int(k): tuple(v) for k, v in results[claim]["before"].items()}
    after = {int(k): tuple(v) for k, v in results[claim]["after"].items()}
    held_out = len(splits[claim] or []) or cfg.eval.episodes_per_task
    print(f"claim ({claim} split, nothing selected on it):")
    lift = rate(after) - rate(before)
    failure_ratio = (1 - rate(after)) / (1 - rate(before)) if rate(before) < 1 else float("nan")
    print(f"lift: {lift:+.3f} absolute; failure rate x{failure_ratio:.2f}")
    print("wall time: " + ", ".join(f"{k} {minutes(v)}" for k, v in walls.items()))
    known = [v for v in walls.values() if v is not None]
    print(
        f"total: {sum(known) / 60:.1f} min"
        + ("" if len(known) == len(walls) else " (reused stages not counted)")
    )

    curve = periodic_curve(rl)
    png = Path(args.png) if args.png else work / "libero_lift.png"
    plot_runs(
        [LiftRun("SFT + RL", totals(before), totals(after), curve, cfg.learner.updates)],
        png,
        f"PI-RL from SFT, {cfg.env.suite} tasks {tasks}: before/after on {claim}, curve on validation",
    )
    result: dict[str, Any] = {
        "suite": cfg.env.suite,
        "tasks": cfg.env.task_ids,
        "held_out_per_task": held_out,
        "claim_split": claim,
        "splits": results,
        "before": results[claim]["before"],
        "after": results[claim]["after"],
        "lift": lift,
        "failure_ratio": failure_ratio,
        "curve": curve,
        "updates": cfg.learner.updates,
        "wall_s": walls,
        "argv": sys.argv[1:],
    }
    (work / "lift.json").write_text(json.dumps(result, indent=2))
    print(f"curve: {png}; figures: {work / 'lift.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
