"""``python -m pirl_core.checkpoints``: list an output dir's checkpoints, or validate one.

::

    python -m pirl_core.checkpoints list OUTPUT_DIR [--json]
    python -m pirl_core.checkpoints validate CHECKPOINT [--profile NAME] [--section.key=value ...] [--json]
    python -m pirl_core.checkpoints export CHECKPOINT OUT [--eval-info eval_info.json]

``validate`` runs the learner's own resume check (config identity, field by field) without loading
tensors, and warns about absolute paths in ``pretrained_model/`` (the checkpoint depends on where it
was written). CHECKPOINT is a checkpoint dir, ``.../checkpoints/last``, or an output dir (its
``last``). ``--profile`` defaults to the profile the checkpoint was trained with. ``export`` writes
the self-contained form of a checkpoint written before pirl made them so (tokenizer inside, image
size in config.json, model card; ``pirl_core.checkpoints.portable``); CHECKPOINT may also be a bare
``pretrained_model`` directory (an SFT checkpoint). Exit codes: 0 resumable / exported, 3 a fatal
identity mismatch, 4 unreadable, 2 bad usage (or OUT not empty: nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pirl_core.argparse_base import UsageParser
from pirl_core.checkpoints import catalog, layout
from pirl_core.checkpoints.portable import PortabilityError, absolute_path_warnings, export
from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode, PirlError
from pirl_core.process_env import configure_process


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(prog="python -m pirl_core.checkpoints", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    p_list = sub.add_parser(
        "list", help="checkpoints of an output dir: step, time, size, complete?, last, metrics"
    )
    p_list.add_argument("output_dir")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_val = sub.add_parser("validate", help="would CHECKPOINT resume under this profile and overrides?")
    p_val.add_argument("checkpoint")
    p_val.add_argument("--profile", default=None, help="profile name or .toml (default: the checkpoint's)")
    p_val.add_argument("--json", action="store_true", help="machine-readable output")
    p_exp = sub.add_parser("export", help="write the self-contained form of CHECKPOINT to OUT")
    p_exp.add_argument("checkpoint", help="checkpoint dir, output dir (its last) or pretrained_model dir")
    p_exp.add_argument("out", help="directory to create (must not exist or be empty)")
    p_exp.add_argument(
        "--eval-info", default=None, help="an eval_info.json whose success goes into the model card"
    )
    return parser


def _emit_json(data: dict[str, Any] | list[Any]) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_list(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir():
        raise ConfigError("OUTPUT_DIR", str(output_dir), "an existing directory")
    entries = catalog.list_checkpoints(output_dir)
    if args.json:
        last = catalog.last_link_status(output_dir)
        _emit_json(
            {
                "output_dir": str(output_dir),
                "checkpoints": [e.to_dict() for e in entries],
                "last": None if last is None else last.to_dict(),  # {"target", "dangling"}
            }
        )
    else:
        print(catalog.format_listing(output_dir, entries))
    return ExitCode.OK


def cmd_validate(args: argparse.Namespace, overrides: list[str]) -> int:
    info = catalog.read_checkpoint(args.checkpoint)
    profile = args.profile or str(info.train_config.get("profile") or "smoke")
    cfg = load_config(profile, overrides)
    report = catalog.validate(info.path, cfg)
    code = ExitCode.OK if report.ok else ExitCode.RESUME_MISMATCH
    warnings = [
        f"warning: absolute path in pretrained_model/{item} (not portable: "
        f"`python -m pirl_core.checkpoints export {info.path} OUT` writes a self-contained copy)"
        for item in absolute_path_warnings(info.path / layout.PRETRAINED_MODEL_DIR)
    ]
    if args.json:
        _emit_json({**report.to_dict(), "exit_code": int(code), "profile": profile, "warnings": warnings})
    else:
        print(report.summary())
        if report.rows:
            print(report.format_table())
    for line in warnings:
        print(line, file=sys.stderr)
    return code


def cmd_export(args: argparse.Namespace) -> int:
    src = catalog.resolve_checkpoint(args.checkpoint)
    if src.is_symlink():
        src = src.resolve()
    if (src / layout.TRAINING_STATE_DIR).exists():
        catalog.read_checkpoint(src)  # exit 4 with the reason when it is incomplete
    elif not (src / layout.MODEL_CONFIG).is_file():
        raise ConfigError("CHECKPOINT", str(src), "a checkpoint dir, an output dir or a pretrained_model dir")
    eval_info = None
    if args.eval_info is not None:
        try:
            eval_info = json.loads(Path(args.eval_info).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError("--eval-info", args.eval_info, "a readable eval_info.json") from exc
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("OUT", str(out), "a new or empty directory", hint="nothing was written")
    try:
        out = export(src, out, eval_info)
    except PortabilityError as exc:
        raise ConfigError("CHECKPOINT", str(src), "an exportable checkpoint", hint=str(exc)) from None
    print(f"exported {src} -> {out} (self-contained: tokenizer inside, image size in config.json, README.md)")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for item in rest:
        if args.command != "validate" or not item.startswith("--") or "=" not in item:
            parser.error(
                f"unrecognised argument {item!r}; overrides look like --section.key=value (validate only)"
            )
        overrides.append(item[2:])
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_validate(args, overrides)
    except PirlError as err:
        if getattr(args, "json", False):
            _emit_json({"ok": False, "exit_code": int(err.exit_code), "error": err.message})
        print(err.line(), file=sys.stderr)
        if err.detail:
            print(err.detail, file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    configure_process()
    raise SystemExit(int(main()))
