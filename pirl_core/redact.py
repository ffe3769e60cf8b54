"""Secrets stay in memory: what every writer and printer applies before a value leaves the process.

Which fields are secret is marked once, on the config dataclass (``config.secret_field``, today
``learner.auth_token``); everything here derives from that mark, so a future secret field is
covered by marking it. Where a run's values go and what happens to a secret there:

* saved configs (each checkpoint's ``train_config.json``), telemetry ``event=run`` records (what W&B
  shows as the run's config) -> :func:`redact_config`: a set secret becomes ``<redacted>``, an unset
  one stays ``""`` (whether a token was used is worth knowing, the token is not);
* echoed command lines (launcher, console panes and logs) -> :func:`redact_argv`;
* error messages -> ``ConfigError`` hides the value of a secret field (:func:`is_secret_field`), and
  telemetry masks the run's secret values in every string it writes or prints (:func:`mask`).

A config rebuilt from a saved one (``config.config_from_dict``) gets ``""`` back for a redacted field,
so a resumed run asks for the token again (flag or file form) instead of reading it from disk.
The mark, ``REDACTED`` and :func:`secret_fields` live in ``pirl_core.config`` (which redacts its own
errors with them, ``config.config_error``); this module builds on them and nothing below imports it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pirl_core.config import REDACTED, RunConfig, secret_fields

__all__ = ["REDACTED", "secret_fields"]


def is_secret_field(name: str) -> bool:
    return name.removeprefix("--") in secret_fields()


def _nested(data: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    *path, leaf = dotted.split(".")
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def redact_config(cfg: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the config dict (``RunConfig.to_dict()`` shape) with each set secret replaced by
    ``<redacted>``; what gets saved, logged and uploaded."""
    data = copy.deepcopy(dict(cfg) if isinstance(cfg, Mapping) else cfg.to_dict())
    for name in secret_fields():
        node, leaf = _nested(data, name)
        if node is not None and node.get(leaf):
            node[leaf] = REDACTED
    return data


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``--learner.auth_token=S`` -> ``--learner.auth_token=<redacted>``; ``--learner.auth_token S``
    (a value in the next word) likewise. For echoing a command line, never for running it."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        key, eq, _value = arg.partition("=")
        if key.startswith("--") and is_secret_field(key):
            if eq:
                out.append(f"{key}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def argv_secrets(argv: Iterable[str]) -> list[str]:
    """The secret values typed on a command line (to mask them in what it prints)."""
    values, args = [], list(argv)
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if key.startswith("--") and is_secret_field(key):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            values.append(value.strip().strip("'\""))
    return [v for v in values if v]


def secret_values(cfg: RunConfig) -> list[str]:
    """This run's secret values: each set secret field, and the token file's contents."""
    values = []
    flat = cfg.to_dict()
    for name in secret_fields():
        node, leaf = _nested(flat, name)
        if node is not None and node.get(leaf):
            values.append(str(node[leaf]))
    token_file = cfg.learner.auth_token_file
    if token_file:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            values.append(Path(token_file).read_text(encoding="utf-8").strip())
    return [v for v in values if v]


def mask(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value replaced by ``<redacted>``."""
    for value in sorted(set(values), key=len, reverse=True):
        if value:
            text = text.replace(value, REDACTED)
    return text


def mask_record(record: Any, values: Sequence[str]) -> Any:
    """A JSON-able value with every string masked (dict keys included)."""
    if not values:
        return record
    if isinstance(record, str):
        return mask(record, values)
    if isinstance(record, dict):
        return {mask(str(k), values): mask_record(v, values) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [mask_record(v, values) for v in record]
    return record
