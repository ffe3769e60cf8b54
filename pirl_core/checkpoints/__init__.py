"""Checkpoints and resume you can trust (DESIGN.md "Checkpoints", "Resume").

The learner's API is three calls, all in :mod:`pirl_core.checkpoints.resume`:

* :func:`prepare_run` ``(cfg, resume, resume_from) -> ResumePlan | None`` — before anything is written;
* :func:`restore` ``(plan, trainer) -> TrainingState(step, version, counters)``;
* :func:`save` ``(cfg, step, trainer, counters) -> Path``.

Standalone: ``python -m pirl_core.checkpoints list OUTPUT_DIR`` and
``python -m pirl_core.checkpoints validate CHECKPOINT --profile ... [overrides]``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pirl_core.checkpoints.identity import IdentityMismatch, IdentityReport, Row
    from pirl_core.checkpoints.layout import last_pointer
    from pirl_core.checkpoints.resume import (
        ResumePlan,
        TrainingState,
        apply_retention,
        clean_leftovers,
        prepare_run,
        restore,
        save,
    )

# Lazy exports: listing and validating (the console, ``python -m pirl_core.checkpoints``) read JSON
# and safetensors headers only and must not pay for importing torch.
_EXPORTS = {
    "IdentityMismatch": "identity",
    "IdentityReport": "identity",
    "Row": "identity",
    "last_pointer": "layout",
    "ResumePlan": "resume",
    "TrainingState": "resume",
    "apply_retention": "resume",
    "clean_leftovers": "resume",
    "prepare_run": "resume",
    "restore": "resume",
    "save": "resume",
}

__all__ = [
    "IdentityMismatch",
    "IdentityReport",
    "ResumePlan",
    "Row",
    "TrainingState",
    "apply_retention",
    "clean_leftovers",
    "last_pointer",
    "prepare_run",
    "restore",
    "save",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
