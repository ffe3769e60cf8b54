"""The π0/π0.5 architectures pirl builds from config, and the one shim that makes LeRobot build them.

LeRobot's ``PI0Config``/``PI05Config`` name their backbones by openpi variant only
(``paligemma_variant``, ``action_expert_variant`` ∈ {"gemma_2b", "gemma_300m"}) and
``PaliGemmaWithExpertModel`` hard-codes the SigLIP So400m vision tower and PaliGemma's 257,152-token
vocabulary. A π0.5 is ~3 B parameters at those sizes: no test or CPU experiment can build it. So
pirl keeps LeRobot's classes and code and changes only *which numbers* they read, inside
:func:`lerobot_pi_construction`:

* ``get_gemma_config(variant)`` (module global of ``modeling_pi0``/``modeling_pi05``) returns the
  arch's Gemma widths for the two variant names;
* the ``PaliGemmaForConditionalGeneration`` and ``GemmaForCausalLM`` names it constructs with are
  wrapped: the wrapper sets the arch's vision tower, projector width and vocabulary on the config
  LeRobot prepared, then builds the stock class — and gives it openpi's norms
  (:mod:`pirl_core.policies.pi.openpi_gemma`) when the patched transformers is not installed;
* LeRobot's "patched transformers?" guard (``transformers.models.siglip.check``) is answered
  while the shim is active, because the shim supplies what the guard guards.

Outside the context manager, LeRobot is untouched. ``size = "full"`` keeps every LeRobot number
(``PiArch`` is ``None``) and only adds the norms; so does a pretrained checkpoint.

LeRobot constraints every arch obeys: the VLM and the action expert share depth, head count,
key/value heads and head width (their attention is computed jointly), and the head count is 8
(``compute_layer_complete`` reshapes with ``8 * head_dim``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

LEROBOT_HEADS = 8  # compute_layer_complete reshapes the joint attention output with 1 * 8 * head_dim


@dataclass(frozen=True)
class PiArch:
    """One π0/π0.5 size built from config (random init)."""

    depth: int  # layers of the VLM and of the action expert (shared)
    head_dim: int
    kv_heads: int
    vlm_width: int
    vlm_mlp: int
    expert_width: int
    expert_mlp: int
    vision_width: int
    vision_depth: int
    vision_heads: int
    vision_mlp: int
    patch_size: int
    vocab_size: int  # >= the tokenizer's size; pirl's LIBERO tokenizer has a few hundred tokens

    def gemma(self, variant: str) -> Any:
        """LeRobot's ``GemmaConfig`` for a variant name, at this arch's sizes."""
        from lerobot.policies.pi05.modeling_pi05 import GemmaConfig

        wide = variant == "gemma_2b"  # the VLM's variant in every LeRobot π config
        return GemmaConfig(
            width=self.vlm_width if wide else self.expert_width,
            depth=self.depth,
            mlp_dim=self.vlm_mlp if wide else self.expert_mlp,
            num_heads=LEROBOT_HEADS,
            num_kv_heads=self.kv_heads,
            head_dim=self.head_dim,
        )

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


PI_ARCHS: dict[str, PiArch] = {
    # seconds per update on a laptop CPU; tests and the LIBERO smoke profile
    "tiny": PiArch(
        depth=2, head_dim=8, kv_heads=1, vlm_width=64, vlm_mlp=128, expert_width=32, expert_mlp=64,
        vision_width=32, vision_depth=1, vision_heads=2, vision_mlp=64, patch_size=16, vocab_size=512,
    ),
    # ~2 M parameters (X-VLA "small"'s size): CPU experiments
    "small": PiArch(
        depth=4, head_dim=16, kv_heads=1, vlm_width=160, vlm_mlp=512, expert_width=96, expert_mlp=320,
        vision_width=96, vision_depth=2, vision_heads=4, vision_mlp=384, patch_size=16, vocab_size=512,
    ),
}  # fmt: skip


def _vision_and_vocab(config: Any, arch: PiArch) -> None:
    """Set the arch's SigLIP tower, projector and vocabulary on a ``PaliGemmaConfig`` LeRobot prepared."""
    vision = config.vision_config
    vision.hidden_size = arch.vision_width
    vision.num_hidden_layers = arch.vision_depth
    vision.num_attention_heads = arch.vision_heads
    vision.intermediate_size = arch.vision_mlp
    vision.patch_size = arch.patch_size
    vision.projection_dim = config.text_config.hidden_size
    config.text_config.vocab_size = arch.vocab_size
    config._vocab_size = arch.vocab_size  # noqa: SLF001


def _wrapped_paligemma(cls: type, arch: PiArch | None, adapt: bool) -> Callable[..., Any]:
    def build(config: Any) -> Any:
        from pirl_core.policies.pi.openpi_gemma import adapt_paligemma

        if arch is not None:
            _vision_and_vocab(config, arch)
        model = cls(config=config)
        if adapt:
            adapt_paligemma(model)
        return model

    return build


def _wrapped_gemma(cls: type, arch: PiArch | None, adapt: bool) -> Callable[..., Any]:
    def build(config: Any) -> Any:
        from pirl_core.policies.pi.openpi_gemma import adapt_gemma

        if arch is not None:
            config.vocab_size = arch.vocab_size
        model = cls(config=config)
        if adapt:
            adapt_gemma(model.model)
        return model

    return build


def _answering_check_module() -> types.ModuleType:
    module = types.ModuleType("transformers.models.siglip.check")
    module.check_whether_transformers_replace_is_installed_correctly = lambda: True  # type: ignore[attr-defined]
    return module


@contextmanager
def lerobot_pi_construction(arch: PiArch | None) -> Iterator[None]:
    """Build LeRobot π0/π0.5 policies at ``arch``'s sizes (None: LeRobot's own) inside this block."""
    from lerobot.policies.pi0 import modeling_pi0
    from lerobot.policies.pi05 import modeling_pi05

    from pirl_core.policies.pi.openpi_gemma import install_gated_residual, openpi_transformers_installed

    adapt = not openpi_transformers_installed()
    install_gated_residual()
    saved: list[tuple[Any, str, Any]] = []
    for module in (modeling_pi0, modeling_pi05):
        replacements: dict[str, Any] = {
            "PaliGemmaForConditionalGeneration": _wrapped_paligemma(
                module.PaliGemmaForConditionalGeneration, arch, adapt
            ),
            "GemmaForCausalLM": _wrapped_gemma(module.GemmaForCausalLM, arch, adapt),
        }
        if arch is not None:
            replacements["get_gemma_config"] = arch.gemma
        for name, value in replacements.items():
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
    check_name = "transformers.models.siglip.check"
    import transformers.models.siglip as siglip

    had_check = hasattr(siglip, "check")
    if adapt:
        sys.modules[check_name] = _answering_check_module()
        siglip.check = sys.modules[check_name]  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)
        if adapt:
            sys.modules.pop(check_name, None)
            if not had_check and hasattr(siglip, "check"):
                del siglip.check
