"""Which numbers of a telemetry record a logging backend plots, and under which names.

Why one function for every backend: W&B, TensorBoard and ``pirl_core.report`` must show the same
series under the same names as the JSONL, so the mapping lives here once. Names are
``<source>/<field>`` (``learner/policy_loss``, ``actor-0/success_rate``); ``kind=eval`` records
become ``eval/<field>``; a ``checkpoint`` event becomes ``<source>/checkpoint_step``. The step is
the record's ``step`` (learner: update; actor: policy version).
"""

from __future__ import annotations

import math
from typing import Any

# Record keys that are bookkeeping, not series.
RESERVED = frozenset({"ts", "source", "kind", "step", "event", "message"})
PLOTTED_EVENTS = frozenset({"checkpoint"})


def number(value: Any) -> float | None:
    """A plottable float, or None. Telemetry writes NaN/inf as strings (JSON has neither)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return None


def prefix_of(record: dict[str, Any]) -> str:
    return "eval" if record.get("kind") == "eval" else str(record.get("source", "unknown"))


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """``{"<prefix>/<field>": value}`` for the record's numeric fields ({} when none apply)."""
    kind = record.get("kind")
    prefix = prefix_of(record)
    if kind in ("metrics", "eval"):
        out = {}
        for key, value in record.items():
            if key in RESERVED:
                continue
            x = number(value)
            if x is not None:
                out[f"{prefix}/{key}"] = x
        return out
    if kind == "event" and record.get("event") in PLOTTED_EVENTS:
        step = number(record.get("step"))
        return {} if step is None else {f"{prefix}/{record['event']}_step": step}
    return {}


def finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if math.isfinite(v)}
