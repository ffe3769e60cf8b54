"""Where pirl's code lives and which commit it is: the one home of both facts.

Why one module: profiles (``profiles/``), shipped assets (``pirl_core/assets``), the console's
``PYTHONPATH`` for its children, checkpoint paths relative to the source tree and the git
provenance in run records and W&B all need "the directory holding ``pirl_core/``". Computing it
with ``Path(__file__).parents[n]`` in each module breaks as soon as a module moves one level; here
it is computed once, from this file, which sits directly in ``pirl_core/``.

Layer 1 (no pirl imports): anything may use it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""``pirl_core/`` itself (its ``assets/`` ship with the package)."""

REPO_ROOT = PACKAGE_DIR.parent
"""The checkout (or the installed tree) holding ``pirl_core/``, ``pirl_console/`` and ``profiles/``."""

ASSETS_DIR = PACKAGE_DIR / "assets"
PROFILES_DIR = REPO_ROOT / "profiles"


@dataclass(frozen=True)
class GitState:
    """The commit the code runs from and whether tracked files have uncommitted changes."""

    commit: str
    dirty: bool

    def label(self) -> str:
        """``<sha>`` or ``<sha>+dirty``: the one-string form run records carry."""
        return self.commit + ("+dirty" if self.dirty else "")


def git_state(root: Path = REPO_ROOT) -> GitState | None:
    """The checkout's commit and dirtiness; None outside a git checkout or without ``git``
    (an installed wheel, a copied tree): provenance is best effort, never an error."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(head.stdout.strip(), bool(status.stdout.strip()))
