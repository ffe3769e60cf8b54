"""``python -m pirl_core.launch``: the headless smoke runner behind ``make smoke``.

It runs exactly the two-terminal commands (learner, then the profile's actors) as child
processes, prefixes their output, and exits with the learner's code (or the first failure).
Without ``--output_dir`` or ``--resume`` it gives each launch its own run directory under the
profile's ``output_dir`` (``<output_dir>/<YYYYmmdd-HHMMSS>``), so running ``make smoke`` twice
never collides with, or overwrites, an earlier run.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from pirl_core.cli import parse_args
from pirl_core.errors import ExitCode, PirlError

STOP_TIMEOUT_S = 20.0


def child_commands(
    argv: list[str], n_actors: int, python: str = sys.executable
) -> list[tuple[str, list[str]]]:
    learner = [python, "-m", "pirl_core.learner", *argv]
    actor_argv = [a for a in argv if a != "--resume" and not a.startswith("--resume-from")]
    actors = [
        (f"actor-{i}", [python, "-m", "pirl_core.actor", *actor_argv, f"--actor-id={i}"])
        for i in range(n_actors)
    ]
    return [("learner", learner), *actors]


def with_run_dir(argv: list[str], output_dir: str) -> list[str]:
    explicit = any(a.startswith("--output_dir=") for a in argv)
    resuming = any(a == "--resume" or a.startswith("--resume-from") for a in argv)
    if explicit or resuming:
        return argv
    return [*argv, f"--output_dir={Path(output_dir) / time.strftime('%Y%m%d-%H%M%S')}"]


def _signal_all(procs: dict[str, subprocess.Popen], sig: int) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)


def _stream(procs: dict[str, subprocess.Popen]) -> dict[str, int]:
    """Relay output until every child has exited; on the first failure stop the others
    (SIGINT to each process group, SIGKILL after STOP_TIMEOUT_S)."""
    selector = selectors.DefaultSelector()
    for name, proc in procs.items():
        selector.register(proc.stdout, selectors.EVENT_READ, name)
    codes: dict[str, int] = {}
    kill_at: float | None = None
    while selector.get_map() or len(codes) < len(procs):
        for key, _ in selector.select(timeout=0.2) if selector.get_map() else []:
            line = key.fileobj.readline()
            if line:
                sys.stdout.write(f"{key.data:>8} | {line.decode(errors='replace')}")
                sys.stdout.flush()
            else:
                selector.unregister(key.fileobj)
        if not selector.get_map():
            time.sleep(0.05)
        for name, proc in procs.items():
            if name in codes or proc.poll() is None:
                continue
            codes[name] = proc.returncode
            if proc.returncode != 0 and kill_at is None:
                print(f"[launch] {name} exited {proc.returncode}; stopping the others", flush=True)
                _signal_all(procs, signal.SIGINT)
                kill_at = time.monotonic() + STOP_TIMEOUT_S
        if kill_at is not None and time.monotonic() > kill_at:
            _signal_all(procs, signal.SIGKILL)
    return codes


def run(argv: list[str]) -> int:
    try:
        args = parse_args("python -m pirl_core.launch", argv)
    except PirlError as err:
        print(err.line(), file=sys.stderr)
        return err.exit_code
    argv = with_run_dir(argv, args.config.output_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("MUJOCO_GL", "egl")
    procs: dict[str, subprocess.Popen] = {}
    for name, cmd in child_commands(argv, args.config.actor.n_actors):
        print(f"[launch] {name}: {' '.join(cmd)}", flush=True)
        procs[name] = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        codes = _stream(procs)
    except KeyboardInterrupt:
        _signal_all(procs, signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return ExitCode.INTERRUPTED
    failures = [c for c in codes.values() if c != 0]
    code = codes["learner"] if codes["learner"] != 0 else (failures[0] if failures else 0)
    print(f"[launch] finished: {', '.join(f'{n}={c}' for n, c in codes.items())}", flush=True)
    return code


def main() -> None:
    raise SystemExit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
