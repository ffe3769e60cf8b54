"""The console's view of evaluations: the command its evaluate action runs, and the per-task
success table of a run's latest evaluation.

"Latest" is the newest of two sources: an ``eval_info.json`` under ``<output_dir>/eval/`` (written
by ``python -m pirl_core.eval``, e.g. from the checkpoint browser) and the newest periodic
``kind=eval`` telemetry record of actor 0 (``task<id>_successes``/``_episodes`` per task).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pirl_console.commands import ChildSpec, child_env
from pirl_core.eval.results import INFO_FILE
from pirl_core.eval.results import TaskSummary as EvalRow  # one per-task row (rate, Wilson interval)
from pirl_core.telemetry import read_records, telemetry_path

_TASK_FIELD = re.compile(r"^task(\d+)_(successes|episodes)$")


@dataclass(frozen=True)
class EvalTable:
    title: str  # where the figures come from
    rows: tuple[EvalRow, ...]
    overall: float
    when: float  # unix time, to pick the newest source

    @property
    def total(self) -> tuple[int, int]:
        return sum(r.successes for r in self.rows), sum(r.episodes for r in self.rows)


def eval_spec(checkpoint: Path, out: Path, python: str = sys.executable, cwd: str | None = None) -> ChildSpec:
    """``python -m pirl_core.eval <checkpoint> --out <out>``: exactly the headless command, run
    from the console's working directory (relative output dirs mean the same to both)."""
    argv = (python, "-m", "pirl_core.eval", str(checkpoint), f"--out={out}")
    return ChildSpec("eval", "eval", argv, child_env(), cwd or os.getcwd())


def _mean(rows: list[EvalRow]) -> float:
    rates = [r.rate for r in rows if r.episodes]
    return sum(rates) / len(rates) if rates else float("nan")


def table_from_info(info: dict[str, Any], title: str, when: float) -> EvalTable:
    rows = []
    for task in info.get("per_task", []):
        successes = [bool(s) for s in task.get("metrics", {}).get("successes", [])]
        rows.append(
            EvalRow(int(task["task_id"]), str(task.get("instruction", "")), sum(successes), len(successes))
        )
    return EvalTable(title, tuple(rows), _mean(rows), when)


def table_from_record(record: dict[str, Any]) -> EvalTable | None:
    counts: dict[int, dict[str, int]] = {}
    for key, value in record.items():
        match = _TASK_FIELD.match(key)
        if match and isinstance(value, (int, float)):
            counts.setdefault(int(match.group(1)), {})[match.group(2)] = int(value)
    rows = [EvalRow(t, "", c.get("successes", 0), c.get("episodes", 0)) for t, c in sorted(counts.items())]
    if not rows:
        return None
    title = f"periodic eval of version {record.get('step')} (held-out init states, {record.get('source', 'actor-0')})"
    return EvalTable(title, tuple(rows), _mean(rows), float(record.get("ts", 0.0)))


def latest_eval(output_dir: Path) -> EvalTable | None:
    """The newest evaluation of the run in ``output_dir`` (see the module docstring), or None."""
    found: list[EvalTable] = []
    for path in sorted((Path(output_dir) / "eval").glob(f"*/{INFO_FILE}")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            pirl = info.get("pirl", {})
            title = f"{path.parent.name}: step {pirl.get('checkpoint_step')} on {pirl.get('suite')} ({pirl.get('sampling')})"
            found.append(table_from_info(info, title, path.stat().st_mtime))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    records = [r for r in read_records(telemetry_path(output_dir, "actor-0")) if r.get("kind") == "eval"]
    if records:
        table = table_from_record(records[-1])
        if table is not None:
            found.append(table)
    return max(found, key=lambda t: t.when) if found else None
