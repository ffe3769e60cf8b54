"""``pirl-console`` / ``python -m pirl_console``: open the console.

    pirl-console                         # profile menu, smoke preselected: press enter to start
    pirl-console --profile bench         # skip the menu: run screen for bench, started at once
    pirl-console --profile smoke --learner.updates=5 --resume
    pirl-console --profile smoke --no-start   # run screen; press s to start
    pirl-console --learner.updates=5     # the menu, with this override filled in

Flags are the headless entry points' flags (``--profile``, ``--resume``, ``--resume-from``,
dotted overrides), so a command that works in two terminals works here too. With
``--profile`` a bad profile or override exits 2 with the validator's message before the UI
opens (exit codes: ``pirl_core.errors.ExitCode``, docs/design.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pirl_console.run_request import RunRequest, validate_request, with_run_dir
from pirl_core.cli import add_run_flags, config_help, stray_argument
from pirl_core.config import DEFAULT_PROFILE, parse_override
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.process_env import configure_process


@dataclass(frozen=True)
class Launch:
    request: RunRequest | None  # None: plain menu
    skip_menu: bool
    autostart: bool


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pirl-console",
        description="pirl control console: pick a profile, run learner and actors, watch telemetry,\n"
        "browse checkpoints. Dotted overrides such as --learner.updates=5 change any profile field\n"
        "(listed below; the menu's override form offers the same fields).",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(parser, None, "skip the menu and run this profile (name or .toml path)")
    parser.add_argument(
        "--no-start", action="store_true", help="with --profile: open the run screen, do not start"
    )
    return parser


def parse(argv: Sequence[str]) -> Launch:
    """What to open. Raises UsageError (exit 2) for input the headless commands would refuse."""
    known, rest = build_parser().parse_known_args(list(argv))
    stray = stray_argument(rest)
    if stray is not None:
        raise UsageError(stray)
    overrides: list[tuple[str, str]] = []
    for item in rest:
        try:
            key, _value = parse_override(item)
        except ConfigError as err:
            raise UsageError(err.message) from err
        overrides.append((key, item.split("=", 1)[1]))
    resume = known.resume or known.resume_from is not None
    if known.profile is None and not overrides and not resume:
        return Launch(None, skip_menu=False, autostart=False)
    request = RunRequest(
        profile=known.profile or DEFAULT_PROFILE,
        overrides=tuple(overrides),
        resume=resume,
        resume_from=known.resume_from,
    )
    if known.profile is None:
        return Launch(request, skip_menu=False, autostart=False)
    request = with_run_dir(request)
    validation = validate_request(request)
    if not validation.ok:
        raise UsageError("; ".join(validation.errors.values()))
    return Launch(request, skip_menu=True, autostart=not known.no_start)


def main(argv: Sequence[str] | None = None) -> int:
    configure_process()  # the console's children inherit the decision
    try:
        launch = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    from pirl_console.app import PirlConsole  # import Textual only when the UI opens

    app = PirlConsole(request=launch.request, skip_menu=launch.skip_menu, autostart=launch.autostart)
    return int(app.run() or ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
