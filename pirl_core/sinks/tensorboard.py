"""TensorBoard event files under ``<output_dir>/tensorboard/<source>/``, one writer per process.

Why per source: every process (learner, each actor) writes its own records, so each gets its own
writer and no file is shared between processes; ``tensorboard --logdir outputs/`` then lists
``<run>/tensorboard/learner`` and ``<run>/tensorboard/actor-0`` and overlays runs by tag.
Steps and wall times are the record's ``step`` and ``ts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pirl_core.sinks.scalars import scalars

TENSORBOARD_DIR = "tensorboard"
FLUSH_EVENTS = frozenset({"checkpoint", "done", "interrupted"})


def tensorboard_dir(output_dir: Path | str, source: str) -> Path:
    return Path(output_dir) / TENSORBOARD_DIR / source


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, output_dir: Path | str, source: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

        self.log_dir = tensorboard_dir(output_dir, source)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=10)

    def describe(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir)}

    def write(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        walltime = record.get("ts")
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=step, walltime=walltime)
        if record.get("kind") == "eval" or record.get("event") in FLUSH_EVENTS:
            self._writer.flush()

    def close(self) -> None:
        self._writer.close()
