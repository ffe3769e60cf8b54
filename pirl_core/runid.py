"""Run identity: which run a learner serves and an actor belongs to (the handshake's first check).

Why: two runs on one machine with the same profile agree on every config field the handshake
compares, so without a run id an actor of one run (whose own learner could not bind the port) is
accepted by the other run's learner and trains it on foreign rollouts.

Why derived from the output dir: it is the one thing that already tells two runs apart (one learner
per output dir, ``.learner.lock``), every process of a run is given it (the launcher and the console
pass ``--output_dir`` to each child; two terminals type the same flags), and a resume continues in
the same output dir, so the run keeps its id without storing anything. ``learner.run_id`` overrides
the derivation when learner and actors see the output dir under different paths (other machines).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pirl_core.config import RunConfig


def derive_run_id(output_dir: Path | str) -> str:
    """``<dir name>-<8 hex of the resolved path>``: readable in a refusal, distinct per directory."""
    resolved = Path(output_dir).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return f"{resolved.name or 'root'}-{digest}"


def run_id(cfg: RunConfig) -> str:
    """The run id a learner serves and its actors present: ``learner.run_id`` or the derived one."""
    return cfg.learner.run_id or derive_run_id(cfg.output_dir)
