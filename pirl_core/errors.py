"""Exit codes and the error types that carry them.

Every failure a user can cause maps to one documented exit code (see docs/design.md, "Exit
codes") and one actionable line. Entry points catch :class:`PirlError` once, print
``err.line()`` first and exit with ``err.exit_code``; nothing else in the code base calls
``sys.exit`` for errors. A stop by signal is not an error: it is an :class:`Interrupted`
(a ``KeyboardInterrupt``) carrying 130 (SIGINT, Ctrl-C) or 143 (SIGTERM, what schedulers send).
"""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # bad config/flags, output dir taken (checkpoints of another run, or another learner's lock)
    RESUME_MISMATCH = 3
    CHECKPOINT_UNREADABLE = 4
    # Learner and actor cannot work together: transport failures and contract violations, among
    # them an update whose ratio check shows the actor sampled something else than the learner scores.
    TRANSPORT = 5
    # A loss, gradient norm or parameter became NaN/inf: the update was not applied or not saved.
    DIVERGED = 6
    # A learner rank under torchrun died or stopped answering (pirl_core.distributed): the line names
    # the rank; torchrun itself exits 1 and reports every rank's exit in its failure summary.
    RANK_FAILED = 7
    # The output filesystem refused a write (full, read-only, no permission): nothing partial is left,
    # checkpoints/last still points to the last complete checkpoint; fix the disk, then --resume.
    STORAGE = 8
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM


class PirlError(Exception):
    """Base error: a message a researcher can act on, plus the process exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def line(self) -> str:
        return f"error: {self.message}"


class ConfigError(PirlError):
    """A profile or override is wrong: names the field, the value found and what is allowed.

    The value is printed and logged as given: a secret field's value is hidden by whoever raises
    (``pirl_core.config.config_error``, the only place that knows which fields are secret)."""

    exit_code = ExitCode.USAGE

    def __init__(self, field: str, value: object, expected: str, *, hint: str = "") -> None:
        message = f"{field}: got {value!r}, expected {expected}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.field = field
        self.value = value
        self.expected = expected


class ResumeMismatchError(PirlError):
    """The checkpoint's run identity differs from the current one in a fatal field."""

    exit_code = ExitCode.RESUME_MISMATCH


class CheckpointUnreadableError(PirlError):
    """A checkpoint is missing files, truncated, or inconsistent."""

    exit_code = ExitCode.CHECKPOINT_UNREADABLE


class TransportError(PirlError):
    """The learner and actor could not talk (port taken, peer gone, bad payload)."""

    exit_code = ExitCode.TRANSPORT


class StorageError(PirlError):
    """A write to the output filesystem failed (ENOSPC, EROFS, EACCES, ...): see pirl_core/storage.py."""

    exit_code = ExitCode.STORAGE


class RatioCheckError(PirlError):
    """The learner's re-scoring of a fresh batch disagrees with the log-probs the actor recorded.

    Before the first optimizer step of an on-policy update the ratio must be 1 up to float error;
    anything else means the learner would train on a policy it does not have. Same exit as a
    transport failure: both say "this learner and this actor cannot work together"."""

    exit_code = ExitCode.TRANSPORT


class DivergedError(PirlError):
    """A loss, gradient norm or parameter is NaN/inf; the update it came from is never saved."""

    exit_code = ExitCode.DIVERGED


class LearnerStoppedError(PirlError):
    """The actor's side of a learner that stopped before finishing (interrupted or terminated):
    the actor exits with the learner's code, so a script that checks both sees the same outcome."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``exit_code`` is 128 + the signal number (130 or 143)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED

    @property
    def reason(self) -> str:
        """The word the learner sends its actors in ``finish(reason)``."""
        return "terminated" if self.exit_code == ExitCode.TERMINATED else "interrupted"


def interrupted_code(exc: KeyboardInterrupt) -> ExitCode:
    """130 for a plain Ctrl-C, the signal's code for an :class:`Interrupted`."""
    return getattr(exc, "exit_code", ExitCode.INTERRUPTED)
