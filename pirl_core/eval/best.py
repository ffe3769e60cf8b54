"""``checkpoints/best``: the learner follows periodic-eval results and points ``best`` at the
checkpoint of the best-scoring version.

How the learner learns a result: actor 0 writes each periodic evaluation as a ``kind=eval``
record (``step`` = policy version) to its own telemetry file, ``telemetry/actor-0.jsonl``; the
learner tails that file after each update. No transport change is needed, the records are
already durable for the console and the report, and a resumed learner re-reads the whole file
(so it recovers the score of the checkpoint ``best`` points to without a second state file that
would have to be switched atomically together with the link).

Rules: a version's score is its eval record's ``success_rate`` (the latest record of a version
wins, as in every series); ``best`` moves only to a finished checkpoint of that version and only
for a strictly higher score (ties keep the earlier checkpoint); the switch is
:func:`pirl_core.checkpoints.store.switch_pointer`, the same atomic rename as ``last``, so a
kill -9 at any instant leaves ``best`` at the old checkpoint or the new one. Retention never
removes the checkpoint ``best`` points to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout, store
from pirl_core.checkpoints.fsutil import pause_point
from pirl_core.telemetry import telemetry_path

EVAL_SOURCE = "actor-0"
"""The actor that runs periodic evaluation (pirl_core/actor.py)."""


class EvalRecordTail:
    """New complete lines of one JSONL file since the last call (a half-written line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out


class BestPointer:
    """Tracks eval scores per version and keeps ``checkpoints/best`` on the best one."""

    def __init__(self, output_dir: Path | str, source: str = EVAL_SOURCE) -> None:
        self.output_dir = Path(output_dir)
        self.tail = EvalRecordTail(telemetry_path(self.output_dir, source))
        self.scores: dict[int, float] = {}

    def current(self) -> tuple[int, float] | None:
        """(step, score) of the checkpoint ``best`` points to, when its score is known."""
        target = layout.pointer_target(self.output_dir, layout.BEST_CHECKPOINT_LINK)
        step = layout.parse_step(target.name) if target is not None and target.is_dir() else None
        if step is None or step not in self.scores:
            return None
        return step, self.scores[step]

    def poll(self) -> tuple[int, float, Path] | None:
        """Read new eval records; switch ``best`` if a finished checkpoint now scores higher.
        Returns (step, score, path) after a switch, else None."""
        for record in self.tail.read():
            if record.get("kind") != "eval" or not isinstance(record.get("step"), int):
                continue
            score = record.get("success_rate")
            if isinstance(score, (int, float)) and not isinstance(score, bool):
                self.scores[int(record["step"])] = float(score)
        finished = dict(layout.step_dirs(self.output_dir))
        candidates = [(score, -step) for step, score in self.scores.items() if step in finished]
        if not candidates:
            return None
        score, neg_step = max(candidates)
        step = -neg_step
        held = self.current()
        if held is not None and (held[1] >= score or held[0] == step):
            return None
        store.switch_pointer(self.output_dir, layout.BEST_CHECKPOINT_LINK, finished[step].name, step)
        pause_point(step, layout.BEST_CHECKPOINT_LINK)
        return step, score, finished[step]
