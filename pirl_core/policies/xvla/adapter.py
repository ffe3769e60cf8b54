"""X-VLA (LeRobot ``lerobot.policies.xvla``) as a PI-RL flow policy.

X-VLA splits cleanly into the expensive part and the cheap part (``modeling_xvla.XVLAModel``):

* ``forward_vlm`` — Florence-2: DaViT over every camera view, then the BART encoder over
  [main-view tokens; instruction tokens]. Depends on the observation only, so :meth:`encode` runs
  it once and the cached context serves all K denoising steps and the value head.
* ``transformer`` (``SoftPromptedTransformer``) — the action head: given (x_t, t, proprio, domain
  and the cached VLM/aux tokens) it predicts the **clean action** â. :meth:`predict` runs it and
  also returns its last hidden states of the action tokens (the noise head's features).

``XVLAModel.generate_actions`` is not used: it is ``@torch.no_grad`` and re-noises from a fixed
x1 at every step (not a Markov Euler step); the PI-RL recipe owns the sampler.

Channels (``ee6d``, 20 dims = two arms x [xyz(3), rot6d(6), gripper(1)]):

* Gripper channels 9 and 19 are **not flow-generated**: X-VLA zeroes them in x_t before every
  network call and predicts them as logits (sigmoid afterwards). They are excluded from
  :meth:`sampled_mask`, so the recipe neither noises nor scores them; the executed gripper command
  is then a deterministic function of the (scored) chain: sigmoid(logit of the last prediction) >
  0.5 -> +1 / -1 (LeRobot's env postprocessor).
* Channels 10-19 (the second arm) are not executed in LIBERO (the env postprocessor reads
  channels 0-9 only): excluded as well.
* Only the first ``action_steps`` chunk steps are executed: the mask covers those rows.

Dropout: LeRobot's action transformer hard-codes dropout 0.1 and Florence-2 defaults to dropout
and drop-path. Two train-mode passes then differ and the PPO ratio is never 1. The adapter keeps
the X-VLA policy in eval mode at all times (``train()`` only affects other modules), while
gradients still flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pirl_core.config import RunConfig
from pirl_core.policies.base import Context, CriticPlacement, FlowPolicyAdapter, Prediction
from pirl_core.policies.xvla.build import BuiltPolicy, build_xvla_policy
from pirl_core.policies.xvla.lerobot_shim import model_inputs, target_dtype
from pirl_core.policies.xvla.libero import ENV_ACTION_DIM, EXECUTED_ACTION_DIMS
from pirl_core.policies.xvla.portable import finalize
from pirl_core.policies.xvla.processors import XVLAProcessors, make_env_processors, make_policy_processors

VLM_PREFIX = "policy.model.vlm"  # Florence-2: DaViT vision tower + BART encoder (+ shared embeddings)


class XVLAAdapter(FlowPolicyAdapter):
    """FlowPolicyAdapter over a LeRobot ``XVLAPolicy`` and its processor pipelines."""

    prediction_type = "clean_action"

    def __init__(self, built: BuiltPolicy, processors: XVLAProcessors, action_steps: int, size: str) -> None:
        super().__init__()
        self.policy = built.policy
        self.processors = processors
        self.tokenizer_path = built.tokenizer_path
        self.domain_id = built.domain_id
        self.source = built.source
        self.size = size
        cfg = self.policy.config
        self.chunk_size = int(cfg.chunk_size)
        self.action_dim = int(self.policy.model.dim_action)
        self.action_steps = int(action_steps)
        self.gripper_idx = tuple(self.policy.model.action_space.gripper_idx)
        self.set_rl_mode()

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> XVLAAdapter:
        """Keep X-VLA dropout-free whatever the caller asks (see module docstring)."""
        super().train(mode)
        self.policy.eval()
        return self

    @property
    def model(self):
        return self.policy.model

    # ------------------------------------------------------------------ observations

    def prepare_obs(self, raw_obs: dict[str, Any]) -> dict[str, Tensor]:
        """Raw LIBERO batch -> X-VLA input tensors via LeRobot's processors (deterministic: no
        randomness anywhere in the chain, so the learner re-scores exactly what the actor saw)."""
        return self.processors.observation(raw_obs)

    @property
    def vlm_frozen(self) -> bool:
        return self.is_frozen(VLM_PREFIX)

    def freeze_vlm(self) -> None:
        """``recipe.train_vlm = false``: Florence-2 (569.5 M of the full model's 880 M parameters)
        stays at its build values; only the action transformer (and the recipe's heads) train."""
        self.freeze(VLM_PREFIX)

    def enable_gradient_checkpointing(self) -> int:
        """Checkpoint the action transformer's blocks, and the VLM's (DaViT stages, BART encoder
        layers) when it trains; a frozen VLM runs under no-grad and keeps no activations anyway."""
        blocks = list(self.model.transformer.blocks)
        if not self.vlm_frozen:
            vlm = self.model.vlm
            blocks += list(vlm.vision_tower.blocks)
            blocks += list(vlm.language_model.model.encoder.layers)
        from pirl_core.policies.activation_checkpoint import checkpoint_blocks

        return checkpoint_blocks(blocks)

    def encode(self, obs: dict[str, Tensor]) -> Context:
        """The Florence-2 pass, once per observation batch (under no-grad when the VLM is frozen:
        no activations are kept for a backward that would not use them)."""
        inputs = model_inputs(self.policy, obs)
        dtype = target_dtype(self.model)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vlm_frozen):
            enc = self.model.forward_vlm(
                inputs["input_ids"], inputs["image_input"].to(dtype), inputs["image_mask"]
            )
        proprio = inputs["proprio"].to(dtype)
        return {
            "vlm_features": enc["vlm_features"],
            "aux_visual_inputs": enc["aux_visual_inputs"],
            "domain_id": inputs["domain_id"],
            "proprio": proprio,
        }

    # ------------------------------------------------------------------ action head

    def _action_hidden(self, x_t: Tensor, t: Tensor, ctx: Context) -> Tensor:
        """``SoftPromptedTransformer.forward`` up to (and including) the final norm of the action
        tokens, i.e. the features that ``action_decoder`` maps to â. Mirrors LeRobot 0.4.4 line for
        line; ``tests/test_xvla_adapter.py`` checks it against the original forward."""
        from lerobot.policies.xvla.soft_transformer import timestep_embedding

        tr = self.model.transformer
        domain_id = ctx["domain_id"]
        proprio_m, x_m = self.model.action_space.preprocess(ctx["proprio"], x_t)  # zero gripper channels
        batch_size, num_actions = x_m.shape[:2]
        time_tokens = (
            timestep_embedding(t, tr.dim_time).unsqueeze(1).expand(batch_size, num_actions, tr.dim_time)
        )
        proprio_tokens = proprio_m.unsqueeze(1).expand(batch_size, num_actions, proprio_m.shape[-1])
        x = tr.action_encoder(torch.cat([x_m, proprio_tokens, time_tokens], dim=-1), domain_id)
        if tr.use_hetero_proj:
            vlm = tr.vlm_proj(ctx["vlm_features"], domain_id)
            aux = tr.aux_visual_proj(ctx["aux_visual_inputs"], domain_id)
        else:
            vlm = tr.vlm_proj(ctx["vlm_features"])
            aux = tr.aux_visual_proj(ctx["aux_visual_inputs"])
        x = torch.cat([x, vlm, aux], dim=1)
        seq_len = x.shape[1]
        if seq_len > tr.pos_emb.shape[1]:
            raise ValueError(f"Sequence length {seq_len} exceeds max_len_seq={tr.pos_emb.shape[1]}.")
        x = x + tr.pos_emb[:, :seq_len, :]
        if tr.len_soft_prompts > 0:
            prompts = tr.soft_prompt_hub(domain_id).view(batch_size, tr.len_soft_prompts, tr.hidden_size)
            x = torch.cat([x, prompts], dim=1)
        for block in tr.blocks:
            x = block(x)
        return tr.norm(x[:, :num_actions])

    def predict(self, x_t: Tensor, t: Tensor, ctx: Context) -> Prediction:
        """â (B, C, 20) — gripper channels are logits — and action-token features (B, C, hidden)."""
        dtype = target_dtype(self.model)
        t = t.to(dtype=dtype).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x_t.shape[0])
        hidden = self._action_hidden(x_t.to(dtype), t, ctx)
        a_hat = self.model.transformer.action_decoder(hidden, ctx["domain_id"])
        return Prediction(value=a_hat, features=hidden)

    # ------------------------------------------------------------------ critic / noise head

    def value_features(self, ctx: Context, placement: CriticPlacement, x_t: Tensor | None = None) -> Tensor:
        if placement == "after_vlm":
            # Mean of the BART encoder output (main view + instruction) and of the auxiliary views.
            vlm = ctx["vlm_features"].mean(dim=1)
            aux = ctx["aux_visual_inputs"]
            aux = aux.mean(dim=1) if aux.shape[1] > 0 else torch.zeros_like(vlm)
            return torch.cat([vlm, aux], dim=-1)
        if placement == "action_head":
            if x_t is None:
                raise ValueError("action_head value features need x_t (the chain's initial noise)")
            t = torch.ones(x_t.shape[0], device=x_t.device, dtype=x_t.dtype)
            return self.predict(x_t, t, ctx).features.mean(dim=1)
        raise ValueError(f"unknown critic placement {placement!r}")

    def value_feature_dim(self, placement: CriticPlacement) -> int:
        if placement == "after_vlm":
            return 2 * int(self.model.vlm.config.projection_dim)
        if placement == "action_head":
            return int(self.policy.config.hidden_size)
        raise ValueError(f"unknown critic placement {placement!r}")

    @property
    def noise_feature_dim(self) -> int:
        return int(self.policy.config.hidden_size)

    def sampled_mask(self) -> Tensor:
        """Executed chunk steps x flow-generated, executed dims: rows [0, action_steps),
        columns 0-8 (xyz + rot6d of the first arm). Gripper logits (9, 19) and the unexecuted
        second arm (10-19) are excluded — see the module docstring."""
        mask = torch.zeros(self.chunk_size, self.action_dim, dtype=torch.bool)
        mask[: self.action_steps, :EXECUTED_ACTION_DIMS] = True
        mask[:, list(self.gripper_idx)] = False
        return mask

    # ------------------------------------------------------------------ env / saving

    def to_env_action(self, x0: Tensor, obs: dict[str, Tensor]) -> np.ndarray:
        """(B, C, 20) -> (B, action_steps, 7): sigmoid on the gripper logits (X-VLA's own
        postprocess), then LeRobot's policy and LIBERO env postprocessors."""
        batch = x0.shape[0]
        act = x0[:, : self.action_steps].detach().to(torch.float32).clone()
        act = self.model.action_space.postprocess(act)
        flat = act.reshape(batch * self.action_steps, self.action_dim)
        env_act = self.processors.action(flat)
        return env_act.reshape(batch, self.action_steps, ENV_ACTION_DIM)

    def save_pretrained(self, directory: Path) -> None:
        """LeRobot's layout: config.json + model.safetensors (loads with ``XVLAPolicy.from_pretrained``)
        plus the policy pre/post-processor files, made self-contained (the tokenizer copied inside
        and named relative to it, the image size in config.json: :mod:`pirl_core.policies.xvla.portable`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(directory)
        self.processors.policy_pre.save_pretrained(directory)
        self.processors.policy_post.save_pretrained(directory)
        finalize(directory, self.tokenizer_path)

    def identity(self) -> dict[str, Any]:
        cfg = self.policy.config
        flor = cfg.florence_config or {}
        vision = flor.get("vision_config") or {}
        text = flor.get("text_config") or {}
        ident = super().identity()
        ident.update(
            {
                "policy_type": "xvla",
                "policy_size": self.size,
                "policy_source": self.source if self.size == "pretrained" else self.size,
                "action_mode": cfg.action_mode,
                "hidden_size": int(cfg.hidden_size),
                "depth": int(cfg.depth),
                "num_heads": int(cfg.num_heads),
                "len_soft_prompts": int(cfg.len_soft_prompts),
                "max_len_seq": int(cfg.max_len_seq),
                "max_state_dim": int(cfg.max_state_dim),
                "num_image_views": int(cfg.num_image_views or 0),
                "image_shape": list(cfg.image_features[next(iter(cfg.image_features))].shape),
                "tokenizer_max_length": int(cfg.tokenizer_max_length),
                "projection_dim": int(flor.get("projection_dim", 0) or 0),
                "vision_dim_embed": list(vision.get("dim_embed", [])),
                "vision_depths": list(vision.get("depths", [])),
                "text_d_model": int(text.get("d_model", 0) or 0),
                "text_encoder_layers": int(text.get("encoder_layers", 0) or 0),
                "vocab_size": int(flor.get("vocab_size", 0) or 0),
                "domain_id": int(self.domain_id),
                "gripper_channels": list(self.gripper_idx),
            }
        )
        return ident


def build_xvla_adapter(cfg: RunConfig, task_descriptions: list[str]) -> XVLAAdapter:
    """The X-VLA adapter for ``cfg`` (tiny offline or cached pretrained), with LeRobot's
    processors. ``task_descriptions`` are checked against the tokenizer (an instruction made of
    unknown words would reach the model as ``<unk>`` tokens: refuse it)."""
    from pirl_core.errors import ConfigError

    built = build_xvla_policy(cfg)
    policy_pre, policy_post = make_policy_processors(built.policy.config, built.domain_id)
    env_pre, env_post = make_env_processors(cfg.env.camera_size)
    processors = XVLAProcessors(
        env_pre=env_pre, policy_pre=policy_pre, policy_post=policy_post, env_post=env_post
    )
    check_instructions(processors.policy_pre, task_descriptions, ConfigError)
    adapter = XVLAAdapter(built, processors, cfg.policy.action_steps, cfg.policy.size)
    if not cfg.recipe.train_vlm:
        adapter.freeze_vlm()
    if cfg.policy.gradient_checkpointing:
        adapter.enable_gradient_checkpointing()
    return adapter


def check_instructions(policy_pre, texts: list[str], error_cls) -> None:
    """Refuse instructions the policy preprocessor's tokenizer cannot represent (rollouts and SFT)."""
    from lerobot.processor.tokenizer_processor import TokenizerProcessorStep

    tokenizer_step = next(s for s in policy_pre.steps if isinstance(s, TokenizerProcessorStep))
    tok = tokenizer_step.input_tokenizer
    unk = tok.unk_token_id
    for text in texts:
        ids = tok(text)["input_ids"]
        if unk is not None and unk in ids:
            raise error_cls(
                "policy.tokenizer",
                tokenizer_step.tokenizer_name,
                f"a tokenizer that knows every word of {text!r}",
                hint="rebuild pirl's tokenizer with `python -m pirl_core.policies.xvla.tokenizer` or set policy.tokenizer",
            )
        if len(ids) > tokenizer_step.max_length:
            raise error_cls(
                "policy.tokenizer",
                tokenizer_step.tokenizer_name,
                f"instructions of at most {tokenizer_step.max_length} tokens ({text!r} has {len(ids)})",
            )
