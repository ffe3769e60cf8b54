"""Config values as command-line text: the inverse of ``config.parse_override``.

Why its own module: the resume validator's "how to fix" column, the launcher's child command
lines and the console's override form all turn a value back into ``--key=value`` text, and none
of them should import the checkpoint code for that.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

ABSENT = "(absent)"  # a field one side of a comparison does not have


def _needs_quotes(text: str) -> bool:
    """Overrides parse as TOML and fall back to the raw text (config.parse_override): a string
    may stay bare exactly when TOML would not read it as something else (``4``, ``true``, ``[0]``)."""
    if text == "" or text != text.strip():
        return True
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def value_text(value: Any) -> str:
    """A value as it is typed in a dotted override (TOML)."""
    if value is ABSENT:
        return ABSENT
    if isinstance(value, str):
        return json.dumps(value) if _needs_quotes(value) else value
    return json.dumps(value, separators=(",", ":"))


def flag(name: str, value: Any) -> str:
    """The command-line flag that sets ``name`` back to ``value``, shell-quoted where needed."""
    if name == "profile":
        return f"--profile {shlex.quote(str(value))}"
    return shlex.quote(f"--{name}={value_text(value)}")
