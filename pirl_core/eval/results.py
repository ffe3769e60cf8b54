"""Per-episode results -> per-task table, overall figures and ``eval_info.json``.

``eval_info.json`` follows ``lerobot-eval`` (``lerobot/scripts/lerobot_eval.py``, 0.4.4) so the
same scripts read both: ``per_task`` (``task_group``, ``task_id``, ``metrics`` with per-episode lists
``sum_rewards``/``max_rewards``/``successes``/``video_paths``), ``per_group`` and ``overall``
(``avg_sum_reward``, ``avg_max_reward``, ``pc_success`` in percent, ``n_episodes``, ``eval_s``,
``eval_ep_s``, ``video_paths``), and the single-env ``per_episode`` records (``episode_ix``,
``sum_reward``, ``max_reward``, ``success``, ``seed``). pirl adds per-episode ``task_id``,
``init_state`` and ``length``, each task's Wilson interval and instruction, and a ``pirl`` block
(checkpoint, step, policy version, suite, seed, sampling mode, episode length).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

INFO_FILE = "eval_info.json"
"""The results file every evaluation directory holds (``<run>/eval/<checkpoint>-<time>/``)."""
WILSON_Z = 1.959963984540054  # two-sided 95 %


@dataclass
class EpisodeResult:
    episode_ix: int
    task_id: int
    init_state: int  # per-task init-state index
    success: bool
    sum_reward: float
    max_reward: float
    length: int
    seed: int
    video_path: str | None = None


@dataclass
class TaskSummary:
    task_id: int
    instruction: str
    successes: int
    episodes: int
    episode_ixs: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval: unlike the normal approximation it stays inside [0, 1] and is
    meaningful at 0/n and n/n, which is where small evaluations of sparse tasks live."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)  # exact ends despite float rounding
    return (lo, hi)


def summarize(episodes: list[EpisodeResult], instructions: dict[int, str]) -> list[TaskSummary]:
    """One row per task, in the order tasks were configured (``instructions``' order)."""
    rows = {tid: TaskSummary(tid, text, 0, 0) for tid, text in instructions.items()}
    for ep in episodes:
        row = rows.setdefault(ep.task_id, TaskSummary(ep.task_id, "", 0, 0))
        row.episodes += 1
        row.successes += int(ep.success)
        row.episode_ixs.append(ep.episode_ix)
    return [r for r in rows.values() if r.episodes]


def overall_rate(tasks: list[TaskSummary]) -> float:
    """Mean of the per-task rates (every task weighs the same, as the PI-RL tables report)."""
    rates = [t.rate for t in tasks if t.episodes]
    return sum(rates) / len(rates) if rates else float("nan")


def format_table(tasks: list[TaskSummary], wall_s: float, width: int = 60) -> str:
    header = ("task", "instruction", "success", "rate", "95% CI (Wilson)")
    lines = [header]
    for t in tasks:
        lo, hi = t.interval
        text = t.instruction if len(t.instruction) <= width else t.instruction[: width - 1] + "…"
        lines.append(
            (str(t.task_id), text, f"{t.successes}/{t.episodes}", f"{t.rate:.3f}", f"[{lo:.3f}, {hi:.3f}]")
        )
    total_s = sum(t.successes for t in tasks)
    total_n = sum(t.episodes for t in tasks)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()

    out = [fmt(lines[0]), fmt(tuple("-" * w for w in widths))]
    out += [fmt(line) for line in lines[1:]]
    out.append(
        f"overall: mean success {overall_rate(tasks):.3f} over {len(tasks)} task(s) "
        f"({total_s}/{total_n} episodes), wall {wall_s:.1f} s"
    )
    return "\n".join(out)


def _mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _aggregate(eps: list[EpisodeResult]) -> dict[str, Any]:
    return {
        "avg_sum_reward": _mean([e.sum_reward for e in eps]),
        "avg_max_reward": _mean([e.max_reward for e in eps]),
        "pc_success": _mean([float(e.success) for e in eps]) * 100 if eps else float("nan"),
        "n_episodes": len(eps),
        "video_paths": [e.video_path for e in eps if e.video_path],
    }


def eval_info(
    episodes: list[EpisodeResult], tasks: list[TaskSummary], suite: str, wall_s: float, pirl: dict[str, Any]
) -> dict[str, Any]:
    """The ``eval_info.json`` document (see the module docstring)."""
    by_task = {t.task_id: [e for e in episodes if e.task_id == t.task_id] for t in tasks}
    per_task = []
    for t in tasks:
        eps = by_task[t.task_id]
        lo, hi = t.interval
        per_task.append(
            {
                "task_group": suite,
                "task_id": t.task_id,
                "metrics": {
                    "sum_rewards": [e.sum_reward for e in eps],
                    "max_rewards": [e.max_reward for e in eps],
                    "successes": [e.success for e in eps],
                    "video_paths": [e.video_path for e in eps if e.video_path],
                },
                "instruction": t.instruction,
                "pc_success": t.rate * 100,
                "wilson_95": [lo, hi],
                "n_episodes": t.episodes,
            }
        )
    overall = _aggregate(episodes)
    overall.update(
        eval_s=wall_s,
        eval_ep_s=wall_s / max(1, len(episodes)),
        mean_task_success=overall_rate(tasks),
    )
    return {
        "per_episode": [{k: v for k, v in asdict(e).items() if k != "video_path"} for e in episodes],
        "per_task": per_task,
        "per_group": {suite: _aggregate(episodes)},
        "overall": overall,
        "pirl": pirl,
    }


def telemetry_fields(tasks: list[TaskSummary], episodes: list[EpisodeResult]) -> dict[str, Any]:
    """Flat fields of a ``kind=eval`` telemetry record: overall figures plus, per task,
    ``task<id>_success_rate`` / ``_successes`` / ``_episodes`` (plotted as ``eval/<field>``)."""
    fields: dict[str, Any] = {
        "success_rate": overall_rate(tasks),
        "return_mean": _mean([e.sum_reward for e in episodes]),
        "episodes": len(episodes),
        "successes": sum(int(e.success) for e in episodes),
    }
    for t in tasks:
        fields[f"task{t.task_id}_success_rate"] = t.rate
        fields[f"task{t.task_id}_successes"] = t.successes
        fields[f"task{t.task_id}_episodes"] = t.episodes
    return fields
