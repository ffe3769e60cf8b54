"""The two pieces of openpi's patched transformers that LeRobot's π0/π0.5 need, for stock transformers.

Why: LeRobot 0.4.4's ``PI0Policy``/``PI05Policy`` are written against a patched transformers
(``transformers@fix/lerobot_openpi``, a git branch; ``lerobot[pi]`` installs it, PyPI cannot). The
patch changes Gemma in ways the policies rely on:

* ``GemmaRMSNorm(x, cond)`` returns ``(normed, gate)``. With a condition width (π0.5's action
  expert, ``use_adarms``) it has no ``weight`` but a ``dense`` layer that maps the flow time's
  embedding to (scale, shift, gate): adaptive RMSNorm. Without one it is the usual Gemma norm.
* ``modeling_gemma._gated_residual(x, y, gate)`` = ``x + y * gate`` (``x + y`` without a gate).
* ``PaliGemmaModel.get_image_features`` does *not* divide by sqrt(text width) (openpi scales the
  language embeddings up instead, which LeRobot's ``embed_prefix`` does itself).

LeRobot's joint pass (``compute_layer_complete``, the training forward) needs exactly these.
pirl's cached rollout pass (:mod:`pirl_core.policies.pi.layers`) uses the same modules. On a
machine where the patched transformers is installed, nothing here is applied
(:func:`openpi_transformers_installed`); elsewhere :func:`adapt_to_openpi` rebuilds the norms of a
constructed model in place. Parameter names are the patched ones (``input_layernorm.dense.weight``),
so checkpoints move between the two installs unchanged.
"""

from __future__ import annotations

import types

import torch
from torch import Tensor, nn


def openpi_transformers_installed() -> bool:
    """True when transformers carries openpi's patch (LeRobot's own check says so)."""
    try:
        from transformers.models.siglip import check  # type: ignore[attr-defined]
    except ImportError:
        return False
    return bool(check.check_whether_transformers_replace_is_installed_correctly())


class AdaRMSNorm(nn.Module):
    """Gemma's RMSNorm, adaptive when ``cond_dim`` is set (parameter layout of openpi's patch)."""

    def __init__(self, dim: int, eps: float = 1e-6, cond_dim: int | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.dim = dim
        self.cond_dim = cond_dim
        if cond_dim is None:
            self.weight = nn.Parameter(torch.zeros(dim))
            self.dense = None
        else:
            self.dense = nn.Linear(cond_dim, 3 * dim, bias=True)
            nn.init.zeros_(self.dense.weight)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        dtype = x.dtype
        var = torch.mean(torch.square(x.float()), dim=-1, keepdim=True)
        normed = x * torch.rsqrt(var + self.eps)
        if cond is None or self.dense is None:
            return (normed * (1.0 + self.weight.float())).to(dtype), None
        if cond.shape[-1] != self.cond_dim:
            raise ValueError(
                f"adaptive RMSNorm expects a condition of width {self.cond_dim}, got {cond.shape[-1]}"
            )
        modulation = self.dense(cond)
        if x.dim() == 3:
            modulation = modulation.unsqueeze(1)
        scale, shift, gate = torch.chunk(modulation, 3, dim=-1)
        normed = normed * (1 + scale.to(torch.float32)) + shift.to(torch.float32)
        return normed.to(dtype), gate.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, cond_dim={self.cond_dim}"


def gated_residual(x: Tensor | None, y: Tensor | None, gate: Tensor | None) -> Tensor | None:
    if x is None or y is None:
        return x if x is not None else y
    return x + y if gate is None else x + y * gate


def _adaptive_norm_like(norm: nn.Module, cond_dim: int | None) -> AdaRMSNorm:
    dim = int(norm.weight.shape[0])
    new = AdaRMSNorm(dim, eps=float(norm.eps), cond_dim=cond_dim)
    if cond_dim is None:
        with torch.no_grad():
            new.weight.copy_(norm.weight)
    return new.to(device=norm.weight.device)


def _replace_norms(gemma_model: nn.Module, cond_dim: int | None) -> None:
    """Swap every Gemma norm of a ``GemmaModel`` (per layer and final) for :class:`AdaRMSNorm`."""
    for layer in gemma_model.layers:
        layer.input_layernorm = _adaptive_norm_like(layer.input_layernorm, cond_dim)
        layer.post_attention_layernorm = _adaptive_norm_like(layer.post_attention_layernorm, cond_dim)
    gemma_model.norm = _adaptive_norm_like(gemma_model.norm, cond_dim)


def _unscaled_image_features(self, pixel_values: Tensor) -> Tensor:
    """openpi's ``get_image_features``: SigLIP then the projector, no 1/sqrt(width) factor."""
    out = self.vision_tower(pixel_values)
    return self.multi_modal_projector(out.last_hidden_state)


def adapt_gemma(gemma_model: nn.Module) -> None:
    """Give a stock ``GemmaModel`` openpi's norms (adaptive when its config says ``use_adarms``)."""
    config = gemma_model.config
    cond_dim = getattr(config, "adarms_cond_dim", None) if getattr(config, "use_adarms", False) else None
    _replace_norms(gemma_model, cond_dim)


def adapt_paligemma(paligemma: nn.Module) -> None:
    """Give a stock ``PaliGemmaForConditionalGeneration`` openpi's norms and image scaling."""
    adapt_gemma(paligemma.model.language_model)
    paligemma.model.get_image_features = types.MethodType(_unscaled_image_features, paligemma.model)


def install_gated_residual() -> None:
    """LeRobot's joint pass calls ``modeling_gemma._gated_residual``; stock transformers has none.
    Adding a function that no stock code calls changes nothing else."""
    from transformers.models.gemma import modeling_gemma

    if not hasattr(modeling_gemma, "_gated_residual"):
        modeling_gemma._gated_residual = gated_residual  # noqa: SLF001
