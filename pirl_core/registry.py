"""A name -> record table for the family registries (:mod:`pirl_core.envs.registry`,
:mod:`pirl_core.policies.registry`): one lookup rule and one error for every kind of family.

Layer 1 (a small pure helper): it knows nothing of envs or policies, only the config field whose
value names a record, for the error a user sees (``env.type: got 'x', expected a registered env
family: one of 'libero', 'toy'``).
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from pirl_core.errors import ConfigError


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Records by ``record.name``, each registered once."""

    def __init__(self, field: str, kind: str) -> None:
        self.field = field  # the config field that names a record, e.g. "env.type"
        self.kind = kind  # what a record is, e.g. "env family"
        self._records: dict[str, T] = {}

    def register(self, record: T) -> T:
        """Make ``record`` known under ``record.name`` (once: a second registration is a bug)."""
        if record.name in self._records and self._records[record.name] is not record:
            raise ValueError(f"{self.kind} {record.name!r} is already registered")
        self._records[record.name] = record
        return record

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._records))

    def records(self) -> tuple[T, ...]:
        return tuple(self._records[n] for n in self.names())

    def get(self, name: str) -> T:
        """The record registered as ``name``, or a :class:`ConfigError` naming the known ones."""
        try:
            return self._records[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise ConfigError(self.field, name, f"a registered {self.kind}: one of {known}") from None
