"""π's transformer passes split at the prefix: the VLM once per observation, the expert per step.

LeRobot runs the VLM prefix and the action-expert suffix either jointly (``compute_layer_complete``,
training) or prefix-then-suffix through transformers' KV cache (``sample_actions``). The prefix
never attends to the suffix (block-causal mask), so both give the same suffix output; the
cached form is what a K-step flow chain needs: the prefix (images + prompt: hundreds of tokens) is
encoded once and each denoising step runs only the expert over the chunk.

pirl cannot use the cached form through transformers (stock ``GemmaModel.forward`` lacks openpi's
adaptive norms, and its cache mutates as the suffix passes through it), so the two passes are
written here over LeRobot's own modules and weights, one Gemma layer at a time, exactly as
``compute_layer_complete`` computes them (RoPE from the VLM's rotary embedding, eager attention with
the VLM layer's scaling, gated residuals). ``tests/test_pi_family.py`` checks the cached suffix
output against LeRobot's joint pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pirl_core.policies.pi.openpi_gemma import gated_residual


@dataclass
class PrefixCache:
    """The VLM's per-layer keys and values over the prefix: (B, layers, kv_heads, P, head_dim)."""

    keys: Tensor
    values: Tensor


def _attention(attn_module: nn.Module, q: Tensor, k: Tensor, v: Tensor, mask4d: Tensor) -> Tensor:
    from transformers.models.gemma import modeling_gemma

    out, _ = modeling_gemma.eager_attention_forward(attn_module, q, k, v, mask4d, attn_module.scaling)
    return out.reshape(out.shape[0], out.shape[1], -1)


def _qkv(layer: nn.Module, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    shape = (*hidden.shape[:-1], -1, layer.self_attn.head_dim)
    q = layer.self_attn.q_proj(hidden).view(shape).transpose(1, 2)
    k = layer.self_attn.k_proj(hidden).view(shape).transpose(1, 2)
    v = layer.self_attn.v_proj(hidden).view(shape).transpose(1, 2)
    return q, k, v


def _layer(
    layer: nn.Module,
    attn_module: nn.Module,
    hidden: Tensor,
    cos: Tensor,
    sin: Tensor,
    mask4d: Tensor,
    cond: Tensor | None,
    past_k: Tensor | None,
    past_v: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One Gemma layer (openpi norms); returns the new hidden states and this layer's own k, v."""
    from transformers.models.gemma import modeling_gemma

    normed, gate = layer.input_layernorm(hidden, cond=cond)
    q, k, v = _qkv(layer, normed)
    q, k = modeling_gemma.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
    k_all = k if past_k is None else torch.cat([past_k, k], dim=2)
    v_all = v if past_v is None else torch.cat([past_v, v], dim=2)
    att = _attention(attn_module, q, k_all, v_all, mask4d)
    if att.dtype != layer.self_attn.o_proj.weight.dtype and not torch.is_autocast_enabled():
        att = att.to(layer.self_attn.o_proj.weight.dtype)
    hidden = gated_residual(hidden, layer.self_attn.o_proj(att), gate)
    normed, gate = layer.post_attention_layernorm(hidden, cond=cond)
    return gated_residual(hidden, layer.mlp(normed), gate), k, v


def gemma_pass(
    layers: nn.ModuleList,
    final_norm: nn.Module,
    rotary: nn.Module,
    attn_modules: list[nn.Module],
    hidden: Tensor,
    mask4d: Tensor,
    position_ids: Tensor,
    cond: Tensor | None = None,
    past: PrefixCache | None = None,
    recompute: bool = False,
) -> tuple[Tensor, PrefixCache]:
    """One stream through Gemma ``layers`` (openpi norms), attending to ``past`` keys/values first
    when given. Returns the final-normed hidden states and this stream's own keys/values.
    ``recompute``: activation checkpointing per layer when gradients are on (same values)."""
    cos, sin = rotary(hidden, position_ids)
    keys, values = [], []
    for i, layer in enumerate(layers):
        past_k = None if past is None else past.keys[:, i]
        past_v = None if past is None else past.values[:, i]
        args = (layer, attn_modules[i], hidden, cos, sin, mask4d, cond, past_k, past_v)
        if recompute and torch.is_grad_enabled():
            hidden, k, v = checkpoint(_layer, *args, use_reentrant=False)
        else:
            hidden, k, v = _layer(*args)
        keys.append(k)
        values.append(v)
    out, _ = final_norm(hidden, cond=cond)
    return out, PrefixCache(torch.stack(keys, dim=1), torch.stack(values, dim=1))
