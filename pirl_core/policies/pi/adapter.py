"""π0 / π0.5 (LeRobot ``PI0Policy`` / ``PI05Policy``) as PI-RL flow policies.

The split (LeRobot's ``PI0Pytorch``/``PI05Pytorch``, openpi's design):

* **prefix** — SigLIP over every view, the prompt's token embeddings (π0.5's prompt carries the
  state as 256-bin integers), through the PaliGemma language model. Depends on the observation
  only: :meth:`encode` runs it once and keeps every layer's keys/values
  (:mod:`pirl_core.policies.pi.layers`) for all K denoising steps and the value head.
* **suffix** — the action expert over the chunk's noisy actions (π0: a state token first),
  attending to the cached prefix. π0.5 conditions every expert norm on the flow time (adaptive
  RMSNorm); π0 mixes the time into the action tokens. :meth:`predict` returns the velocity
  ``v = eps - a`` (LeRobot's convention and pirl's: ``x_t = t * eps + (1 - t) * a``) and the
  expert's normed hidden states of the chunk (the noise head's features).

``sample_actions`` is not used: it is ``@torch.no_grad`` and owns its Euler loop; the PI-RL
recipe owns the sampler. Value head placements (RLinf's): ``after_vlm`` reads the prefix output
(π0.5's default), ``action_head`` the expert's output at (x_1, t=1) (π0's), input detached by
``recipe.critic_detach``.

Channels: pirl's own π policies generate exactly LIBERO's 7 action dims; a LeRobot checkpoint
pads to ``max_action_dim`` (32): only the first 7 are executed and scored (:meth:`sampled_mask`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pirl_core.config import RunConfig
from pirl_core.policies.base import Context, CriticPlacement, FlowPolicyAdapter, Prediction
from pirl_core.policies.pi.build import BuiltPi, build_pi_policy, write_arch, write_control_mode
from pirl_core.policies.pi.layers import PrefixCache, gemma_pass
from pirl_core.policies.pi.libero import ACTION_DIM
from pirl_core.policies.pi.processors import (
    PiProcessors,
    checkpoint_processors,
    make_env_preprocessor,
    make_policy_processors,
)

VLM_PREFIX = "policy.model.paligemma_with_expert.paligemma"  # SigLIP + PaliGemma language model
# LeRobot builds the action expert as a GemmaForCausalLM and removes its embedding, but keeps its
# vocabulary head (263 M parameters at full size) that nothing calls: frozen from the start, so it
# is neither optimised nor pushed to actors.
UNUSED_EXPERT_HEAD = "policy.model.paligemma_with_expert.gemma_expert.lm_head"


class PiAdapter(FlowPolicyAdapter):
    """FlowPolicyAdapter over a LeRobot ``PI0Policy``/``PI05Policy`` and its processor pipelines."""

    prediction_type = "velocity"

    def __init__(self, built: BuiltPi, processors: PiProcessors, action_steps: int, size: str) -> None:
        super().__init__()
        self.policy = built.policy
        self.processors = processors
        self.policy_type = built.policy_type
        self.arch = built.arch
        self.tokenizer_dir = built.tokenizer_dir
        self.source = built.source
        self.control_mode = built.control_mode
        self.size = size
        cfg = self.policy.config
        self.chunk_size = int(cfg.chunk_size)
        self.action_dim = int(cfg.max_action_dim)
        self.action_steps = int(action_steps)
        self.frozen_prefixes = (UNUSED_EXPERT_HEAD,)
        self.recompute_layers = False  # policy.gradient_checkpointing
        self.set_rl_mode()

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> PiAdapter:
        """Keep the π policy in eval mode whatever the caller asks: RL passes must be deterministic."""
        super().train(mode)
        self.policy.eval()
        return self

    @property
    def model(self):
        return self.policy.model

    @property
    def _pwe(self):
        return self.model.paligemma_with_expert

    @property
    def vlm_frozen(self) -> bool:
        return self.is_frozen(VLM_PREFIX)

    def freeze_vlm(self) -> None:
        """``recipe.train_vlm = false`` (RLinf's ``train_expert_only``): SigLIP and the PaliGemma
        language model stay at their build values; the action expert and projections train."""
        self.freeze(VLM_PREFIX)

    def enable_gradient_checkpointing(self) -> int:
        """Recompute each Gemma layer's activations in the backward (expert, and the VLM when it
        trains; a frozen VLM runs under no-grad and keeps none). pirl's passes call the layers'
        parts directly (:mod:`pirl_core.policies.pi.layers`), so the switch lives there."""
        self.recompute_layers = True
        layers = len(self._pwe.gemma_expert.model.layers)
        return layers if self.vlm_frozen else 2 * layers

    # ------------------------------------------------------------------ observations

    def prepare_obs(self, raw_obs: dict[str, Any]) -> dict[str, Tensor]:
        """Raw LIBERO batch -> π input tensors through LeRobot's processors (deterministic)."""
        return self.processors.observation(raw_obs)

    def _prefix(self, obs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        from lerobot.policies.pi05.modeling_pi05 import make_att_2d_masks
        from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

        images, img_masks = self.policy._preprocess_images(obs)  # noqa: SLF001
        embs, pad, att = self.model.embed_prefix(
            images, img_masks, obs[OBS_LANGUAGE_TOKENS], obs[OBS_LANGUAGE_ATTENTION_MASK]
        )
        mask2d = make_att_2d_masks(pad, att)
        return embs, pad, mask2d

    def encode(self, obs: dict[str, Tensor]) -> Context:
        """The prefix pass, once per observation batch (no-grad when the VLM is frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vlm_frozen):
            embs, pad, mask2d = self._prefix(obs)
            lm = self._pwe.paligemma.model.language_model
            out, cache = gemma_pass(
                lm.layers,
                lm.norm,
                lm.rotary_emb,
                [layer.self_attn for layer in lm.layers],
                embs,
                self.model._prepare_attention_masks_4d(mask2d),  # noqa: SLF001
                torch.cumsum(pad, dim=1) - 1,
                recompute=self.recompute_layers,
            )
        ctx: Context = {
            "prefix_keys": cache.keys,
            "prefix_values": cache.values,
            "prefix_pad": pad,
            "prefix_out": out,
        }
        if self.policy_type == "pi0":
            ctx["state"] = self.policy.prepare_state(obs)
        return ctx

    # ------------------------------------------------------------------ action expert

    def _suffix(self, x_t: Tensor, t: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        if self.policy_type == "pi0":
            return self.model.embed_suffix(ctx["state"], x_t, t)
        return self.model.embed_suffix(x_t, t)

    def expert_hidden(self, x_t: Tensor, t: Tensor, ctx: Context) -> Tensor:
        """The expert's final-normed hidden states of the chunk tokens at (x_t, t), attending to
        the cached prefix: ``denoise_step`` of LeRobot, minus ``action_out_proj``."""
        from lerobot.policies.pi05.modeling_pi05 import make_att_2d_masks

        embs, pad, att, cond = self._suffix(x_t, t, ctx)
        prefix_pad = ctx["prefix_pad"]
        batch, suffix_len = pad.shape
        prefix_2d = prefix_pad[:, None, :].expand(batch, suffix_len, prefix_pad.shape[1])
        mask2d = torch.cat([prefix_2d, make_att_2d_masks(pad, att)], dim=2)
        positions = prefix_pad.sum(dim=-1)[:, None] + torch.cumsum(pad, dim=1) - 1
        expert = self._pwe.gemma_expert.model
        vlm_layers = self._pwe.paligemma.model.language_model.layers
        out, _ = gemma_pass(
            expert.layers,
            expert.norm,
            self._pwe.paligemma.model.language_model.rotary_emb,
            [layer.self_attn for layer in vlm_layers],
            embs,
            self.model._prepare_attention_masks_4d(mask2d),  # noqa: SLF001
            positions,
            cond=cond,
            past=PrefixCache(ctx["prefix_keys"], ctx["prefix_values"]),
            recompute=self.recompute_layers,
        )
        return out[:, -self.chunk_size :].to(torch.float32)

    def predict(self, x_t: Tensor, t: Tensor, ctx: Context) -> Prediction:
        """v (B, C, D) and the chunk tokens' expert features (B, C, expert width)."""
        t = t.to(torch.float32).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x_t.shape[0])
        hidden = self.expert_hidden(x_t.to(torch.float32), t, ctx)
        return Prediction(value=self.model.action_out_proj(hidden), features=hidden)

    # ------------------------------------------------------------------ critic / noise head

    def value_features(self, ctx: Context, placement: CriticPlacement, x_t: Tensor | None = None) -> Tensor:
        if placement == "after_vlm":
            pad = ctx["prefix_pad"].to(ctx["prefix_out"].dtype).unsqueeze(-1)
            return (ctx["prefix_out"] * pad).sum(dim=1) / pad.sum(dim=1).clamp_min(1.0)
        if placement == "action_head":
            if x_t is None:
                raise ValueError("action_head value features need x_t (the chain's initial noise)")
            t = torch.ones(x_t.shape[0], device=x_t.device, dtype=torch.float32)
            return self.predict(x_t, t, ctx).features.mean(dim=1)
        raise ValueError(f"unknown critic placement {placement!r}")

    def value_feature_dim(self, placement: CriticPlacement) -> int:
        if placement == "after_vlm":
            return int(self._pwe.paligemma.config.text_config.hidden_size)
        if placement == "action_head":
            return self.noise_feature_dim
        raise ValueError(f"unknown critic placement {placement!r}")

    @property
    def noise_feature_dim(self) -> int:
        return int(self._pwe.gemma_expert.config.hidden_size)

    def sampled_mask(self) -> Tensor:
        """Executed chunk steps x LIBERO's 7 action dims (a checkpoint's padding is never scored)."""
        mask = torch.zeros(self.chunk_size, self.action_dim, dtype=torch.bool)
        mask[: self.action_steps, :ACTION_DIM] = True
        return mask

    # ------------------------------------------------------------------ env / saving

    def to_env_action(self, x0: Tensor, obs: dict[str, Tensor]) -> np.ndarray:
        """(B, C, D) -> (B, action_steps, 7): LeRobot's postprocessor (unnormalise), LIBERO's range."""
        batch = x0.shape[0]
        act = x0[:, : self.action_steps, :ACTION_DIM].detach().to(torch.float32)
        env_act = self.processors.action(act.reshape(batch * self.action_steps, ACTION_DIM))
        return env_act.reshape(batch, self.action_steps, ACTION_DIM)

    def save_pretrained(self, directory: Path) -> None:
        """LeRobot's layout (config.json + model.safetensors, loads with ``PI05Policy.from_pretrained``
        where openpi's transformers is installed) plus the pre/post-processors with the tokenizer
        inside, pirl's arch file for sizes LeRobot cannot name and the control mode
        (:func:`save_pi_pretrained`)."""
        save_pi_pretrained(
            directory,
            self.policy,
            self.processors.policy_pre,
            self.processors.policy_post,
            self.arch,
            self.control_mode,
        )

    def identity(self) -> dict[str, Any]:
        cfg = self.policy.config
        ident = super().identity()
        ident.update(
            {
                "policy_type": self.policy_type,
                "policy_size": self.size,
                "control_mode": self.control_mode,
                "policy_source": self.source if self.size == "pretrained" else self.size,
                "arch": self.arch.as_dict() if self.arch is not None else "lerobot",
                "vlm_width": int(self._pwe.paligemma.config.text_config.hidden_size),
                "expert_width": self.noise_feature_dim,
                "max_state_dim": int(cfg.max_state_dim),
                "max_action_dim": int(cfg.max_action_dim),
                "image_resolution": list(cfg.image_resolution),
                "tokenizer_max_length": int(cfg.tokenizer_max_length),
            }
        )
        return ident


def save_pi_pretrained(
    directory: Path, policy: Any, policy_pre: Any, policy_post: Any, arch: Any, control_mode: str
) -> None:
    """A π as pirl writes it everywhere (RL checkpoints and SFT, :mod:`pirl_core.policies.pi.sft`):
    LeRobot's ``config.json`` + ``model.safetensors``, both processor pipelines (tokenizer and
    statistics inside), ``pirl_pi_arch.json`` (tiny / small) and ``pirl_pi_control.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(directory)
    policy_pre.save_pretrained(directory)
    policy_post.save_pretrained(directory)
    write_arch(directory, arch)
    write_control_mode(directory, control_mode)


def make_processors(built: BuiltPi) -> PiProcessors:
    """A checkpoint's own processors when it has them (its statistics, its tokenizer), else pirl's
    (statistics for the policy's control mode)."""
    ckpt = built.checkpoint_dir
    if ckpt is not None and (ckpt / "policy_preprocessor.json").is_file():
        device = str(built.policy.config.device)
        pre, post = checkpoint_processors(ckpt, device, built.tokenizer_override)
    else:
        pre, post = make_policy_processors(
            built.policy_type, built.policy.config, built.tokenizer_dir, control_mode=built.control_mode
        )
    return PiProcessors(
        env_pre=make_env_preprocessor(), policy_pre=pre, policy_post=post, control_mode=built.control_mode
    )


def build_pi_adapter(cfg: RunConfig, task_descriptions: list[str]) -> PiAdapter:
    """The π adapter for ``cfg`` with LeRobot's processors; instructions checked against the tokenizer."""
    from pirl_core.errors import ConfigError

    built = build_pi_policy(cfg)
    processors = make_processors(built)
    check_prompts(processors.policy_pre, task_descriptions, ConfigError)
    adapter = PiAdapter(built, processors, cfg.policy.action_steps, cfg.policy.size)
    if not cfg.recipe.train_vlm:
        adapter.freeze_vlm()
    if cfg.policy.gradient_checkpointing:
        adapter.enable_gradient_checkpointing()
    return adapter


def check_prompts(policy_pre, texts: list[str], error_cls) -> None:
    """Refuse instructions whose prompt the tokenizer cannot represent: an unknown word would
    reach the model as ``<unk>``, a long prompt would be cut. π0.5's prompt is checked whole, with
    the longest state it can carry (every bin a three-digit number)."""
    from lerobot.policies.pi05.processor_pi05 import Pi05PrepareStateTokenizerProcessorStep
    from lerobot.processor.tokenizer_processor import TokenizerProcessorStep

    from pirl_core.policies.pi.tokenizer import PROMPT_TEMPLATE

    tokenizer_step = next(s for s in policy_pre.steps if isinstance(s, TokenizerProcessorStep))
    state_step = next(
        (s for s in policy_pre.steps if isinstance(s, Pi05PrepareStateTokenizerProcessorStep)), None
    )
    tok = tokenizer_step.input_tokenizer
    for text in texts:
        prompt = text
        if state_step is not None:
            cleaned = text.strip().replace("_", " ").replace("\n", " ")
            prompt = PROMPT_TEMPLATE.format(task=cleaned, state=" ".join(["255"] * state_step.max_state_dim))
        ids = tok(prompt)["input_ids"]
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            raise error_cls(
                "policy.tokenizer",
                tokenizer_step.tokenizer_name,
                f"a tokenizer that knows every word of {text!r}"
                + (
                    " and of the π0.5 prompt around it (task, state, action, the bins 0-255)"
                    if state_step
                    else ""
                ),
                hint="rebuild pirl's π tokenizer with `python -m pirl_core.policies.pi.tokenizer` or set policy.tokenizer",
            )
        if len(ids) > tokenizer_step.max_length:
            raise error_cls(
                "policy.tokenizer",
                tokenizer_step.tokenizer_name,
                f"prompts of at most {tokenizer_step.max_length} tokens ({prompt!r} has {len(ids)})",
            )
