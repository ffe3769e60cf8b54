"""Activation (gradient) checkpointing for any stack of blocks, without touching their classes.

Why a wrapper rather than the libraries' own switches: LeRobot's action transformer has none, and
BART's ``gradient_checkpointing`` only acts in train mode, while pirl keeps X-VLA in eval mode at
all times (dropout off, see ``xvla/adapter.py``). Wrapping each block's ``forward`` in a non-reentrant
``torch.utils.checkpoint`` works in eval mode, under autocast, and leaves no-grad passes (the
actor's sampling) untouched. Forward values are identical; the backward recomputes each block's
activations instead of keeping them, so gradients are equal up to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpoint_blocks(blocks: Iterable[nn.Module]) -> int:
    """Wrap every block's forward; returns how many were wrapped (idempotent per block)."""
    count = 0
    for block in blocks:
        if getattr(block, "_pirl_checkpointed", False):
            continue
        inner = block.forward

        def forward(*args: Any, _inner=inner, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        block.forward = forward  # type: ignore[method-assign]
        block._pirl_checkpointed = True  # type: ignore[attr-defined]
        count += 1
    return count
