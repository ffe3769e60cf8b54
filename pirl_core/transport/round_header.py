"""The header of one rollout round (actor -> learner), as one typed object.

The actor builds a :class:`RoundHeader` from its round's episode statistics, the learner's
:class:`~pirl_core.transport.contract.RolloutContract` parses (and so validates) it before the
payload is queued, and the learner reads the same object. Wire form (the payload's JSON header,
unchanged by this type): ``version``, ``episodes``, ``round``, ``learner_epoch``, ``stats`` (one
record per episode: ``return``, ``length``, ``success``, ``task_id``, ``init_state_id``; only
``return`` and ``success`` are required), ``actor_id``; the client adds ``kind="rollout"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pirl_core.errors import TransportError
from pirl_core.rollout import EpisodeStats

_OPTIONAL_INTS = ("length", "task_id", "init_state_id")


def reject(message: str) -> TransportError:
    """A refused rollout (the RPC answers INVALID_ARGUMENT with this message; the actor exits 5)."""
    return TransportError(f"rollout rejected: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def header_int(header: dict[str, Any], key: str, minimum: int, maximum: int | None = None) -> int:
    """``header[key]`` as an int within ``[minimum, maximum]``, or a refusal naming what came."""
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise reject(f"header {key!r}: got {value!r} ({type(value).__name__}), expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise reject(f"header {key!r}: got {value}, expected {bound}")
    return value


@dataclass(frozen=True)
class EpisodeRecord:
    """One episode's statistics in a round header: what the learner reports for the episodes it
    trained on (``success_rate``, ``return_mean``)."""

    ret: float
    success: float
    length: int | None = None
    task_id: int | None = None
    init_state_id: int | None = None

    @classmethod
    def of(cls, stats: EpisodeStats) -> EpisodeRecord:
        return cls(stats.ret, float(stats.success), stats.length, stats.task_id, stats.init_state_id)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "return": self.ret,
            "length": self.length,
            "success": self.success,
            "task_id": self.task_id,
            "init_state_id": self.init_state_id,
        }
        return {k: v for k, v in wire.items() if v is not None}

    @classmethod
    def from_wire(cls, record: Any) -> EpisodeRecord:
        if not isinstance(record, dict) or not all(_is_number(record.get(k)) for k in ("return", "success")):
            raise reject(
                f"header 'stats': each record needs numeric 'return' and 'success', got {record!r:.80}"
            )
        extra = {}
        for key in _OPTIONAL_INTS:
            value = record.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise reject(f"header 'stats': record {key!r}: got {value!r}, expected an integer")
            extra[key] = value
        return cls(float(record["return"]), float(record["success"]), **extra)


@dataclass(frozen=True)
class RoundHeader:
    """Which actor sent which round of which policy version, produced by which learner process
    (``learner_epoch``: a restarted learner drops the others), and the round's episode statistics:
    they travel with the round's transitions, one message, one handler."""

    version: int
    actor_id: int
    round: int
    stats: tuple[EpisodeRecord, ...]
    learner_epoch: str | None = None

    @classmethod
    def for_round(
        cls,
        version: int,
        actor_id: int,
        round_index: int,
        stats: list[EpisodeStats],
        learner_epoch: str | None,
    ) -> RoundHeader:
        return cls(version, actor_id, round_index, tuple(map(EpisodeRecord.of, stats)), learner_epoch)

    @property
    def episodes(self) -> int:
        return len(self.stats)

    @property
    def key(self) -> tuple[int, int, int]:
        """(version, actor, round): the learner accepts each once and orders its batch by it."""
        return (self.version, self.actor_id, self.round)

    def to_wire(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "episodes": self.episodes,
            "round": self.round,
            "learner_epoch": self.learner_epoch,
            "stats": [record.to_wire() for record in self.stats],
            "actor_id": self.actor_id,
        }

    @classmethod
    def from_wire(
        cls, header: dict[str, Any], *, latest_version: int | None = None, n_actors: int | None = None
    ) -> RoundHeader:
        """Parse a received header, refusing (TransportError naming the key, the value found and
        the value expected) anything malformed: ``version`` in [0, ``latest_version``] (an older
        one is well-formed, left to the learner's staleness rule), ``actor_id`` in [0, ``n_actors``),
        ``round`` >= 0, ``episodes`` >= 1 matching ``stats``, ``learner_epoch`` a string or absent."""
        version = header_int(header, "version", 0, latest_version)
        actor_id = header_int(header, "actor_id", 0, None if n_actors is None else n_actors - 1)
        round_index = header_int(header, "round", 0)
        episodes = header_int(header, "episodes", 1)
        epoch = header.get("learner_epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise reject(f"header 'learner_epoch': got {epoch!r}, expected a string")
        stats = header.get("stats")
        if not isinstance(stats, list) or len(stats) != episodes:
            raise reject(f"header 'stats': expected a list of {episodes} episode records, got {stats!r:.80}")
        records = tuple(EpisodeRecord.from_wire(record) for record in stats)
        return cls(version, actor_id, round_index, records, epoch)


def episode_summary(records: list[EpisodeRecord]) -> dict[str, float]:
    """Success rate and mean return of ``records`` (empty: nothing to report)."""
    if not records:
        return {}
    return {
        "success_rate": sum(r.success for r in records) / len(records),
        "return_mean": sum(r.ret for r in records) / len(records),
    }
