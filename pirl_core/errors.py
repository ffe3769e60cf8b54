"""Exit codes and the error types that carry them.

Every failure a user can cause maps to one documented exit code (see DESIGN.md) and one
actionable line. Entry points catch :class:`PirlError` once, print ``err.line()`` first and
exit with ``err.exit_code``; nothing else in the code base calls ``sys.exit`` for errors.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    RESUME_MISMATCH = 3
    CHECKPOINT_UNREADABLE = 4
    TRANSPORT = 5
    INTERRUPTED = 130


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
    """A profile or override is wrong: names the field, the value found and what is allowed."""

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
