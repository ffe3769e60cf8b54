"""The profile menu's rows: each ``profiles/*.toml`` summarised, or the reason it is invalid.

Why load every profile through the real loader: a profile that does not validate must show
up in the menu with the validator's message (rather than vanish or fail at start), and the
summary columns then show exactly what the learner would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pirl_core.config import PROFILES_DIR, RunConfig, available_profiles, load_config
from pirl_core.errors import ConfigError


@dataclass(frozen=True)
class ProfileRow:
    name: str
    config: RunConfig | None
    error: str | None = None

    def cells(self) -> tuple[str, ...]:
        c = self.config
        if c is None:
            return (self.name, "invalid", self.error or "", "", "", "", "")
        return (
            self.name,
            f"{c.env.type}/{c.env.suite}",
            f"{c.policy.type} ({c.policy.size})",
            f"{c.recipe.method}/{c.recipe.algorithm}",
            str(c.learner.updates),
            f"every {c.checkpoint.every}",
            c.output_dir,
        )


COLUMNS = ("profile", "env/suite", "policy", "method", "updates", "checkpoint", "output dir")


def profile_rows(profiles_dir: Path = PROFILES_DIR) -> list[ProfileRow]:
    rows = []
    for name in available_profiles(profiles_dir):
        try:
            rows.append(ProfileRow(name, load_config(name, [], profiles_dir)))
        except ConfigError as err:
            rows.append(ProfileRow(name, None, err.message))
    return rows
