"""Refuse a device this machine lacks, with the flag that fixes it.

Checked right before weights move to the device (after the checks that need no device, such as
whether pretrained weights are cached), so each error names the first thing to fix.
"""

from __future__ import annotations

import torch

from pirl_core.errors import ConfigError


def check_device(device: str) -> None:
    """Fail before building anything when the profile names a device this machine lacks
    (bench defaults to CUDA; the same run on a CPU box needs --policy.device=cpu)."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError("policy.device", device, "a torch device such as 'cpu' or 'cuda:0'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "policy.device",
            device,
            "'cpu' on this machine (no CUDA device visible)",
            hint="pass --policy.device=cpu",
        )
