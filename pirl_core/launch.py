"""``python -m pirl_core.launch``: the headless smoke runner behind ``make smoke``.

It runs exactly the two-terminal commands (learner, then the profile's actors) as child
processes, prefixes their output, and exits with the learner's code (or the first failure).
The actors start once the learner prints its ready line (it listens on its port): an actor never
exists before its learner does, so it can neither reach another run's learner that holds the port
(it would be refused by run id anyway, ``pirl_core.runid``) nor wait for a learner that refused to
start. Echoed command lines show secrets as ``<redacted>`` (``pirl_core.redact``).

Why the command lines are built here, from a parsed :class:`~pirl_core.cli.CliArgs` and never by
filtering argv strings: ``--resume-from PATH`` is two words, and a string filter that drops the
flag hands the bare PATH to the actor. :func:`child_commands` is the one place that knows which
flag goes to which role; the console calls it too (``pirl_console.commands``).

Where a run writes (:func:`choose_run_dir`, shared with the console): an explicit
``--output_dir`` is used as given; a new run gets ``<output_dir>/<YYYYmmdd-HHMMSS>`` so two
launches never collide; ``--resume`` continues the newest run under the profile's output dir
that has checkpoints; ``--resume-from CKPT`` continues the run that checkpoint belongs to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pirl_core.checkpoints import layout
from pirl_core.cli import CliArgs, parse_args
from pirl_core.errors import ConfigError, ExitCode, PirlError
from pirl_core.process_env import configure_process
from pirl_core.quoting import value_text
from pirl_core.redact import argv_secrets, mask, redact_argv
from pirl_core.runid import run_id

STOP_TIMEOUT_S = 20.0
# What the learner prints once its gRPC server listens (its "ready" telemetry event): launch and
# the console start the actors only then (pirl_console.commands uses the same marker).
LEARNER_READY_MARKER = "[learner] ready"

Role = Literal["learner", "actor", "eval"]  # "eval": the console's evaluation pane


@dataclass(frozen=True)
class ChildCommand:
    """One child of a run: its name (``learner``, ``actor-N``), role and full argv."""

    name: str
    role: Role
    argv: tuple[str, ...]


def learner_flags(args: CliArgs) -> list[str]:
    flags = ["--profile", args.config.profile]
    if args.resume_from is not None:
        flags += ["--resume-from", args.resume_from]
    elif args.resume:
        flags.append("--resume")
    flags += [f"--{item}" for item in args.overrides]
    if args.mismatch_json is not None:
        flags += ["--mismatch-json", args.mismatch_json]
    return flags


def actor_flags(args: CliArgs, actor_id: int) -> list[str]:
    # No resume flag: a resumed learner pushes the restored parameters and version.
    return [
        "--profile",
        args.config.profile,
        "--actor-id",
        str(actor_id),
        *(f"--{o}" for o in args.overrides),
    ]


def learner_argv(args: CliArgs, nproc: int, python: str = sys.executable) -> tuple[str, ...]:
    """``python -m pirl_core.learner ...``, or under torchrun for ``learner.nproc`` > 1 ranks
    (pirl_core.distributed), through ``pirl_core.torchrun`` so the learner's exit code (3, 130, 7)
    survives torchrun. ``--standalone`` gives each run its own rendezvous on a free port, so two
    learners on one host never collide; no restarts: a dead rank stops the run (exit 7)."""
    if nproc <= 1:
        return (python, "-m", "pirl_core.learner", *learner_flags(args))
    torchrun = (python, "-m", "pirl_core.torchrun", "--standalone", f"--nproc-per-node={nproc}")
    return (*torchrun, "--max-restarts=0", "-m", "pirl_core.learner", *learner_flags(args))


def child_commands(args: CliArgs, python: str = sys.executable) -> list[ChildCommand]:
    """The learner and ``actor.n_actors`` actors, exactly as a user would type them."""
    learner = ChildCommand("learner", "learner", learner_argv(args, args.config.learner.nproc, python))
    actors = [
        ChildCommand(f"actor-{i}", "actor", (python, "-m", "pirl_core.actor", *actor_flags(args, i)))
        for i in range(args.config.actor.n_actors)
    ]
    return [learner, *actors]


# --------------------------------------------------------------------------- run directories


def _last_checkpoint_time(run_dir: Path) -> float:
    root = layout.checkpoints_root(run_dir)
    return max((p.lstat().st_mtime for p in root.iterdir()), default=0.0)


def newest_run_dir(base: Path | str) -> Path | None:
    """The most recently checkpointed run: ``base`` itself or one of its subdirectories."""
    base = Path(base)
    candidates = [base, *(sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else [])]
    runs = [c for c in candidates if layout.has_checkpoints(c)]
    return max(runs, key=_last_checkpoint_time, default=None)


def choose_run_dir(args: CliArgs, now: float | None = None) -> Path | None:
    """The output dir the children should use, or None to keep the one the config names.

    Raises ConfigError (exit 2) for ``--resume`` when no run under the profile's output dir has
    checkpoints: there is nothing to continue, and starting a fresh run instead would surprise.
    """
    if args.has_override("output_dir"):
        return None
    base = args.config.output_path
    if args.resume_from is not None:
        target = Path(args.resume_from)
        if target.parent.name == layout.CHECKPOINTS_DIR:
            return layout.checkpoint_output_dir(target)  # continue the run it belongs to
        if layout.checkpoints_root(target).is_dir():
            return target  # an output dir: the learner resumes its newest checkpoint
        return None  # the learner reports what is wrong with the path
    if args.resume:
        found = newest_run_dir(base)
        if found is None:
            raise ConfigError(
                "--resume",
                str(base),
                "a run directory with checkpoints under it",
                hint="nothing to resume: start a run first, or pass --resume-from PATH",
            )
        return found
    stamp = base / time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    fresh, n = stamp, 1
    while fresh.exists():  # two launches in one second
        n += 1
        fresh = stamp.with_name(f"{stamp.name}-{n}")
    return fresh


def with_output_dir(args: CliArgs, output_dir: Path | None) -> CliArgs:
    """``args`` with ``--output_dir=...`` set (a no-op for None)."""
    if output_dir is None:
        return args
    return dataclasses.replace(
        args,
        config=dataclasses.replace(args.config, output_dir=str(output_dir)),
        overrides=[*args.overrides, f"output_dir={value_text(str(output_dir))}"],
    )


# --------------------------------------------------------------------------- running


def _signal_all(procs: dict[str, subprocess.Popen], sig: int) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)


def _spawn(child: ChildCommand, env: dict[str, str]) -> subprocess.Popen:
    # echoed with secrets redacted: the command line itself still carries them to the child
    print(f"[launch] {child.name}: {' '.join(redact_argv(child.argv))}", flush=True)
    return subprocess.Popen(
        child.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


class PipeLines:
    """Whole lines from the children's pipes, as soon as they arrive.

    Why not ``readline()`` on each ``Popen.stdout`` once ``select`` says it is readable: that
    buffered reader takes everything in the pipe, returns the first line and keeps the rest in
    Python's buffer, which ``select`` cannot see. A line written together with an earlier one (the
    learner's ready line right after its ``resumed`` line, a ``pirl-ckpt-event`` right after a step
    line; the more likely the busier the machine) then waited until the child wrote again: the
    actors started 30 s late (the learner's next "waiting" line), and a reader acting on a
    learner parked at a checkpoint event saw it only after the park ended. Here every read takes
    what the pipe holds (``os.read``, unbuffered) and hands back each complete line; a partial last
    line waits for its end or for EOF."""

    def __init__(self) -> None:
        self._partial: dict[str, bytes] = {}

    def read(self, name: str, fd: int) -> tuple[list[bytes], bool]:
        """Complete lines now readable from ``fd`` (one ``os.read``; never blocks after ``select``),
        and whether the pipe ended (then any unterminated last line is returned too)."""
        chunk = os.read(fd, 1 << 16)
        data = self._partial.pop(name, b"") + chunk
        if not chunk:
            return ([data] if data else []), True
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[name] = rest
        return [line + b"\n" for line in lines], False


def _stream(
    procs: dict[str, subprocess.Popen], waiting: list[ChildCommand], env: dict[str, str]
) -> dict[str, int]:
    """Relay output until every child has exited; start the ``waiting`` actors once the learner
    prints its ready line (it listens); on the first failure stop the others (SIGINT to each
    process group, SIGKILL after STOP_TIMEOUT_S). A learner that exits before it is ready leaves
    the actors unstarted: there is nothing for them to join."""
    selector = selectors.DefaultSelector()
    for name, proc in procs.items():
        selector.register(proc.stdout, selectors.EVENT_READ, name)
    codes: dict[str, int] = {}
    kill_at: float | None = None
    grace_until: float | None = None  # an actor failed: the learner may be ending on its own

    def stop_all(name: str, code: int) -> float:
        print(f"[launch] {name} exited {code}; stopping the others", flush=True)
        _signal_all(procs, signal.SIGINT)
        return time.monotonic() + STOP_TIMEOUT_S

    pending = PipeLines()
    while selector.get_map() or len(codes) < len(procs):
        for key, _ in selector.select(timeout=0.2) if selector.get_map() else []:
            lines, ended = pending.read(key.data, key.fileobj.fileno())
            for line in lines:
                text = line.decode(errors="replace")
                sys.stdout.write(f"{key.data:>8} | {text}")
                sys.stdout.flush()
                if key.data == "learner" and waiting and LEARNER_READY_MARKER in text and kill_at is None:
                    for child in waiting:
                        procs[child.name] = _spawn(child, env)
                        selector.register(procs[child.name].stdout, selectors.EVENT_READ, child.name)
                    waiting = []
            if ended:
                selector.unregister(key.fileobj)
        if not selector.get_map():
            time.sleep(0.05)
        for name, proc in procs.items():
            if name in codes or proc.poll() is None:
                continue
            codes[name] = proc.returncode
            if proc.returncode == ExitCode.OK or kill_at is not None:
                continue
            if name != "learner" and "learner" in procs and "learner" not in codes:
                # An actor often fails *because* the learner failed (it was told so and exits at
                # once, while the learner is still writing its error): give the learner a moment
                # to end on its own, so its exit code, the cause, is the one launch reports.
                if grace_until is None:
                    grace_until = time.monotonic() + ACTOR_FAILURE_GRACE_S
                    failed_first = (name, proc.returncode)
                continue
            kill_at = stop_all(name, proc.returncode)
        if kill_at is None and grace_until is not None and time.monotonic() > grace_until:
            kill_at = stop_all(*failed_first)
        if kill_at is not None and time.monotonic() > kill_at:
            _signal_all(procs, signal.SIGKILL)
    if waiting:
        print(
            f"[launch] the learner exited before it listened; {', '.join(c.name for c in waiting)} "
            "not started",
            flush=True,
        )
    return codes


# Seconds launch waits, after an actor failed, for the learner to end on its own before stopping it.
ACTOR_FAILURE_GRACE_S = 5.0

# How a learner ends that launch stopped because an actor failed first (SIGINT, or SIGKILL after
# STOP_TIMEOUT_S; a signal that lands while it is already exiting kills it outright).
_STOPPED_BY_LAUNCH = {int(ExitCode.INTERRUPTED), -int(signal.SIGINT), -int(signal.SIGKILL)}


def outcome(codes: dict[str, int]) -> int:
    """Launch's exit code: the learner's, unless launch itself stopped the learner after an actor
    failed (then that actor's, the cause); 0 when every child succeeded. ``codes`` is in exit order."""
    failures = [name for name, c in codes.items() if c != ExitCode.OK]
    if not failures:
        return ExitCode.OK
    learner = codes.get("learner", ExitCode.OK)
    if learner == ExitCode.OK or (failures[0] != "learner" and learner in _STOPPED_BY_LAUNCH):
        return codes[failures[0]]
    return learner


def run(argv: list[str]) -> int:
    secrets = argv_secrets(argv)
    try:
        args = parse_args("python -m pirl_core.launch", argv)
        run_dir = choose_run_dir(args)
    except PirlError as err:
        print(mask(err.line(), secrets), file=sys.stderr)
        return err.exit_code
    if run_dir is not None and args.resume_from is not None:
        print(f"[launch] --resume-from: continuing run {run_dir}", flush=True)
    elif run_dir is not None and args.resume:
        base = args.config.output_dir
        print(
            f"[launch] --resume: continuing {run_dir}, the newest run with checkpoints under {base}",
            flush=True,
        )
    args = with_output_dir(args, run_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    learner, *actors = child_commands(args)
    print(
        f"[launch] run {run_id(args.config)}: the actors start once the learner listens",
        flush=True,
    )
    procs = {learner.name: _spawn(learner, env)}
    try:
        codes = _stream(procs, actors, env)
    except KeyboardInterrupt:
        _signal_all(procs, signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return ExitCode.INTERRUPTED
    code = outcome(codes)
    print(f"[launch] finished: {', '.join(f'{n}={c}' for n, c in codes.items())}", flush=True)
    return code


def main() -> None:
    configure_process()  # the children inherit the decision
    raise SystemExit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
