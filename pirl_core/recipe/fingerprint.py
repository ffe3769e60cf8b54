"""Which tensors of a module train, and a hash of all the others.

Lean parameter pushes (pirl_core/transport/push.py) carry only the tensors that train; the actor
uses its own build's copies of the rest, so both sides must hold the same ones. With random init
they are determined by the seed; pretrained, by the checkpoint. ``build_actor_critic`` takes the
fingerprint once at build (frozen tensors never change) and every push names it.
"""

from __future__ import annotations

import hashlib

import torch


def trainable_names(module: torch.nn.Module) -> set[str]:
    """Every state-dict name of a parameter that trains (tied weights under all their names)."""
    return {n for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}


def frozen_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every state-dict tensor that does not train (name, dtype, shape, bytes)."""
    trainable = trainable_names(module)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name in trainable:
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """The fingerprint taken at build (an ActorCritic's), else computed now (any other module)."""
    cached = getattr(module, "frozen_fingerprint", None)
    return cached if isinstance(cached, str) else frozen_fingerprint(module)
