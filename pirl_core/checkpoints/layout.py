"""Where checkpoint files live: LeRobot's layout, plus the names pirl adds inside it.

::

    <output_dir>/checkpoints/<step:06d>/pretrained_model/  config.json, model.safetensors, processor files,
                                                           train_config.json (RunConfig.to_dict()),
                                                           rl_heads.safetensors (pirl: value/noise heads)
    <output_dir>/checkpoints/<step:06d>/training_state/    <optimizer name>/optimizer_state.safetensors,
                                                           <optimizer name>/optimizer_param_groups.json,
                                                           rng_state.safetensors, training_step.json
    <output_dir>/checkpoints/last -> <step:06d>            (relative symlink, as LeRobot's update_last_checkpoint)

Why the RL heads are a sibling file and not extra keys in ``model.safetensors``: LeRobot's
``XVLAPolicy.from_pretrained`` loads that file with ``load_state_dict(strict=True)``, so any extra key
breaks loading the policy with LeRobot's own code (see tests/test_checkpoint_xvla.py). LeRobot ignores
unknown files in ``pretrained_model/``, so ``rl_heads.safetensors`` rides along without a new format.

Names that start with a dot (``.tmp-*``, ``.last-*``, ``.del-*``) are pirl's in-flight work; they are
never a checkpoint, are ignored by every reader, and are removed by the next run's start.
"""

from __future__ import annotations

import os
from pathlib import Path

from lerobot.utils.constants import (
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT_LINK,
    OPTIMIZER_PARAM_GROUPS,
    OPTIMIZER_STATE,
    PRETRAINED_MODEL_DIR,
    RNG_STATE,
    TRAINING_STATE_DIR,
    TRAINING_STEP,
)

__all__ = [
    "CHECKPOINTS_DIR",
    "LAST_CHECKPOINT_LINK",
    "OPTIMIZER_PARAM_GROUPS",
    "OPTIMIZER_STATE",
    "PRETRAINED_MODEL_DIR",
    "RNG_STATE",
    "TRAINING_STATE_DIR",
    "TRAINING_STEP",
    "TRAIN_CONFIG",
    "MODEL_CONFIG",
    "MODEL_WEIGHTS",
    "RL_HEADS",
    "FORMAT_VERSION",
]

TRAIN_CONFIG = "train_config.json"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
RL_HEADS = "rl_heads.safetensors"
FORMAT_VERSION = 1  # training_step.json["pirl_format"]; bump when the layout changes incompatibly

TMP_PREFIX = ".tmp-"
LAST_TMP_PREFIX = ".last-"
DELETE_PREFIX = ".del-"


def checkpoints_root(output_dir: Path | str) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def step_name(step: int, total_steps: int = 0) -> str:
    """LeRobot's ``get_step_identifier``: zero-padded to max(6, digits of the total)."""
    width = max(6, len(str(total_steps)))
    return f"{step:0{width}d}"


def step_dir(output_dir: Path | str, step: int, total_steps: int = 0) -> Path:
    return checkpoints_root(output_dir) / step_name(step, total_steps)


def parse_step(name: str) -> int | None:
    """Step number of a checkpoint directory name, or None for anything that is not one."""
    return int(name) if name.isdigit() else None


def step_dirs(output_dir: Path | str) -> list[tuple[int, Path]]:
    """Finished (renamed-into-place) checkpoint directories, oldest first. Symlinks are not
    checkpoints (``last`` is one), only real directories with an all-digit name."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        step = parse_step(entry.name)
        if step is not None and entry.is_dir() and not entry.is_symlink():
            found.append((step, entry))
    return sorted(found)


def has_checkpoints(output_dir: Path | str) -> bool:
    """Does this output dir hold a run (a finished checkpoint or a ``last`` link, even a dangling
    one)? The one answer the learner (refuse a new run), the launcher and the console share."""
    link = last_link(output_dir)
    return bool(step_dirs(output_dir)) or link.is_symlink() or link.exists()


def leftovers(output_dir: Path | str) -> list[Path]:
    """In-flight work of a writer that died: temporary checkpoint dirs, link and delete debris."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    prefixes = (TMP_PREFIX, LAST_TMP_PREFIX, DELETE_PREFIX)
    return sorted(p for p in root.iterdir() if p.name.startswith(prefixes))


def leftover_owner(path: Path) -> int | None:
    """PID encoded in a leftover's name (``.tmp-000010-4242``), if any."""
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def last_link(output_dir: Path | str) -> Path:
    return checkpoints_root(output_dir) / LAST_CHECKPOINT_LINK


def last_pointer(output_dir: Path | str) -> Path | None:
    """The checkpoint ``last`` points to (resolved path), or None when there is no ``last`` link.
    The target may not exist (a dangling link); readers check."""
    return pointer_target(output_dir, LAST_CHECKPOINT_LINK)


BEST_CHECKPOINT_LINK = "best"
"""``checkpoints/best``: the checkpoint with the highest periodic-eval success (pirl_core/eval/best.py);
switched with the same atomic rename as ``last`` (store.switch_pointer)."""


def pointer_link(output_dir: Path | str, pointer: str) -> Path:
    return checkpoints_root(output_dir) / pointer


def pointer_target(output_dir: Path | str, pointer: str) -> Path | None:
    """The checkpoint ``checkpoints/<pointer>`` points to (resolved; may dangle), or None."""
    link = pointer_link(output_dir, pointer)
    if not link.is_symlink():
        return None
    return (link.parent / os.readlink(link)).resolve()


def checkpoint_output_dir(checkpoint: Path) -> Path:
    """``<output_dir>/checkpoints/<step>`` -> ``<output_dir>``."""
    return checkpoint.resolve().parent.parent
