"""The learner's on-policy gate (``Learner.gather``): which rollouts feed an update, which are
dropped as stale, and what a malformed payload does (exit 5, not a traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ExitCode, TransportError
from pirl_core.learner import Learner, Progress
from pirl_core.rollout import RolloutBatch
from pirl_core.telemetry import Telemetry


def _batch(episodes: int, version_tag: float) -> dict[str, torch.Tensor]:
    """``episodes`` one-transition episodes; ``reward`` carries a tag to tell batches apart."""
    n = episodes
    batch = RolloutBatch(
        obs={"state": torch.zeros(n, 2)},
        chain=torch.zeros(n, 2, 1, 1),
        sde_step=torch.full((n,), -1, dtype=torch.long),
        logp=torch.zeros(n),
        value=torch.zeros(n),
        reward=torch.full((n,), version_tag),
        done=torch.ones(n, dtype=torch.bool),
        terminated=torch.ones(n, dtype=torch.bool),
        success=torch.zeros(n, dtype=torch.bool),
        bootstrap_value=torch.zeros(n),
        episode_id=torch.arange(n),
        group_id=torch.arange(n),
        chunk_index=torch.zeros(n, dtype=torch.long),
    )
    return batch.to_tensors()


class QueueServer:
    """Just the two calls ``gather`` makes, fed from a list."""

    def __init__(self, items: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]) -> None:
        self.items = list(items)

    def get_rollout(self, timeout: float | None = None):
        return self.items.pop(0) if self.items else None

    def connected_actors(self) -> list[dict[str, Any]]:
        return []


def _learner(tmp_path: Path, items, version: int, max_staleness: int = 0) -> Learner:
    cfg = load_config(
        "toy",
        [
            f"output_dir={tmp_path}",
            "learner.episodes_per_update=4",
            f"learner.max_staleness={max_staleness}",
        ],
    )
    progress = Progress(step=version, version=version)
    return Learner(cfg, Telemetry(tmp_path, "learner"), progress, trainer=None, server=QueueServer(items))


def test_gather_keeps_only_the_current_version_and_counts_the_rest(tmp_path: Path) -> None:
    items = [
        ({"version": 2, "episodes": 2}, _batch(2, 2.0)),  # stale
        ({"version": 4, "episodes": 2}, _batch(2, 4.0)),  # from the future (an old learner run)
        ({"version": 3, "episodes": 2}, _batch(2, 3.0)),
        ({"version": 3, "episodes": 2}, _batch(2, 3.0)),
    ]
    learner = _learner(tmp_path, items, version=3)
    batch, episodes = learner.gather()
    assert episodes == 4 and len(batch) == 4
    assert torch.all(batch.reward == 3.0)
    assert learner.progress.dropped_stale == 2


def test_max_staleness_admits_bounded_lag(tmp_path: Path) -> None:
    items = [
        ({"version": 1, "episodes": 2}, _batch(2, 1.0)),  # lag 2: dropped
        ({"version": 2, "episodes": 2}, _batch(2, 2.0)),  # lag 1: allowed
        ({"version": 3, "episodes": 2}, _batch(2, 3.0)),
    ]
    learner = _learner(tmp_path, items, version=3, max_staleness=1)
    batch, episodes = learner.gather()
    assert episodes == 4 and sorted(set(batch.reward.tolist())) == [2.0, 3.0]
    assert learner.progress.dropped_stale == 1


@pytest.mark.parametrize(
    "header,tensors",
    [
        ({"episodes": 2}, _batch(2, 0.0)),  # no version in the header
        ({"version": 0, "episodes": 2}, {"chain": torch.zeros(2, 2, 1, 1)}),  # fields missing
    ],
)
def test_malformed_rollout_is_a_transport_error(tmp_path: Path, header, tensors) -> None:
    learner = _learner(tmp_path, [(header, tensors)], version=0)
    with pytest.raises(TransportError) as info:
        learner.gather()
    assert info.value.exit_code == ExitCode.TRANSPORT == 5
    assert "missing" in info.value.line() and "same pirl checkout" in info.value.line()


def test_episode_stats_describe_only_the_version_trained_on(tmp_path: Path) -> None:
    learner = _learner(tmp_path, [], version=3)
    learner.server.get_interactions = lambda: [
        {"version": 2, "success": 1.0, "return": 1.0},  # a stale batch's episode
        {"version": 3, "success": 1.0, "return": 1.0},
        {"version": 3, "success": 0.0, "return": 0.0},
    ]
    assert learner.episode_stats(3) == {"success_rate": 0.5, "return_mean": 0.5}
    learner.server.get_interactions = list
    assert learner.episode_stats(3) == {}
