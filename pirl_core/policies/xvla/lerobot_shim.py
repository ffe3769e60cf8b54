"""The two LeRobot 0.4.4 private methods pirl's X-VLA adapter calls, behind named functions.

Why private methods at all: the adapter splits ``XVLAPolicy`` into the observation pass (run once
per observation) and the action head (run at every denoising step), which LeRobot's public API
(``select_action`` / ``forward``) does not expose. Both pieces need exactly the inputs and dtype
LeRobot's own forward computes, so pirl reuses LeRobot's code instead of copying it:

* ``XVLAPolicy._build_model_inputs(batch)`` — the model inputs (token ids, stacked views, image
  mask, padded proprio, domain id) from a preprocessed batch;
* ``XVLAModel._get_target_dtype()`` — the dtype the model computes in.

Why one module: a LeRobot upgrade that renames or changes either breaks here, in one named place
(``tests/test_xvla_adapter.py`` compares the adapter's forward with LeRobot's), not inside the RL code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def model_inputs(policy: Any, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """``XVLAPolicy._build_model_inputs``: the X-VLA model's inputs for a preprocessed batch."""
    return policy._build_model_inputs(batch)


def target_dtype(model: Any) -> torch.dtype:
    """``XVLAModel._get_target_dtype``: the dtype the model's forward casts its inputs to."""
    return model._get_target_dtype()
