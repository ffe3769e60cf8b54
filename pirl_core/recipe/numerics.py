"""Finite-number guards: a NaN or inf never reaches an optimizer step, a push or a checkpoint.

One NaN in a loss spreads to every parameter in one AdamW step, and a checkpoint of that state
looks like any other on disk. The trainer checks each loss and gradient norm before it steps and
the parameters after; the checkpoint writer checks every tensor it is about to save.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from pirl_core.errors import DivergedError

CAUSES = (
    "likely causes: a learning rate or sigma bound far too large or small, or NaN/inf rewards or "
    "observations from the environment; fix the setting and --resume from the last checkpoint"
)


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first tensor holding a NaN or inf (None when all are finite).

    One reduction per tensor on its own device and one transfer per device: after every optimizer
    step of a GPU policy with hundreds of tensors, a sync per tensor would cost more than the check.
    """
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in named:
        if t.is_floating_point() and t.numel():
            by_device.setdefault(t.device, []).append((name, t))
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(t).all() for _, t in items]).cpu()
        if not bool(flags.all()):
            return items[int((~flags).nonzero()[0])][0]
    return None


def require_finite_value(what: str, value: float, where: str) -> None:
    if not math.isfinite(value):
        raise DivergedError(f"{what} is {value} ({where}); the update was stopped before its step; {CAUSES}")


def require_finite_tensors(what: str, named: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    name = first_nonfinite(named)
    if name is not None:
        raise DivergedError(f"{what} {name!r} holds NaN/inf ({where}); {CAUSES}")
