"""The rollout round header is one typed object (pirl_core/transport/round_header.py): the actor
builds it, the learner's contract parses it, the learner reads it; the wire stays as it was."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pirl_core.errors import ExitCode, TransportError
from pirl_core.rollout import EpisodeStats
from pirl_core.transport.payload import decode_payload, encode_payload
from pirl_core.transport.round_header import EpisodeRecord, RoundHeader

STATS = [EpisodeStats(1.5, 40, True, 3, 17), EpisodeStats(0.0, 120, False, 3, 18)]

# What actor.py put on the wire before the header had a type (plus the client's actor_id).
LEGACY_WIRE = {
    "version": 4,
    "episodes": 2,
    "round": 1,
    "learner_epoch": "epoch-a",
    "stats": [
        {"return": 1.5, "length": 40, "success": 1.0, "task_id": 3, "init_state_id": 17},
        {"return": 0.0, "length": 120, "success": 0.0, "task_id": 3, "init_state_id": 18},
    ],
    "actor_id": 2,
}


def test_round_header_round_trips_through_the_unchanged_wire_format() -> None:
    header = RoundHeader.for_round(4, 2, 1, STATS, "epoch-a")
    wire = header.to_wire()
    assert wire == LEGACY_WIRE and list(wire) == list(LEGACY_WIRE)  # same keys, same order
    # what the client sends (it adds kind and its own id) and the learner's queue hands back
    sent = {"kind": "rollout", **wire, "actor_id": 2}
    received, _ = decode_payload(encode_payload({"x": torch.zeros(1)}, sent))
    parsed = RoundHeader.from_wire(received, latest_version=4, n_actors=3)
    assert parsed == header
    assert parsed.episodes == 2 and parsed.key == (4, 2, 1)
    assert parsed.stats[0] == EpisodeRecord(1.5, 1.0, 40, 3, 17)


def test_a_header_with_only_return_and_success_per_episode_is_accepted() -> None:
    """Older senders (and the tests' fakes) send just the two fields the learner reports."""
    wire = {"version": 0, "actor_id": 0, "round": 0, "episodes": 1, "stats": [{"return": 2, "success": 1}]}
    parsed = RoundHeader.from_wire(wire)
    assert parsed.stats == (EpisodeRecord(2.0, 1.0),) and parsed.learner_epoch is None
    assert parsed.to_wire()["stats"] == [{"return": 2.0, "success": 1.0}]


def _changed(**changes: Any) -> dict[str, Any]:
    wire = {k: v for k, v in LEGACY_WIRE.items()}
    wire.update(changes)
    return {k: v for k, v in wire.items() if v is not DROP}


DROP = object()


@pytest.mark.parametrize(
    "wire, words",
    [
        (_changed(version=DROP), "header 'version': got None (NoneType), expected an integer"),
        (_changed(version=5), "header 'version': got 5, expected in [0, 4]"),
        (_changed(actor_id=3), "header 'actor_id': got 3, expected in [0, 2]"),
        (_changed(round="1"), "header 'round': got '1' (str), expected an integer"),
        (_changed(episodes=3), "header 'stats': expected a list of 3 episode records"),
        (_changed(learner_epoch=7), "header 'learner_epoch': got 7, expected a string"),
        (
            _changed(stats=[{"return": 1.0}, {"return": 0.0, "success": 0.0}]),
            "each record needs numeric 'return' and 'success', got {'return': 1.0}",
        ),
        (
            _changed(stats=[{"return": 1.0, "success": 1.0, "length": "40"}] * 2),
            "record 'length': got '40', expected an integer",
        ),
    ],
)
def test_a_malformed_header_is_refused_naming_key_found_and_expected(wire: dict, words: str) -> None:
    with pytest.raises(TransportError) as info:
        RoundHeader.from_wire(wire, latest_version=4, n_actors=3)
    message = info.value.message
    assert message.startswith("rollout rejected: ") and words in message and "\n" not in message
    assert info.value.exit_code == ExitCode.TRANSPORT
