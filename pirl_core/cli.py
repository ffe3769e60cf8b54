"""Command-line parsing shared by ``python -m pirl_core.learner`` and ``python -m pirl_core.actor``.

Both entry points take the same flags so that a run is described once:

    python -m pirl_core.learner --profile smoke --env.suite=libero_spatial --learner.updates=5
    python -m pirl_core.actor   --profile smoke --env.suite=libero_spatial --learner.updates=5

``--resume`` / ``--resume-from`` / ``--mismatch-json`` matter to the learner only (the actor
receives the restored parameters and version); ``--actor-id`` matters to the actor only.
:mod:`pirl_core.launch` turns a parsed :class:`CliArgs` back into both command lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pirl_core.argparse_base import UsageParser
from pirl_core.config import DEFAULT_PROFILE, RunConfig, field_specs, load_config
from pirl_core.errors import PirlError, interrupted_code
from pirl_core.process_env import configure_process


@dataclass
class CliArgs:
    config: RunConfig
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    resume_from: str | None = None
    actor_id: int = 0
    mismatch_json: str | None = None  # exit 3: also write the mismatch report here as JSON ("-": stderr)

    def has_override(self, key: str) -> bool:
        """Whether the command line set ``key`` (e.g. ``output_dir``) explicitly."""
        return any(item.split("=", 1)[0].strip() == key for item in self.overrides)


def config_help() -> str:
    """Every config field as ``--help`` lists it, generated from its one declaration in config.py:
    the flag, its type, the dataclass default, its resume class and its documentation."""
    lines = [
        "config fields (set any with --section.key=VALUE, VALUE as TOML; defaults shown are the",
        "dataclass defaults, a profile may set others; resume: fatal = a resume must keep it,",
        "pushed = the learner sends it to the actors with every update):",
    ]
    for spec in field_specs():
        lines.append(f"  {spec.usage()}  ({spec.facts()})")
        lines.append(f"      {spec.doc}")
    return "\n".join(lines)


def add_run_flags(
    parser: argparse.ArgumentParser,
    profile_default: str | None = DEFAULT_PROFILE,
    profile_help: str = "profile name under profiles/ or a .toml path",
) -> None:
    """The flags that name a run (``--profile``, ``--resume``, ``--resume-from``): the same for
    learner, actor, launcher and console, so a command that works in one works in all."""
    parser.add_argument("--profile", default=profile_default, help=profile_help)
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoints/last")
    parser.add_argument("--resume-from", default=None, metavar="PATH", help="continue from this checkpoint")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = UsageParser(
        prog=prog,
        description="pirl: PI-RL online fine-tuning. Dotted overrides such as --env.suite=libero_spatial\n"
        "or --learner.updates=5 change any profile field (listed below).",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser)
    parser.add_argument("--actor-id", type=int, default=0, help="actor index (actor only)")
    parser.add_argument(
        "--mismatch-json",
        default=None,
        metavar="FILE",
        help="on a refused resume (exit 3) also write the mismatch report as JSON to FILE ('-': stderr)",
    )
    return parser


def stray_argument(rest: list[str]) -> str | None:
    """Why ``rest`` (what argparse did not know) is not all ``--section.key=value`` overrides,
    naming the first stray item; None when it is."""
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            return f"unrecognised argument {item!r}; overrides look like --section.key=value"
    return None


def dotted_overrides(parser: argparse.ArgumentParser, rest: list[str]) -> list[str]:
    """The arguments argparse did not know, as ``section.key=value`` overrides (usage error otherwise)."""
    message = stray_argument(rest)
    if message is not None:
        parser.error(message)
    return [item[2:] for item in rest]


def parse_args(prog: str, argv: list[str] | None = None) -> CliArgs:
    """Known flags via argparse; every other ``--a.b=value`` is a profile override."""
    parser = build_parser(prog)
    known, rest = parser.parse_known_args(argv)
    overrides = dotted_overrides(parser, rest)
    config = load_config(known.profile, overrides)
    return CliArgs(
        config=config,
        overrides=overrides,
        resume=known.resume or known.resume_from is not None,
        resume_from=known.resume_from,
        actor_id=known.actor_id,
        mismatch_json=known.mismatch_json,
    )


def write_mismatch_json(err: PirlError, target: str | None) -> None:
    """Exit 3 as data: the console (or a script) reads this instead of the printed table.

    Written only for a refused resume that carries its report, atomically (temp + rename), so a
    reader never sees half a file."""
    from pirl_core.checkpoints.identity import IdentityMismatch

    if target is None or not isinstance(err, IdentityMismatch):
        return
    text = json.dumps({**err.report.to_dict(), "exit_code": int(err.exit_code)}, indent=2, default=str)
    if target == "-":
        print(text, file=sys.stderr, flush=True)
        return
    from pirl_core.storage import write_text_atomic

    path = Path(os.path.abspath(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text + "\n", "the mismatch report")


def _mismatch_target(argv: list[str]) -> str | None:
    """``--mismatch-json`` of this command line (already accepted once by ``parse_args``)."""
    known, _ = build_parser("pirl").parse_known_args(argv)
    return known.mismatch_json


def run_main(main: Callable[[], int]) -> None:
    """Run an entry point: map PirlError to its exit code, Ctrl-C to 130 and SIGTERM to 143
    (see pirl_core.lifecycle), one line first."""
    configure_process()  # before anything imports mujoco
    from pirl_core.redact import argv_secrets, mask
    from pirl_core.storage import from_os_error

    secrets = argv_secrets(sys.argv[1:])  # an inline token is never echoed back in an error
    try:
        try:
            code = main()
        except OSError as exc:  # a full or read-only disk wherever it hit: one line, exit 8
            fault = from_os_error(exc)
            if fault is None:
                raise
            raise fault from exc
    except PirlError as err:
        print(mask(err.line(), secrets), file=sys.stderr, flush=True)
        if err.detail:
            print(mask(err.detail, secrets), file=sys.stderr, flush=True)
        try:
            write_mismatch_json(err, _mismatch_target(sys.argv[1:]))
        except PirlError as report_err:  # the report's own disk fault: the exit code stays err's
            print(report_err.line(), file=sys.stderr, flush=True)
        code = err.exit_code
    except KeyboardInterrupt as exc:
        code = interrupted_code(exc)
        print(f"interrupted: stopped cleanly (exit {int(code)})", file=sys.stderr, flush=True)
    raise SystemExit(int(code))
