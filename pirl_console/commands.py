"""The child processes the console starts: exactly the headless entry points.

Why injectable: the run controller only needs "a command line, an environment and a name" per
child. Production uses :class:`HeadlessCommands`: ``pirl_core.launch.child_commands``, the same
function ``make smoke`` runs, applied to the request's parsed arguments; tests and screenshots
pass a builder that returns small stand-in scripts instead, and everything else (supervision,
readiness, stop escalation, telemetry) runs unchanged.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pirl_core.cli import CliArgs
from pirl_core.launch import LEARNER_READY_MARKER, Role, child_commands
from pirl_core.redact import redact_argv
from pirl_core.source import REPO_ROOT


@dataclass(frozen=True)
class ChildSpec:
    """One child: its pane name, argv, environment and working directory."""

    name: str
    role: Role
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    # A stdout substring that means "ready" (the learner's gRPC server is up).
    ready_marker: str | None = None

    def display(self) -> str:
        """The command as a user would type it (what the pane and the log show), secrets redacted."""
        return shlex.join(redact_argv(self.argv))

    @classmethod
    def learner(cls, argv: tuple[str, ...], env: Mapping[str, str], cwd: str) -> ChildSpec:
        """The learner pane: actors wait for its ready line."""
        return cls("learner", "learner", argv, env, cwd, ready_marker=LEARNER_READY_MARKER)

    @classmethod
    def actor(cls, actor_id: int, argv: tuple[str, ...], env: Mapping[str, str], cwd: str) -> ChildSpec:
        return cls(f"actor-{actor_id}", "actor", argv, env, cwd)


class CommandBuilder(Protocol):
    def specs(self, args: CliArgs) -> list[ChildSpec]:
        """The learner first, then ``args.config.actor.n_actors`` actors."""
        ...


def child_env(
    base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Unbuffered Python (children think they write to a pipe and would buffer otherwise) and the
    checkout importable. ``MUJOCO_GL`` passes through as ``base`` has it: each child is an
    entrypoint and decides it itself (:func:`pirl_core.process_env.configure_process`)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    env.update(extra or {})
    return env


@dataclass
class HeadlessCommands:
    """``<python> -m pirl_core.learner|actor`` with the request's flags, run from ``cwd``."""

    python: str = sys.executable
    cwd: str = field(default_factory=os.getcwd)
    extra_env: dict[str, str] = field(default_factory=dict)

    def specs(self, args: CliArgs) -> list[ChildSpec]:
        env = child_env(extra=self.extra_env)
        marker = {"learner": LEARNER_READY_MARKER, "actor": None}
        return [
            ChildSpec(cmd.name, cmd.role, cmd.argv, env, self.cwd, ready_marker=marker[cmd.role])
            for cmd in child_commands(args, self.python)
        ]
