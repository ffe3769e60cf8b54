"""Writing an SFT result as a portable LeRobot pretrained-model directory.

The policy's own files are the family's (``SftSupport.save``); this module adds what every SFT
checkpoint carries (``sft_info.json``, the model card) and writes the whole atomically.

X-VLA's layout (what ``XVLAPolicy.from_pretrained``, ``lerobot-eval`` and pirl's
``policy.size=pretrained`` read)::

    OUT/config.json, model.safetensors            policy.save_pretrained (float32)
    OUT/policy_preprocessor*.json, policy_postprocessor*.json   LeRobot's processor files
    OUT/policy_preprocessor_step_2.safetensors     the tokenizer's files as the tokenizer step's state
    OUT/tokenizer/                                 a copy of the tokenizer the model was trained with
    OUT/sft_info.json                              how it was trained (dataset name, steps, losses)
    OUT/README.md                                  the model card

Self-contained by :func:`pirl_core.policies.xvla.portable.finalize` (the same rules as every RL
checkpoint): ``config.json`` and the preprocessor name the tokenizer ``"tokenizer"`` (relative: an
absolute path of this machine would break the checkpoint anywhere else, and a marker for "pirl's
shipped tokenizer" would silently change meaning if that vocabulary were ever rebuilt), and
``config.json`` carries the image size (``resize_imgs_with_padding``), and the preprocessor's
tokenizer step carries the tokenizer itself as state, for LeRobot's tools run from anywhere.

π0 / π0.5 (:func:`pirl_core.policies.pi.adapter.save_pi_pretrained`, what an RL checkpoint of π
holds): ``config.json``, ``model.safetensors``, both processor pipelines with the tokenizer and the
statistics inside, ``pirl_pi_arch.json`` (tiny / small) and ``pirl_pi_control.json``.

Written into a hidden sibling temp directory and renamed into place: a crash never leaves a
half-written ``OUT`` that a later run would load.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pirl_core.checkpoints import model_card

SFT_INFO = model_card.SFT_INFO


def save_sft_checkpoint(save: Callable[[Path], None], out: Path, provenance: dict | None = None) -> int:
    """``save(directory)`` writes the policy's files (the family's ``SftSupport.save``); returns the
    size of ``model.safetensors`` in bytes. ``provenance`` (how it was trained: dataset name,
    steps, losses) goes to ``sft_info.json``; LeRobot ignores that file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save(tmp)
    if provenance is not None:
        text = json.dumps(provenance, indent=2, sort_keys=True, allow_nan=True)
        (tmp / SFT_INFO).write_text(text + "\n")
    model_card.write(tmp)
    if out.exists():  # an empty directory (check_out_dir refused anything else)
        out.rmdir()
    os.replace(tmp, out)
    return (out / "model.safetensors").stat().st_size
