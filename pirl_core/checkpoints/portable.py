"""A ``pretrained_model/`` directory that runs anywhere: LeRobot's files, nothing outside them.

What "self-contained" means here, file by file (docs/design.md, "Portable checkpoints"):

* ``config.json`` (LeRobot's ``XVLAConfig``): ``resize_imgs_with_padding`` = the image size the
  policy was trained on, so ``XVLAPolicy`` resizes frames of any render size itself (LeRobot's
  ``LiberoEnv`` renders 256 px); ``normalization_mapping.VISUAL = MEAN_STD`` (identity wherever no
  statistics are given; ``lerobot-train`` gives ImageNet's, see
  :func:`pirl_core.policies.xvla_config.lerobot_normalization_mapping`); ``tokenizer_name =
  "tokenizer"``.
* ``policy_preprocessor.json`` / ``policy_postprocessor.json``: LeRobot's registered steps (rename,
  batch, ``xvla_add_domain_id``, device, normaliser / unnormaliser) and one pirl step, the tokenizer:
  :class:`pirl_core.policies.embedded_tokenizer.EmbeddedTokenizerStep`, named by its import path
  (LeRobot's loader imports it), whose state file ``policy_preprocessor_step_N.safetensors`` holds
  the tokenizer's files. LeRobot loads that state from the checkpoint directory itself, so LeRobot's
  tools run the checkpoint from any working directory (any Python with pirl installed).
* ``tokenizer/``: the same tokenizer as a directory (16 KB for pirl's word-level one), which
  ``config.json``'s relative ``tokenizer_name`` names; pirl's loaders resolve it against the
  checkpoint directory. Never an absolute path of the machine that wrote it.
* ``README.md``: the model card (:mod:`pirl_core.checkpoints.model_card`).

:func:`finalize` applies these rules to a directory LeRobot's ``save_pretrained`` just wrote (every
checkpoint pirl writes goes through it); :func:`export` applies them to an older checkpoint
(``python -m pirl_core.checkpoints export``), on the JSON files, so weights keep their bytes and dtype.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from pirl_core.checkpoints import layout

TOKENIZER_SUBDIR = "tokenizer"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
TOKENIZER_STEP = "tokenizer_processor"  # LeRobot's registered step (checkpoints before the embedded one)
EMBEDDED_TOKENIZER_CLASS = "pirl_core.policies.embedded_tokenizer.EmbeddedTokenizerStep"
NORMALIZER_STEP = "normalizer_processor"
PORTABLE_VISUAL_NORM = "MEAN_STD"
# Files of a saved tokenizer directory (transformers' names); anything else there is left behind.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "added_tokens.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class PortabilityError(ValueError):
    """A pretrained_model directory that cannot be made self-contained (names file and reason)."""


# --------------------------------------------------------------------------- JSON rules


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any, indent: int = 4) -> None:
    """JSON as LeRobot writes it (config.json: indent 4; processor files: indent 2, see callers)."""
    path.write_text(json.dumps(data, indent=indent), encoding="utf-8")


def image_size(config: dict[str, Any]) -> list[int] | None:
    """[H, W] of the first VISUAL input feature of a ``config.json`` dict (None: no images)."""
    for feature in (config.get("input_features") or {}).values():
        if feature.get("type") == "VISUAL":
            shape = list(feature["shape"])
            return [int(shape[-2]), int(shape[-1])]
    return None


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` rules (see the module docstring); X-VLA only, other types unchanged."""
    if config.get("type") != "xvla":
        return config
    out = dict(config)
    out["tokenizer_name"] = TOKENIZER_SUBDIR
    if out.get("resize_imgs_with_padding") is None:
        out["resize_imgs_with_padding"] = image_size(out)
    mapping = dict(out.get("normalization_mapping") or {})
    mapping.setdefault("STATE", "IDENTITY")
    mapping.setdefault("ACTION", "IDENTITY")
    mapping["VISUAL"] = PORTABLE_VISUAL_NORM
    out["normalization_mapping"] = mapping
    return out


def portable_preprocessor(pipeline: dict[str, Any]) -> dict[str, Any]:
    """``policy_preprocessor.json`` rules: the tokenizer step is the embedded one (import path, label
    ``"tokenizer"``, its state file, see :func:`embed_tokenizer`); the normaliser's VISUAL entry is
    ``MEAN_STD`` (as config.json: the normaliser is built from it on load)."""
    out = json.loads(json.dumps(pipeline))
    name = re.sub(r"[^a-zA-Z0-9_]", "_", str(out.get("name", "policy_preprocessor")).lower())
    for index, step in enumerate(out.get("steps", [])):
        cfg = step.get("config") or {}
        if is_tokenizer_step(step):
            # The entry LeRobot's save_pretrained writes for this step (key order included), with its
            # name for an unregistered step's state file (DataProcessorPipeline._save_pretrained).
            cfg["tokenizer_name"] = TOKENIZER_SUBDIR
            out["steps"][index] = {
                "class": EMBEDDED_TOKENIZER_CLASS,
                "config": cfg,
                "state_file": f"{name}_step_{index}.safetensors",
            }
        if step.get("registry_name") == NORMALIZER_STEP and "norm_map" in cfg:
            cfg["norm_map"] = {**cfg["norm_map"], "VISUAL": PORTABLE_VISUAL_NORM}
    return out


def is_tokenizer_step(step: dict[str, Any]) -> bool:
    """A processor-JSON step entry for the tokenizer: LeRobot's registered one or pirl's embedded one."""
    return step.get("registry_name") == TOKENIZER_STEP or step.get("class") == EMBEDDED_TOKENIZER_CLASS


def embed_tokenizer(directory: Path, pipeline: dict[str, Any]) -> None:
    """Write the state file of ``pipeline``'s embedded tokenizer step (the files of
    ``directory/tokenizer``) where LeRobot's loader looks for it: ``directory/<state_file>``."""
    from safetensors.torch import save_file

    from pirl_core.policies.embedded_tokenizer import read_tokenizer_files

    for step in pipeline.get("steps", []):
        if step.get("class") == EMBEDDED_TOKENIZER_CLASS:
            save_file(read_tokenizer_files(directory / TOKENIZER_SUBDIR), str(directory / step["state_file"]))


def tokenizer_name_of(directory: Path) -> str | None:
    """The tokenizer name a ``pretrained_model`` directory's preprocessor (else config) uses."""
    pre = directory / PREPROCESSOR_FILE
    if pre.is_file():
        for step in read_json(pre).get("steps", []):
            if is_tokenizer_step(step):
                return (step.get("config") or {}).get("tokenizer_name")
    cfg = directory / layout.MODEL_CONFIG
    return read_json(cfg).get("tokenizer_name") if cfg.is_file() else None


# --------------------------------------------------------------------------- tokenizer


def resolve_tokenizer(name: str, directory: Path) -> str:
    """Where the tokenizer ``name`` (as stored in ``directory``'s files) lives: a directory inside
    the checkpoint, an absolute directory, a directory relative to pirl's source tree (old
    checkpoints named the shipped one that way), or else a hub name (returned unchanged)."""
    from pirl_core.policies.xvla_config import local_checkpoint_dir

    inside = directory / name
    if not Path(name).is_absolute() and inside.is_dir():
        return str(inside)
    candidate = local_checkpoint_dir(name)
    if candidate.is_dir():
        return str(candidate.resolve())
    return name


def copy_tokenizer(source: str, target: Path) -> None:
    """Copy a tokenizer directory's files to ``target`` (or save a cached hub tokenizer there)."""
    src = Path(source)
    if src.is_dir() and src.resolve() == target.resolve():
        return
    if target.exists():
        shutil.rmtree(target)
    if src.is_dir():
        names = [n for n in TOKENIZER_FILES if (src / n).is_file()]
        if not names:
            raise PortabilityError(f"tokenizer directory {src} holds none of {list(TOKENIZER_FILES)}")
        target.mkdir(parents=True)
        for name in names:
            shutil.copy2(src / name, target / name)
        return
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as exc:  # not cached, not a directory
        raise PortabilityError(
            f"tokenizer {source!r} is neither a directory nor in the local Hugging Face cache"
        ) from exc
    tok.save_pretrained(str(target))


# --------------------------------------------------------------------------- whole directory


def finalize(directory: Path, tokenizer_source: str | None = None) -> None:
    """Make the ``pretrained_model`` directory LeRobot's ``save_pretrained`` just wrote self-contained
    (in place): config.json and the preprocessor per the rules, the tokenizer copied inside.
    ``tokenizer_source``: where the tokenizer lives now (default: what the files name)."""
    directory = Path(directory)
    cfg_path = directory / layout.MODEL_CONFIG
    if not cfg_path.is_file():
        return
    config = read_json(cfg_path)
    if config.get("type") != "xvla":
        return
    source = tokenizer_source or tokenizer_name_of(directory)
    if source is None:
        raise PortabilityError(f"{cfg_path} names no tokenizer")
    copy_tokenizer(resolve_tokenizer(source, directory), directory / TOKENIZER_SUBDIR)
    write_json(cfg_path, portable_config(config))
    pre_path = directory / PREPROCESSOR_FILE
    if pre_path.is_file():
        pipeline = portable_preprocessor(read_json(pre_path))
        embed_tokenizer(directory, pipeline)
        write_json(pre_path, pipeline, indent=2)


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
