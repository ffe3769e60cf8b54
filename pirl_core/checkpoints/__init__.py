"""Checkpoints and resume you can trust (DESIGN.md "Checkpoints", "Resume").

The learner's API is three calls, all in :mod:`pirl_core.checkpoints.resume`:

* :func:`prepare_run` ``(cfg, resume, resume_from) -> ResumePlan | None`` — before anything is written;
* :func:`restore` ``(plan, trainer) -> TrainingState(step, version, counters)``;
* :func:`save` ``(cfg, step, trainer, counters) -> Path``.

Standalone: ``python -m pirl_core.checkpoints list OUTPUT_DIR`` and
``python -m pirl_core.checkpoints validate CHECKPOINT --profile ... [overrides]``.
"""

from __future__ import annotations

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
