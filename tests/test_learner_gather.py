"""The learner's on-policy gate (``Learner.gather``): which rollouts feed an update, which are
dropped as stale or as a round already received, the episode statistics that came with them, and
the lost-actor stop. (Malformed payloads never get here: tests/test_transport_contract.py.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ExitCode
from pirl_core.learner import ActorLostError, Learner, Progress
from pirl_core.telemetry import Telemetry, read_records
from pirl_core.transport.round_header import episode_summary
from tests.batches import one_chunk_episodes


def _batch(episodes: int, version_tag: float) -> dict[str, torch.Tensor]:
    """``episodes`` one-transition episodes; ``reward`` carries a tag to tell batches apart."""
    n = episodes
    batch = one_chunk_episodes(
        {"state": torch.zeros(n, 2)},
        torch.zeros(n, 2, 1, 1),
        torch.full((n,), -1, dtype=torch.long),
        torch.zeros(n),
        torch.zeros(n),
        reward=torch.full((n,), version_tag),
        terminated=True,
    )
    return batch.to_tensors()


class QueueServer:
    """Just the calls ``gather`` makes, fed from a list."""

    rejected_payloads = 0
    epoch = "this-learner"

    def __init__(self, items: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]) -> None:
        self.items = list(items)

    def get_rollout(self, timeout: float | None = None):
        return self.items.pop(0) if self.items else None  # a None item stands for an empty poll

    def connected_actors(self) -> list[dict[str, Any]]:
        return [{"actor_id": "0"}]

    def last_contact(self, actor_id) -> float | None:
        return None  # no heartbeats: only rounds count as contact

    def actor_progress(self, actor_id):
        return None


def _item(
    version: int, episodes: int, tag: float, actor: int = 0, round_index: int = 0, success: float = 0.0
):
    stats = [{"return": tag, "success": success} for _ in range(episodes)]
    header = {
        "version": version,
        "episodes": episodes,
        "actor_id": actor,
        "round": round_index,
        "stats": stats,
        "learner_epoch": QueueServer.epoch,
    }
    return header, _batch(episodes, tag)


def _learner(tmp_path: Path, items, version: int, max_staleness: int = 0, **extra: Any) -> Learner:
    overrides = {
        "output_dir": str(tmp_path),
        "learner.episodes_per_update": 4,
        "learner.max_staleness": max_staleness,
        "learner.actor_timeout_s": 5.0,  # a regression fails in seconds instead of hanging
        **extra,
    }
    cfg = load_config("toy", overrides)
    progress = Progress(step=version, version=version)
    return Learner(cfg, Telemetry(tmp_path, "learner"), progress, trainer=None, server=QueueServer(items))


def test_gather_keeps_only_the_current_version_and_counts_the_rest(tmp_path: Path) -> None:
    before_restart = _item(3, 2, 7.0)
    before_restart[0]["learner_epoch"] = "previous-learner"  # sent before a restart, delivered after
    items = [
        _item(2, 2, 2.0),  # stale
        _item(4, 2, 4.0),  # from the future (an old learner run)
        before_restart,
        _item(3, 2, 3.0, round_index=0),
        _item(3, 2, 3.0, round_index=1),
    ]
    learner = _learner(tmp_path, items, version=3)
    gathered = learner.gather()
    batch, episodes = gathered.batch, gathered.episodes
    assert episodes == 4 and len(batch) == 4
    assert torch.all(batch.reward == 3.0)
    assert learner.progress.dropped_stale == 3


def test_max_staleness_admits_bounded_lag(tmp_path: Path) -> None:
    items = [
        _item(1, 2, 1.0),  # lag 2: dropped
        _item(2, 2, 2.0),  # lag 1: allowed
        _item(3, 2, 3.0),
    ]
    learner = _learner(tmp_path, items, version=3, max_staleness=1)
    gathered = learner.gather()
    batch, episodes = gathered.batch, gathered.episodes
    assert episodes == 4 and sorted(set(batch.reward.tolist())) == [2.0, 3.0]
    assert learner.progress.dropped_stale == 1


def test_a_round_received_twice_counts_once_and_order_does_not_matter(tmp_path: Path) -> None:
    """A restarted actor re-sends rounds the learner already has: dropped, not trained on twice;
    the batch is ordered by (version, actor, round), not by arrival."""
    in_order = [_item(3, 2, 3.0, round_index=0), _item(3, 2, 5.0, round_index=1)]
    rejoined = [in_order[1], in_order[0], in_order[1], in_order[0]]  # round 1, then a restart resends both
    first = _learner(tmp_path / "a", in_order, version=3)
    second = _learner(tmp_path / "b", rejoined, version=3)
    gathered_a, gathered_b = first.gather(), second.gather()
    batch_a, episodes_a = gathered_a.batch, gathered_a.episodes
    batch_b, episodes_b = gathered_b.batch, gathered_b.episodes
    assert episodes_a == episodes_b == 4 and len(batch_b) == 4
    assert batch_a.reward.tolist() == batch_b.reward.tolist() == [3.0, 3.0, 5.0, 5.0]
    assert second.duplicate_rounds == 0  # the loop stopped once the share was complete
    third = _learner(tmp_path / "c", [in_order[0], in_order[0], in_order[1]], version=3)
    assert third.gather().episodes == 4 and third.duplicate_rounds == 1


def test_episode_stats_come_from_the_rollout_headers_trained_on(tmp_path: Path) -> None:
    items = [
        _item(2, 2, 9.0, success=1.0),  # a stale batch's episodes: not trained on, not reported
        _item(3, 2, 1.0, success=1.0, round_index=0),
        _item(3, 2, 0.0, success=0.0, round_index=1),
    ]
    learner = _learner(tmp_path, items, version=3)
    assert episode_summary([]) == {}
    assert learner.gather().episode_stats() == {"success_rate": 0.5, "return_mean": 0.5}


def test_silent_actor_stops_the_run_naming_it(tmp_path: Path) -> None:
    learner = _learner(
        tmp_path,
        [_item(0, 2, 0.0, actor=0)],
        version=0,
        **{"actor.n_actors": 2, "learner.actor_timeout_s": 0.2},
    )
    with pytest.raises(ActorLostError) as info:
        learner.gather()
    assert info.value.exit_code == ExitCode.TRANSPORT == 5
    line = info.value.line()
    assert (
        "actor 1 sent nothing for policy version 0" in line
        and "--actor-id=1" in line
        and "connected actors: 0)" in line
    )
    (event,) = [
        r for r in read_records(tmp_path / "telemetry" / "learner.jsonl") if r.get("event") == "actor_lost"
    ]
    assert event["actor_ids"] == [1] and event["version"] == 0 and event["waited_s"] >= 0.2
    assert event["connected_actors"] == ["0"] and "then restart the learner (no update was completed)" in line


class EvaluatingActorServer(QueueServer):
    """Actor 0 evaluates for longer than ``actor_timeout_s`` (no rollouts, ``Ready`` heartbeats after
    every wave, as ``pirl_core.eval.periodic`` sends them), then sends its round."""

    def __init__(self, items, quiet_s: float, beat: bool) -> None:
        super().__init__(items)
        self.until = time.monotonic() + quiet_s
        self.beat = beat

    def get_rollout(self, timeout: float | None = None):
        if time.monotonic() < self.until:
            time.sleep(0.02)
            return None
        return super().get_rollout(timeout)

    def last_contact(self, actor_id):
        return time.monotonic() if self.beat and str(actor_id) == "0" else None


@pytest.mark.parametrize("beat", [True, False])
def test_heartbeats_keep_an_evaluating_actor_alive(tmp_path: Path, beat: bool) -> None:
    cfg = load_config("toy", {"output_dir": str(tmp_path), "learner.episodes_per_update": 2})
    cfg.learner.actor_timeout_s = 0.2
    server = EvaluatingActorServer([_item(0, 2, 1.0)], quiet_s=0.6, beat=beat)
    learner = Learner(cfg, Telemetry(tmp_path, "learner"), Progress(0, 0), trainer=None, server=server)
    if beat:
        gathered = learner.gather()  # silent 3x the timeout, yet not lost
        batch, episodes = gathered.batch, gathered.episodes
        assert episodes == 2 and torch.equal(batch.reward, torch.full((2,), 1.0))
    else:
        with pytest.raises(ActorLostError, match="actor 0 sent nothing"):
            learner.gather()


def test_waiting_notice_names_the_missing_actors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("pirl_core.learner.WAITING_NOTICE_S", 0.0)
    items = [_item(0, 2, 0.0, actor=0), _item(0, 2, 0.0, actor=1)]
    # actor 0's round, one empty poll (the notice), then actor 1's round
    learner = _learner(tmp_path, [items[0], None, items[1]], version=0, **{"actor.n_actors": 2})
    learner.gather()
    notices = [
        r for r in read_records(tmp_path / "telemetry" / "learner.jsonl") if r.get("event") == "waiting"
    ]
    assert notices[0]["missing_actors"] == [0, 1] and notices[0]["episodes"] == 0
    after_first = notices[-1]  # once actor 0's round is in, only actor 1 is missing
    assert after_first["missing_actors"] == [1] and after_first["connected_actors"] == ["0"]
    assert after_first["episodes"] == 2 and after_first["wanted"] == 4


class CollectingActorServer(QueueServer):
    """Actor 0 collects for longer than ``actor_timeout_s``, beating with its progress (as
    ``pirl_core.progress.ProgressReporter`` does); actor 1 says nothing. Then both rounds arrive."""

    def __init__(self, items, quiet_s: float) -> None:
        super().__init__(items)
        self.until = time.monotonic() + quiet_s

    def get_rollout(self, timeout: float | None = None):
        if time.monotonic() < self.until:
            time.sleep(0.02)
            return None
        return super().get_rollout(timeout)

    def last_contact(self, actor_id):
        return time.monotonic() if str(actor_id) == "0" else None

    def actor_progress(self, actor_id):
        from pirl_core.progress import VersionProgress

        return VersionProgress(0, 1, 2, 150, 25.0, 0.5, 25.0) if str(actor_id) == "0" else None


def test_waiting_notice_tells_a_busy_actor_from_a_silent_one(tmp_path: Path, monkeypatch) -> None:
    """The notice that made the console raise a warning for a connected, collecting actor now says
    which missing actors are busy (with their episode counts) and which are silent; a busy actor's
    heartbeats keep it from being lost however long its round takes."""
    monkeypatch.setattr("pirl_core.learner.WAITING_NOTICE_S", 0.0)
    cfg = load_config(
        "toy", {"output_dir": str(tmp_path), "learner.episodes_per_update": 4, "actor.n_actors": 2}
    )
    cfg.learner.actor_timeout_s = 0.2
    items = [_item(0, 2, 0.0, actor=0), _item(0, 2, 0.0, actor=1)]
    server = CollectingActorServer(items, quiet_s=0.1)
    learner = Learner(cfg, Telemetry(tmp_path, "learner"), Progress(0, 0), trainer=None, server=server)
    learner.gather()  # actor 1 is silent only 0.1 s, under its timeout
    first = next(
        r for r in read_records(tmp_path / "telemetry" / "learner.jsonl") if r.get("event") == "waiting"
    )
    assert first["missing_actors"] == [0, 1]
    assert first["busy_actors"] == [0] and first["silent_actors"] == [1]
    assert "actor 0 busy: 1 of 2 episodes in, 150 env steps, ETA 25 s" in first["status"]
    assert "actor 1 silent: nothing heard in 0 s" in first["status"]

    busy_only = CollectingActorServer([_item(0, 2, 1.0, actor=0)], quiet_s=0.6)  # 3x the timeout
    cfg1 = load_config("toy", {"output_dir": str(tmp_path / "b"), "learner.episodes_per_update": 2})
    cfg1.learner.actor_timeout_s = 0.2
    learner = Learner(
        cfg1, Telemetry(tmp_path / "b", "learner"), Progress(0, 0), trainer=None, server=busy_only
    )
    assert learner.gather().episodes == 2  # busy for 3x the timeout, yet not lost
    notices = [
        r for r in read_records(tmp_path / "b" / "telemetry" / "learner.jsonl") if r.get("event") == "waiting"
    ]
    assert notices and all(n["busy_actors"] == [0] and n["silent_actors"] == [] for n in notices)
