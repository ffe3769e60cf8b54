"""A stand-in learner or actor for the console's tests and screenshots (not used by a real run).

It lives beside the screenshot tool, outside the shipped packages (the console ships no demo
code), and not in ``tests/`` because ``make screenshots`` (``python -m tools.screenshots``) uses
its metrics too. It runs as a script (``python tools/screenshots/fake_child.py``), so it works
from any working directory.

Why it exists: supervising, readiness gating, stop escalation, log files and the telemetry
panel must be exercised against real child processes, but a real smoke run takes minutes
and its numbers are random. This script behaves like the real entry points where the
console can tell the difference — the ``[learner] ready`` line and ``ready`` event, telemetry
records in the real schema (written with ``pirl_core.telemetry``), the ``[learner] done``
line, exit codes, clean exit 130 on SIGINT — with deterministic numbers and chosen timing.

    python tools/screenshots/fake_child.py --role learner --output-dir out --updates 5 --interval 0.2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pirl_console.commands import ChildSpec, child_env
from pirl_core.cli import CliArgs
from pirl_core.errors import ExitCode
from pirl_core.process_env import configure_process
from pirl_core.telemetry import Telemetry


def learner_metrics(update: int, total: int) -> dict[str, float]:
    """Plausible, deterministic learner metrics for update ``update``."""
    x = update / max(1, total)
    return {
        "update": update,
        "updates_total": total,
        "version": update,
        "samples": update * 512,
        "policy_loss": round(0.05 * math.exp(-2 * x) * math.cos(update) - 0.01, 5),
        "value_loss": round(0.8 * math.exp(-3 * x) + 0.05, 5),
        "entropy": round(1.2 - 0.4 * x, 4),
        "approx_kl": round(0.004 + 0.003 * abs(math.sin(update)), 5),
        "clip_frac": round(0.05 + 0.04 * abs(math.sin(0.7 * update)), 4),
        "ratio_check": round(3e-6 * (1 + abs(math.cos(update))), 9),
        "explained_variance": round(min(0.95, 0.1 + 0.9 * x), 4),
        "grad_norm": round(0.9 + 0.5 * abs(math.sin(1.3 * update)), 4),
        "lr_policy": 5e-6,
        "update_s": round(1.8 + 0.2 * math.sin(update), 3),
        "samples_per_s": round(260 + 30 * math.sin(update), 1),
        "push_mb": 3.2,
        "push_s": 0.041,
        "success_rate": round(min(1.0, 0.15 + 0.7 * x + 0.05 * math.sin(3 * update)), 4),
        "return_mean": round(0.3 + 1.6 * x + 0.1 * math.sin(2 * update), 4),
    }


def actor_metrics(actor_id: int, version: int) -> dict[str, float]:
    return {
        "version": version,
        "episodes": (version + 1) * 8,
        "success_rate": round(min(1.0, 0.12 + 0.02 * version + 0.03 * actor_id), 4),
        "return_mean": round(0.25 + 0.05 * version, 4),
        "env_steps": (version + 1) * 4160,
        "env_steps_per_s": round(410 + 25 * math.sin(version + actor_id), 1),
        "inference_ms": round(38 + 4 * math.cos(version), 2),
        "version_lag": 0,
    }


def _flood(count: int, rate: float = 0.0) -> None:
    """Print ``count`` lines (0 = forever), ``rate`` lines/s (0 = as fast as the pipe takes them)."""
    i = 0
    out = sys.stdout
    burst = 100
    started = time.monotonic()
    while count == 0 or i < count:
        out.write(f"flood line {i} \x1b[32mgreen\x1b[0m payload {'x' * 40}\n")
        i += 1
        if i % burst == 0:
            out.flush()
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    out.flush()


def _number_or_text(text: str) -> float | str | list:
    """``3`` -> 3.0, ``[0]``/``[]`` -> a list (one item at most: ``,`` separates fields), else text."""
    if text.startswith("[") and text.endswith("]"):
        return [_number_or_text(item) for item in text[1:-1].split(",") if item]
    try:
        return float(text)
    except ValueError:
        return text


def _progress(tel: Telemetry, version: int) -> None:
    """A ``progress`` event in the real actor's schema (pirl_core.progress): 3 of 8 episodes in."""
    from pirl_core.progress import VersionProgress

    progress = VersionProgress(version, 3, 8, 1560, 31.2, 0.4, 46.8)
    tel.event("progress", version, echo=False, **progress.fields())


def _write_mismatch(path: str) -> None:
    """The real learner's exit-3 report (``IdentityReport.to_dict``), with one fatal config row
    and one model row that only the built model knows."""
    from pirl_core.checkpoints.identity import IdentityReport, Row

    report = IdentityReport(
        "outputs/fake/checkpoints/000002",
        2,
        [
            Row(
                "recipe.denoise_steps", 4, 8, "fatal", "--recipe.denoise_steps=4 (or start a new output dir)"
            ),
            Row("model.feature_dim", 32, 64, "fatal", "start a new output dir"),
            Row("recipe.lr", 0.001, 0.003, "changed", "allowed"),
        ],
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({**report.to_dict(), "exit_code": int(ExitCode.RESUME_MISMATCH)}, fh)


def run(args: argparse.Namespace) -> int:
    if args.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.grandchild:
        subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)  # stays in our process group
    name = "learner" if args.role == "learner" else f"actor-{args.actor_id}"
    tel = Telemetry(args.output_dir, name)
    print(f"[{name}] fake {args.role} pid {os.getpid()} starting", flush=True)
    if args.flood_before_ready:
        _flood(args.flood_before_ready)
    time.sleep(args.ready_after)
    if args.role == "learner":
        if args.exit_code not in (ExitCode.OK, ExitCode.INTERRUPTED) and args.fail_early:
            print(
                f"error: fake learner refuses to start (exit {args.exit_code})", file=sys.stderr, flush=True
            )
            if args.exit_code == ExitCode.RESUME_MISMATCH and args.mismatch_json:
                _write_mismatch(args.mismatch_json)
            return args.exit_code
        tel.event("ready", 0, host="127.0.0.1", port=args.port, version=0)
        for spec in args.event:  # NAME[:key=value,...], e.g. actor_lost:actor_id=1,waited_s=60
            name, _, rest = spec.partition(":")
            fields = dict(item.split("=", 1) for item in rest.split(",") if item)
            tel.event(name, 0, **{k: _number_or_text(v) for k, v in fields.items()})
        if args.flood is not None:
            _flood(args.flood, args.flood_rate)
        for update in range(1, args.updates + 1):
            time.sleep(args.interval)
            tel.metrics(update, **learner_metrics(update, args.total or args.updates))
        if args.hold:
            print(f"[{name}] holding (waiting to be stopped)", flush=True)
            while True:
                time.sleep(3600)
        tel.event("done", args.updates, updates=args.updates, samples=args.updates * 512, wall_s=1.0)
        print(
            f"[learner] done updates={args.updates} samples={args.updates * 512} wall_s=1.0 "
            f"checkpoint={args.output_dir}/checkpoints/last",
            flush=True,
        )
    else:
        tel.event("connecting", host="127.0.0.1", port=args.port)
        tel.event("connected", host="127.0.0.1", port=args.port)
        if args.flood is not None:
            _flood(args.flood, args.flood_rate)
        for version in range(args.updates):
            if args.progress:
                _progress(tel, version)
            time.sleep(args.interval)
            tel.metrics(version, **actor_metrics(args.actor_id, version))
        if args.hold:
            if args.progress:  # the next version, under way while it holds
                _progress(tel, args.updates)
            while True:
                time.sleep(3600)
        tel.event("learner_done", args.updates, reason="done")
    if args.exit_code:
        print(f"error: fake {args.role} exits {args.exit_code} as asked", file=sys.stderr, flush=True)
    tel.close()
    return args.exit_code


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fake_child.py")
    parser.add_argument("--role", choices=["learner", "actor"], required=True)
    parser.add_argument("--actor-id", type=int, default=0)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--total", type=int, default=0, help="updates_total reported (default: --updates)")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--fail-early", action="store_true", help="exit before ready (like exit 2/3)")
    parser.add_argument("--hold", action="store_true", help="after the updates, wait to be stopped")
    parser.add_argument("--flood", type=int, default=-1, help="lines to print flat out (0 = forever)")
    parser.add_argument("--flood-rate", type=float, default=0.0, help="lines/s while flooding (0 = flat out)")
    parser.add_argument("--flood-before-ready", type=int, default=0)
    parser.add_argument("--ignore-sigint", action="store_true")
    parser.add_argument("--grandchild", action="store_true", help="leave a `sleep 600` in the group")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="actor: write in-round progress events")
    parser.add_argument("--mismatch-json", default=None, help="with --exit-code 3: write a mismatch report")
    parser.add_argument(
        "--event", action="append", default=[], help="learner: after ready, write this telemetry event"
    )
    args = parser.parse_args(argv)
    configure_process()  # an entrypoint like the real children (it never renders)
    if args.flood < 0:
        args.flood = None
    try:
        code = run(args)
    except KeyboardInterrupt:
        print(f"interrupted: stopped cleanly (exit {int(ExitCode.INTERRUPTED)})", file=sys.stderr, flush=True)
        code = ExitCode.INTERRUPTED
    sys.stdout.flush()
    raise SystemExit(code)


@dataclass
class FakeCommands:
    """A :class:`~pirl_console.commands.CommandBuilder` that starts this script instead of the
    real entry points; extra flags per role choose timing, output volume and exit codes."""

    learner_flags: list[str] = field(default_factory=list)
    actor_flags: list[str] = field(default_factory=list)
    python: str = sys.executable
    cwd: str = field(default_factory=os.getcwd)

    def _argv(self, args: CliArgs, role: str, flags: list[str], actor_id: int = 0) -> tuple[str, ...]:
        extra = ["--mismatch-json", args.mismatch_json] if role == "learner" and args.mismatch_json else []
        return (
            self.python,
            str(Path(__file__).resolve()),
            "--role",
            role,
            "--actor-id",
            str(actor_id),
            "--output-dir",
            args.config.output_dir,
            *extra,
            *flags,
        )

    def specs(self, args: CliArgs) -> list[ChildSpec]:
        env = child_env()
        learner = ChildSpec.learner(self._argv(args, "learner", self.learner_flags), env, self.cwd)
        actors = [
            ChildSpec.actor(i, self._argv(args, "actor", self.actor_flags, i), env, self.cwd)
            for i in range(args.config.actor.n_actors)
        ]
        return [learner, *actors]


if __name__ == "__main__":
    main()
