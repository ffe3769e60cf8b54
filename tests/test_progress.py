"""In-round progress (pirl_core/progress.py): what an actor reports while it collects, how often,
and what survives the trip to the learner in its heartbeat."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from pirl_core.actor import collect_version
from pirl_core.config import load_config
from pirl_core.progress import ProgressReporter, VersionProgress
from pirl_core.rollout import Progress
from pirl_core.telemetry import Telemetry, read_records
from tests.inprocess.local_loop import build_loop


class RecordingClient:
    """The two calls ``collect_version`` and the reporter make on the actor's transport client."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.beats: list[VersionProgress] = []

    def send_rollout(self, tensors, header) -> dict[str, float]:
        self.sent.append(header)
        return {}

    def heartbeat(self, progress: VersionProgress | None = None) -> bool:
        self.beats.append(progress)
        return True


def _collect(tmp_path: Path, step_s: float, every_s: float):
    """One version of the toy actor (2 rounds of 4 episodes) with a clock that advances ``step_s``
    per progress callback; returns the reporter, the client and the progress records written."""
    state = build_loop(load_config("toy", {"env.n_envs": 4, "learner.episodes_per_update": 8}))
    ticks = itertools.count()
    calls: list[float] = []

    def clock() -> float:
        calls.append(next(ticks) * step_s)
        return calls[-1]

    client = RecordingClient()
    with Telemetry(tmp_path, "actor-0", stdout=io.StringIO()) as tel:
        reporter = ProgressReporter(tel, every_s, state.env.max_episode_steps, client.heartbeat, clock)
        collect_version(
            state.cfg, state.env, state.actor_critic, client, 0, 5, tel, on_progress=reporter.for_version(5)
        )
    state.env.close()
    records = [
        r for r in read_records(tmp_path / "telemetry" / "actor-0.jsonl") if r.get("event") == "progress"
    ]
    return reporter, client, records, len(calls)


def test_every_chunk_reported_covers_the_whole_version(tmp_path: Path) -> None:
    """Unthrottled (the clock jumps past every_s each chunk): progress counts the version's
    episodes across its rounds and ends at all of them, fraction 1, ETA 0; telemetry and the
    heartbeat carry the same reports."""
    reporter, client, records, calls = _collect(tmp_path, step_s=10.0, every_s=1.0)
    assert len(client.sent) == 2 and reporter.reports == calls == len(records) == len(client.beats)
    assert [VersionProgress.decode(b.encode()).fields() for b in client.beats] == [
        b.fields() for b in client.beats
    ]
    assert [b.fields() for b in client.beats] == [
        {k: r[k] for k in b.fields()} for b, r in zip(client.beats, records, strict=True)
    ]
    assert all(r["kind"] == "event" and r["step"] == 5 and r["version"] == 5 for r in records)
    assert all(r["episodes_planned"] == 8 for r in records)
    done = [r["episodes_done"] for r in records]
    steps = [r["env_steps"] for r in records]
    fractions = [r["fraction"] for r in records]
    assert done == sorted(done) and steps == sorted(steps) and fractions == sorted(fractions)
    assert max(d for d in done[: len(done) // 2]) <= 8 and 4 in done  # the first round's 4, then 8
    last = records[-1]
    assert last["episodes_done"] == 8 and last["fraction"] == 1.0 and last["eta_s"] == 0.0
    metrics = [r for r in read_records(tmp_path / "telemetry" / "actor-0.jsonl") if r["kind"] == "metrics"]
    assert last["env_steps"] == metrics[-1]["env_steps"]  # every env step of the version counted


def test_reports_are_throttled_to_one_per_interval(tmp_path: Path) -> None:
    """A clock advancing 1 s per chunk and every_s=2: reports at 0, 2, 4, ... s, never two within
    2 s of each other."""
    reporter, client, records, calls = _collect(tmp_path, step_s=1.0, every_s=2.0)
    assert calls >= 6, "the toy version takes several chunks"
    assert reporter.reports == len(records) == len(client.beats) == math.ceil(calls / 2)
    assert 0 < len(records) < calls


def test_fraction_and_eta_count_unfinished_episodes_by_their_steps() -> None:
    # 1 of 4 episodes done (of 100 steps each), two running at 30 and 20 steps: 150/400 of the work
    p = VersionProgress.of(2, Progress(1, 4, 180, 30.0, running_steps=50), max_episode_steps=100)
    assert p.fraction == pytest.approx(0.375) and p.eta_s == pytest.approx(30.0 * 0.625 / 0.375)
    assert VersionProgress.of(2, Progress(0, 4, 0, 1.0), 100).eta_s is None  # no work yet: no ETA
    assert VersionProgress.of(2, Progress(4, 4, 400, 9.0), 100).eta_s == 0.0
    assert VersionProgress.of(2, Progress(1, 4, 7, 2.0), 0).fraction == 0.25  # no time limit known
    assert p.summary() == "1 of 4 episodes in, 180 env steps, ETA 50 s"


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[1, 2]",
        '{"version": 1}',
        '{"version":1,"episodes_done":3,"episodes_planned":2,"env_steps":1,"elapsed_s":1,"fraction":0.5,"eta_s":1}',
        '{"version":-1,"episodes_done":1,"episodes_planned":2,"env_steps":1,"elapsed_s":1,"fraction":0.5,"eta_s":1}',
        '{"version":true,"episodes_done":1,"episodes_planned":2,"env_steps":1,"elapsed_s":1,"fraction":0.5,"eta_s":1}',
        '{"version":1,"episodes_done":1,"episodes_planned":2,"env_steps":1,"elapsed_s":NaN,"fraction":0.5,"eta_s":1}',
        '{"version":1,"episodes_done":1,"episodes_planned":2,"env_steps":1,"elapsed_s":1,"fraction":1.5,"eta_s":1}',
        "x" * 600,
    ],
)
def test_a_malformed_progress_value_is_dropped(text: str | None) -> None:
    assert VersionProgress.decode(text) is None


def test_progress_every_s_must_be_a_positive_number_of_seconds() -> None:
    from pirl_core.errors import ConfigError

    assert load_config("toy").actor.progress_every_s == 3.0
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="actor.progress_every_s"):
            load_config("toy", [f"actor.progress_every_s={bad}"])
