"""The one argument-parser base of every pirl command (``python -m pirl_core.<...>``).

Why: argparse prints its own usage and exits 2 on a bad flag; pirl commands say what to do
(``(see --help)``) and exit with ``ExitCode.USAGE``, the same code a bad config value gets, so a
script can tell "fix the command line" from every other failure. Commands whose errors must stay
one line pass ``usage_on_error=False``; a command that reports usage errors as a ``PirlError``
passes ``on_error``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from pirl_core.errors import ExitCode


class UsageParser(argparse.ArgumentParser):
    def __init__(
        self,
        *args: Any,
        usage_on_error: bool = True,
        on_error: Callable[[str], NoReturn] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.usage_on_error = usage_on_error
        self.on_error = on_error

    def error(self, message: str) -> NoReturn:  # argparse exits 2 too, but say what to do
        if self.on_error is not None:
            self.on_error(message)
        if self.usage_on_error:
            self.print_usage(sys.stderr)
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)
