"""The rules that make an X-VLA ``pretrained_model/`` directory run anywhere: LeRobot's files, nothing outside them.

What "self-contained" means here, file by file (docs/design.md, "Portable checkpoints"):

* ``config.json`` (LeRobot's ``XVLAConfig``): ``resize_imgs_with_padding`` = the image size the
  policy was trained on, so ``XVLAPolicy`` resizes frames of any render size itself (LeRobot's
  ``LiberoEnv`` renders 256 px); ``normalization_mapping.VISUAL = MEAN_STD`` (identity wherever no
  statistics are given; ``lerobot-train`` gives ImageNet's, see
  :func:`pirl_core.policies.xvla.build.lerobot_normalization_mapping`); ``tokenizer_name =
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

:func:`finalize` applies these rules to a directory LeRobot's ``save_pretrained`` just wrote (the
adapter's ``save_pretrained`` and SFT's checkpoint writer call it). Why in the policy family and
not in :mod:`pirl_core.checkpoints.portable` (which exports whole checkpoints and writes the model
card): saving is the policy's job, and a policy must not import the checkpoint layer above it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub.constants import CONFIG_NAME

from pirl_core.policies.xvla.hub import local_checkpoint_dir

TOKENIZER_SUBDIR = "tokenizer"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
TOKENIZER_STEP = "tokenizer_processor"  # LeRobot's registered step (checkpoints before the embedded one)
# The embedded step's import path, as processor JSON files name it (pirl's shipped checkpoint too):
# the module pirl_core/policies/embedded_tokenizer.py must keep this path.
EMBEDDED_TOKENIZER_CLASS = "pirl_core.policies.embedded_tokenizer.EmbeddedTokenizerStep"
NORMALIZER_STEP = "normalizer_processor"
PORTABLE_VISUAL_NORM = "MEAN_STD"


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
    cfg = directory / CONFIG_NAME
    return read_json(cfg).get("tokenizer_name") if cfg.is_file() else None


# --------------------------------------------------------------------------- tokenizer


def resolve_tokenizer(name: str, directory: Path) -> str:
    """Where the tokenizer ``name`` (as stored in ``directory``'s files) lives: a directory inside
    the checkpoint, an absolute directory, a directory relative to pirl's source tree (old
    checkpoints named the shipped one that way), or else a hub name (returned unchanged)."""
    inside = directory / name
    if not Path(name).is_absolute() and inside.is_dir():
        return str(inside)
    candidate = local_checkpoint_dir(name)
    if candidate.is_dir():
        return str(candidate.resolve())
    return name


def copy_tokenizer(source: str, target: Path) -> None:
    """Copy a tokenizer directory's files to ``target`` (or save a cached hub tokenizer there)."""
    from pirl_core.policies.embedded_tokenizer import TOKENIZER_FILES

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
    cfg_path = directory / CONFIG_NAME
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
