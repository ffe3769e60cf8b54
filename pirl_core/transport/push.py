"""The parameter push: what the learner publishes each version and how the actor loads it.

A push is lean: only the tensors that train, cast to the dtype the actor samples in, plus the
sender's frozen-part fingerprint (pirl_core/recipe/fingerprint.py) under a reserved name. An
actor whose own build froze other tensors refuses the push instead of sampling from a mix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pirl_core.errors import TransportError
from pirl_core.recipe.fingerprint import module_fingerprint, trainable_names

FINGERPRINT_KEY = "pirl.frozen_fingerprint"
"""Reserved push entry: the sender's frozen-part fingerprint (sha256 digest as 32 uint8)."""
PUSH_FIX = "start learner and actor with the same --profile and overrides"


def push_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype the actor samples in (None: as stored, float32)."""
    adapter = getattr(module, "adapter", None)
    return getattr(adapter, "compute_dtype", None)


def parameters_to_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """One lean parameter push: the tensors that train, cast to the dtype the actor samples in,
    plus the sender's frozen-part fingerprint. Flat, contiguous CPU copies for the wire
    (safetensors refuses shared or strided storage)."""
    trainable = trainable_names(module)
    dtype = push_dtype(module)
    tensors: dict[str, Tensor] = {}
    for name, tensor in module.state_dict().items():
        if name not in trainable:
            continue
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.to("cpu").contiguous().clone()
    digest = bytes.fromhex(module_fingerprint(module))
    tensors[FINGERPRINT_KEY] = torch.tensor(list(digest), dtype=torch.uint8)
    return tensors


def push_nbytes(tensors: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def load_parameters(module: torch.nn.Module, tensors: dict[str, Tensor]) -> None:
    """Load a lean push into the actor's policy; refuse one built from other frozen tensors or
    carrying other trainable tensors (TransportError, exit 5). bf16 values are widened into the
    float32 parameters, exactly the rounding the learner's autocast applies to them."""
    tensors = dict(tensors)
    found = tensors.pop(FINGERPRINT_KEY, None)
    expected = module_fingerprint(module)
    found_hex = bytes(found.tolist()).hex() if found is not None else "(none)"
    if found_hex != expected:
        raise TransportError(
            f"parameter push refused: frozen-part fingerprint expected {expected[:16]}, found "
            f"{found_hex[:16]} (learner and actor froze different tensors or built them from another "
            f"seed/checkpoint/recipe.train_vlm); {PUSH_FIX}"
        )
    wanted = trainable_names(module)
    missing, unexpected = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
    if missing or unexpected:
        raise TransportError(
            f"parameter push does not match this actor's policy (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}); {PUSH_FIX}"
        )
    try:
        module.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise TransportError(
            f"parameter push does not fit this actor's policy ({first}); {PUSH_FIX}"
        ) from exc
