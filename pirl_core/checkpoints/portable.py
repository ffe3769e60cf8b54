"""A checkpoint whose ``pretrained_model/`` runs anywhere: LeRobot's files, nothing outside them.

The file-by-file rules (config.json, the processor files with the embedded tokenizer step, the
``tokenizer/`` directory; docs/design.md, "Portable checkpoints") belong to the policy family that
writes those files: :mod:`pirl_core.policies.xvla.portable`, whose ``finalize`` every checkpoint
pirl writes goes through. This module applies them to whole checkpoints:

* :func:`export` makes an older checkpoint self-contained (``python -m pirl_core.checkpoints
  export``), on the JSON files, so weights keep their bytes and dtype, and writes the model card
  (``README.md``, :mod:`pirl_core.checkpoints.model_card`);
* :func:`absolute_path_warnings` names what still depends on the machine that wrote it;
* :func:`load_lerobot_processors` loads the processors the way LeRobot's tools do.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout
from pirl_core.policies.xvla.portable import (
    PREPROCESSOR_FILE,
    TOKENIZER_STEP,
    TOKENIZER_SUBDIR,
    PortabilityError,
    finalize,
    read_json,
    resolve_tokenizer,
    tokenizer_name_of,
)

# pirl's own records inside pretrained_model/: the run config names where training read and wrote
# (provenance; evaluation builds the policy from the checkpoint itself, not from those paths).
RECORD_FILES = frozenset({layout.TRAIN_CONFIG, "sft_info.json"})


def absolute_path_warnings(directory: Path) -> list[str]:
    """``file: key = value`` for every string in the JSON files a loader reads (config.json, the
    processor files; not pirl's records, :data:`RECORD_FILES`) of a ``pretrained_model`` directory
    that is an absolute path (or ``~``): the checkpoint depends on where it was written. pirl
    resolves relative names against the checkpoint; LeRobot's tools get the tokenizer from the
    embedded step's state."""
    found = []
    for path in sorted(Path(directory).glob("*.json")):
        if path.name in RECORD_FILES:
            continue
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        for key, value in _strings(data, ""):
            if _looks_absolute(value):
                found.append(f"{path.name}: {key} = {value}")
    return found


def _strings(data: Any, prefix: str):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _strings(v, f"{prefix}[{i}]")
    elif isinstance(data, str):
        yield prefix, data


def _looks_absolute(value: str) -> bool:
    return value.startswith(("/", "~")) or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")


def export(src: Path, out: Path, eval_info: dict[str, Any] | None = None) -> Path:
    """Write the self-contained form of ``src`` to ``out`` (which must not exist or be empty).

    ``src`` is a pirl checkpoint (``.../checkpoints/000040``: its ``pretrained_model/`` and
    ``training_state/`` are copied, the manifest is rewritten) or a bare ``pretrained_model``
    directory (an SFT checkpoint, pirl's shipped one). Weights are copied byte for byte (a float16
    shipped copy stays float16). ``eval_info``: an ``eval_info.json`` (pirl's or ``lerobot-eval``'s)
    whose overall success goes into the model card. Written to a hidden sibling, then renamed.
    """
    from pirl_core.checkpoints import model_card

    src, out = Path(src), Path(out)
    is_checkpoint = (src / layout.PRETRAINED_MODEL_DIR).is_dir()
    model_src = src / layout.PRETRAINED_MODEL_DIR if is_checkpoint else src
    if not (model_src / layout.MODEL_CONFIG).is_file():
        raise PortabilityError(f"{model_src} has no {layout.MODEL_CONFIG}: not a checkpoint")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PortabilityError(f"{out} exists and is not empty (nothing was written)")
    tokenizer = tokenizer_name_of(model_src)
    tokenizer_source = resolve_tokenizer(tokenizer, model_src) if tokenizer else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model_dst = tmp / layout.PRETRAINED_MODEL_DIR if is_checkpoint else tmp
        shutil.copytree(model_src, model_dst, ignore=shutil.ignore_patterns(TOKENIZER_SUBDIR))
        if is_checkpoint:
            shutil.copytree(src / layout.TRAINING_STATE_DIR, tmp / layout.TRAINING_STATE_DIR)
        finalize(model_dst, tokenizer_source)
        model_card.write(model_dst, eval_info=eval_info)
        if is_checkpoint:
            _rewrite_manifest(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rewrite_manifest(checkpoint: Path) -> None:
    """The manifest of ``training_step.json`` after files changed (the writer's format: every file
    but ``training_step.json`` itself, with its size)."""
    from pirl_core.checkpoints.store import _manifest

    path = checkpoint / layout.TRAINING_STATE_DIR / layout.TRAINING_STEP
    record = read_json(path)
    files = _manifest(checkpoint)
    files.pop(f"{layout.TRAINING_STATE_DIR}/{layout.TRAINING_STEP}", None)
    record["files"] = files
    path.write_text(json.dumps(record, indent=4), encoding="utf-8")


def load_lerobot_processors(directory: Path, device: str | None = None):
    """LeRobot's ``make_pre_post_processors`` on a pirl ``pretrained_model`` directory, as LeRobot's
    tools call it. Checkpoints written before the embedded tokenizer step (LeRobot's registered
    ``tokenizer_processor`` naming a relative directory) get that name resolved against the directory."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors

    directory = Path(directory)
    config = PreTrainedConfig.from_pretrained(str(directory), local_files_only=True)
    overrides: dict[str, Any] = {}
    pre_path = directory / PREPROCESSOR_FILE
    steps = read_json(pre_path).get("steps", []) if pre_path.is_file() else []
    if any(step.get("registry_name") == TOKENIZER_STEP for step in steps):
        name = tokenizer_name_of(directory) or TOKENIZER_SUBDIR
        overrides[TOKENIZER_STEP] = {"tokenizer_name": resolve_tokenizer(name, directory)}
    if device is not None:
        overrides["device_processor"] = {"device": device}
    return make_pre_post_processors(config, pretrained_path=str(directory), preprocessor_overrides=overrides)
