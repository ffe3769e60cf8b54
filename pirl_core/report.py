"""``python -m pirl_core.report OUTPUT_DIR [OUTPUT_DIR ...] [--out DIR]``: curves and a summary.

Why: a run's numbers live in its JSONL telemetry; this turns one or several runs into pictures a
researcher can paste (``curves.png``: success, return, losses, approx KL, clip fraction, ratio
check, throughput and time breakdown, runs overlaid on shared axes) and a short ``summary.md``
(final and best figures per run, wall time, config differences). Headless (matplotlib Agg); reads
only the files, so it works on a finished run, a live one, or one copied from a GPU box.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from pirl_core.argparse_base import UsageParser
from pirl_core.checkpoints.identity import flatten
from pirl_core.cli import run_main
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.series import PANELS, RunSeries, load_run, telemetry_files, unique_labels

CURVES_PNG = "curves.png"
SUMMARY_MD = "summary.md"
LINESTYLES = ("-", "--", ":", "-.")
COLUMNS = 2


def load_runs(dirs: list[str]) -> list[RunSeries]:
    paths = [Path(d) for d in dirs]
    for path in paths:
        if not path.is_dir():
            raise ConfigError("OUTPUT_DIR", str(path), "an existing run directory (the run's --output_dir)")
        if not telemetry_files(path):
            raise ConfigError(
                "OUTPUT_DIR",
                str(path),
                "a run directory with telemetry/*.jsonl",
                hint="has this run started?",
            )
    runs = [load_run(p, label) for p, label in zip(paths, unique_labels(paths), strict=True)]
    if not any(run.series for run in runs):
        raise ConfigError(
            "OUTPUT_DIR", dirs, "runs with at least one metrics record", hint="no update finished yet"
        )
    return runs


def plot_curves(runs: list[RunSeries], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    available = {name for run in runs for name in run.series}
    panels = [(panel, panel.names(available)) for panel in PANELS]
    panels = [(panel, names) for panel, names in panels if names]
    rows = math.ceil(len(panels) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(6.0 * COLUMNS, 2.6 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (panel, names) in zip(axes.flat, panels, strict=False):
        for r, run in enumerate(runs):
            for s, name in enumerate(names):
                points = run.series.get(name)
                if not points:
                    continue
                steps, values = zip(*points, strict=True)
                label = name if len(runs) == 1 else f"{run.label} · {name}"
                ax.plot(
                    steps,
                    values,
                    # One run: a colour per series. Several: a colour per run, a dash per series.
                    "-" if len(runs) == 1 else LINESTYLES[s % len(LINESTYLES)],
                    color=colors[(s if len(runs) == 1 else r) % len(colors)],
                    linewidth=1.4,
                    marker="o" if len(points) < 12 else None,
                    markersize=3,
                    label=label,
                )
        ax.set_title(panel.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="best")
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("update (learner) / policy version (actors)", fontsize=8)
    fig.suptitle(" vs ".join(run.label for run in runs), fontsize=11)
    fig.tight_layout()
    path = out / CURVES_PNG
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _either(first: Any, second: Any) -> Any:
    """The learner's figure, else the actors' (a 0.0 success is a figure, not a gap)."""
    return first if first is not None else second


def summary_markdown(runs: list[RunSeries], curves: Path) -> str:
    lines = [f"# pirl report: {', '.join(run.label for run in runs)}", "", f"![curves]({curves.name})", ""]
    header = (
        "| run | updates | samples | final success | best success (update) | final return | "
        "best eval success | final approx KL | wall time |"
    )
    lines += [header, "|---" * (header.count("|") - 1) + "|"]
    for run in runs:
        best = _either(run.best("learner/success_rate"), run.best("actors/success_rate"))
        best_eval = run.best("eval/success_rate")
        updates = run.series.get("learner/policy_loss", [])
        wall = run.wall_s()
        cells = [
            run.label,
            _fmt(updates[-1][0] if updates else None),
            _fmt(run.last("learner/samples")),
            _fmt(_either(run.last("learner/success_rate"), run.last("actors/success_rate"))),
            "-" if best is None else f"{best[1]:.4g} ({best[0]})",
            _fmt(_either(run.last("learner/return_mean"), run.last("actors/return_mean"))),
            "-" if best_eval is None else f"{best_eval[1]:.4g} ({best_eval[0]})",
            _fmt(run.last("learner/approx_kl")),
            "-" if wall is None else f"{wall:.1f} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    configs = {run.label: run.train_config() for run in runs}
    known = {label: flatten(cfg) for label, cfg in configs.items() if cfg is not None}
    lines.append("")
    if len(runs) > 1 and len(known) > 1:
        keys = sorted({k for flat in known.values() for k in flat} - {"output_dir"})
        differ = [k for k in keys if len({repr(flat.get(k)) for flat in known.values()}) > 1]
        lines.append("## Config differences")
        lines.append("")
        if differ:
            lines.append("| field | " + " | ".join(known) + " |")
            lines.append("|---" * (len(known) + 1) + "|")
            for key in differ:
                lines.append(
                    f"| {key} | " + " | ".join(_fmt(flat.get(key)) for flat in known.values()) + " |"
                )
        else:
            lines.append("None (apart from output_dir).")
    elif len(known) == 1:
        flat = next(iter(known.values()))
        keys = ("profile", "seed", "recipe.method", "recipe.algorithm", "env.suite", "policy.type")
        lines.append("Config: " + ", ".join(f"{k}={_fmt(flat.get(k))}" for k in keys))
    missing = [label for label, cfg in configs.items() if cfg is None]
    if missing:
        lines += ["", f"No checkpoint config (checkpoints/last) for: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def write_report(dirs: list[str], out: Path | None = None) -> list[Path]:
    runs = load_runs(dirs)
    out = (
        Path(out)
        if out is not None
        else (runs[0].output_dir / "report" if len(runs) == 1 else Path("report"))
    )
    out.mkdir(parents=True, exist_ok=True)
    curves = plot_curves(runs, out)
    summary = out / SUMMARY_MD
    summary.write_text(summary_markdown(runs, curves), encoding="utf-8")
    return [curves, summary]


def _usage_error(message: str) -> NoReturn:
    raise ConfigError(
        "arguments", " ".join(sys.argv[1:]), "OUTPUT_DIR [OUTPUT_DIR ...] [--out DIR]", hint=message
    )


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(
        prog="python -m pirl_core.report", description=__doc__.split("\n\n")[0], on_error=_usage_error
    )
    parser.add_argument("output_dirs", nargs="+", metavar="OUTPUT_DIR", help="run directories to overlay")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default: <OUTPUT_DIR>/report)"
    )
    args = parser.parse_args(argv)
    for path in write_report(args.output_dirs, args.out):
        print(f"wrote {path}")
    return ExitCode.OK


if __name__ == "__main__":
    run_main(main)
