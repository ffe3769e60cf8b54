"""Writing an SFT result as a portable LeRobot pretrained-model directory.

Layout (what ``XVLAPolicy.from_pretrained`` and pirl's ``policy.size=pretrained`` read)::

    OUT/config.json, model.safetensors            policy.save_pretrained (float32)
    OUT/policy_preprocessor*.json, policy_postprocessor*.json   LeRobot's processor files
    OUT/tokenizer/                                 a copy of the tokenizer the model was trained with
    OUT/sft_info.json                              how it was trained (dataset name, steps, losses)

Why the tokenizer is copied and ``config.json`` names it ``"tokenizer"`` (relative): an absolute path
of this machine would break the checkpoint anywhere else (it is shipped in the repository), and a
marker for "pirl's shipped tokenizer" would silently change meaning if that vocabulary were ever
rebuilt with more words (ids shift, the embedding rows no longer match). The copy is 16 KB.
pirl resolves the relative name against the checkpoint directory
(:func:`pirl_core.policies.xvla_config.checkpoint_tokenizer`); a LeRobot tool that builds the
tokenizer itself needs ``tokenizer_name`` pointed at ``OUT/tokenizer``.

Written into a hidden sibling temp directory and renamed into place: a crash never leaves a
half-written ``OUT`` that a later run would load.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pirl_core.policies.xvla_config import CHECKPOINT_TOKENIZER_DIR

SFT_INFO = "sft_info.json"


def _tokenizer_step(pipeline):
    return next(s for s in pipeline.steps if type(s).__name__ == "TokenizerProcessorStep")


def save_sft_checkpoint(
    policy, policy_pre, policy_post, tokenizer_path: str, out: Path, provenance: dict | None = None
) -> int:
    """Save and return the size of ``model.safetensors`` in bytes. ``provenance`` (how it was
    trained: dataset name, steps, losses) goes to ``sft_info.json``; LeRobot ignores that file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    step = _tokenizer_step(policy_pre)
    saved_names = (policy.config.tokenizer_name, step.tokenizer_name)
    policy.config.tokenizer_name = CHECKPOINT_TOKENIZER_DIR
    step.tokenizer_name = CHECKPOINT_TOKENIZER_DIR
    try:
        policy.save_pretrained(tmp)
        policy_pre.save_pretrained(tmp)
        policy_post.save_pretrained(tmp)
    finally:
        policy.config.tokenizer_name, step.tokenizer_name = saved_names
    if Path(tokenizer_path).is_dir():
        shutil.copytree(tokenizer_path, tmp / CHECKPOINT_TOKENIZER_DIR)
    else:  # a hub tokenizer from the local cache: write the loaded one
        step.input_tokenizer.save_pretrained(str(tmp / CHECKPOINT_TOKENIZER_DIR))
    if provenance is not None:
        text = json.dumps(provenance, indent=2, sort_keys=True, allow_nan=True)
        (tmp / SFT_INFO).write_text(text + "\n")
    if out.exists():  # an empty directory (check_out_dir refused anything else)
        out.rmdir()
    os.replace(tmp, out)
    return (out / "model.safetensors").stat().st_size
