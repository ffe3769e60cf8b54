"""Building LeRobot ``XVLAPolicy`` objects for pirl: from config (tiny, small, full) or a cached pretrained one.

Why a separate module: the adapter (``adapter.py``) should only talk about RL; *which* X-VLA is
built and the LeRobot traps around building one live here:

* Florence-2's ``image_projection`` is created with ``torch.empty`` and never initialised (values
  up to 1e22, NaN for some seeds). :func:`init_uninitialised_params` fixes it for every policy
  built from config.
* A small Florence-2 must satisfy a web of size constraints (see :func:`arch_florence_config`).
* Florence-2 enables dropout and drop-path by default. The tiny config zeroes every rate; the
  adapter additionally runs the policy in eval mode (LeRobot's action transformer hard-codes
  dropout 0.1), because train-mode noise breaks the PPO ratio.
* ``policy.size = "pretrained"`` must never download (:mod:`pirl_core.policies.xvla.hub`).

:func:`build_xvla_policy` is the one entry: the bare LeRobot policy plus what its processors need
(:class:`BuiltPolicy`); the RL adapter around it is :func:`pirl_core.policies.xvla.adapter.build_xvla_adapter`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pirl_core.config import CONFIG_SIZES, RunConfig
from pirl_core.errors import ConfigError
from pirl_core.policies.device import check_device
from pirl_core.policies.xvla.hub import checkpoint_tokenizer, resolve_local_snapshot, resolve_local_tokenizer
from pirl_core.policies.xvla.libero import (
    EE6D_ACTION_DIM,
    IMAGE_KEYS,
    LIBERO_DOMAIN_ID,
    LIBERO_STATE_DIM,
    STATE_KEY,
    TOKENIZER_MAX_LENGTH,
)
from pirl_core.policies.xvla.tokenizer import TOKENIZER_DIR

MAX_STATE_DIM = 32  # same padding as the released X-VLA
DAVIT_DOWNSAMPLE = 32  # product of DaViT's patch strides (4, 2, 2, 2)


@dataclass
class BuiltPolicy:
    """A constructed policy plus what the processors need to know about it."""

    policy: Any  # lerobot.policies.xvla.modeling_xvla.XVLAPolicy
    tokenizer_path: str
    domain_id: int
    source: str  # "tiny(seed=N)" or the pretrained path it came from


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Florence-2's classes trigger a transformers warning about ``GenerationMixin`` on every
    construction (irrelevant here: pirl never calls ``generate``). Silence it, only while building."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _round_up(x: int, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


@dataclass(frozen=True)
class XVLAArch:
    """The architecture of an X-VLA built from config (``policy.size`` = "tiny" or "small").

    One table instead of one builder per size: the Florence-2 constraints and the LeRobot traps are
    the same at every width, only these numbers change. ``hidden_size = 0`` means
    ``policy.hidden_dim`` (tiny's historical knob); the other sizes fix their own width.
    """

    vlm_dim: int  # Florence-2 projection_dim = text d_model = vision projection_dim
    davit_dims: tuple[int, int, int, int]
    davit_heads: tuple[int, int, int, int]
    davit_depths: tuple[int, int, int, int]
    davit_window: int
    text_layers: int
    text_heads: int
    hidden_size: int
    depth: int
    heads: int
    soft_prompts: int
    dim_time: int
    mlp_ratio: float = 2.0


XVLA_ARCHS: dict[str, XVLAArch] = {
    # A chunk runs in a few ms on one CPU core, yet every LeRobot module (DaViT, BART encoder,
    # soft-prompted transformer) is real: the libero_tiny profile and the unit tests.
    "tiny": XVLAArch(
        vlm_dim=32,
        davit_dims=(16, 16, 32, 32),
        davit_heads=(1, 1, 2, 2),
        davit_depths=(1, 1, 1, 1),
        davit_window=4,
        text_layers=1,
        text_heads=2,
        hidden_size=0,
        depth=2,
        heads=2,
        soft_prompts=4,
        dim_time=16,
    ),
    # Enough width and depth to learn LIBERO pick-and-place from 128 px images by SFT, still cheap
    # for RL rollouts on a CPU (chosen by benchmarks/xvla_sizes.py; numbers in docs/design.md, "SFT").
    "small": XVLAArch(
        vlm_dim=96,
        davit_dims=(32, 48, 96, 96),
        davit_heads=(1, 2, 3, 3),
        davit_depths=(1, 1, 2, 1),
        davit_window=4,
        text_layers=2,
        text_heads=4,
        hidden_size=160,
        depth=4,
        heads=4,
        soft_prompts=8,
        dim_time=32,
    ),
}


def arch_florence_config(arch: XVLAArch, camera_size: int, vocab_size: int) -> dict[str, Any]:
    """A Florence-2 config dict small enough for CPU RL, respecting Florence-2's constraints:

    * ``vision_config.projection_dim`` = top-level ``projection_dim`` = ``text_config.d_model``;
    * DaViT has 4 stages; heads and groups divide each stage width;
    * ``image_pos_embed.max_pos_embeddings`` >= the final feature-map side (camera / 32);
    * ``text_config.max_position_embeddings`` >= 1 + side^2 image tokens + tokenizer max length;
    * ``vocab_size`` > the tokenizer's largest id;
    * every dropout / drop-path rate is 0 (RL forward passes must be deterministic).
    """
    side = max(1, camera_size // DAVIT_DOWNSAMPLE)
    enc_len = 1 + side * side + TOKENIZER_MAX_LENGTH
    vocab = _round_up(vocab_size + 1, 64)
    return {
        "projection_dim": arch.vlm_dim,
        "vocab_size": vocab,
        "vision_config": {
            "model_type": "davit",
            "drop_path_rate": 0.0,
            "patch_size": [7, 3, 3, 3],
            "patch_stride": [4, 2, 2, 2],
            "patch_padding": [3, 1, 1, 1],
            "patch_prenorm": [False, True, True, True],
            "dim_embed": list(arch.davit_dims),
            "num_heads": list(arch.davit_heads),
            "num_groups": list(arch.davit_heads),
            "depths": list(arch.davit_depths),
            "window_size": arch.davit_window,
            "projection_dim": arch.vlm_dim,
            "visual_temporal_embedding": {"type": "COSINE", "max_temporal_embeddings": 4},
            "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": max(8, side)},
            "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"],
        },
        "text_config": {
            "vocab_size": vocab,
            "d_model": arch.vlm_dim,
            "encoder_layers": arch.text_layers,
            "decoder_layers": 1,
            "encoder_attention_heads": arch.text_heads,
            "decoder_attention_heads": arch.text_heads,
            "encoder_ffn_dim": 2 * arch.vlm_dim,
            "decoder_ffn_dim": 2 * arch.vlm_dim,
            "max_position_embeddings": _round_up(enc_len, 16),
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "encoder_layerdrop": 0.0,
            "decoder_layerdrop": 0.0,
        },
    }


def _input_features(camera_size: int) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {
        k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, camera_size, camera_size)) for k in IMAGE_KEYS
    }
    inputs[STATE_KEY] = PolicyFeature(type=FeatureType.STATE, shape=(LIBERO_STATE_DIM,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(EE6D_ACTION_DIM,))}
    return inputs, outputs


def lerobot_normalization_mapping(mapping: dict | None = None) -> dict:
    """X-VLA's normalisation mapping with ``VISUAL: MEAN_STD`` (state and action as given,
    IDENTITY by default): what makes a pirl checkpoint train correctly under ``lerobot-train``.

    Why this is safe everywhere: the saved ``normalizer_processor`` carries no statistics, and
    LeRobot's normaliser leaves a key without statistics unchanged. So pirl's chain and
    ``lerobot-eval`` (whose X-VLA LIBERO env preprocessor has already applied ImageNet
    normalisation) see no change, while ``lerobot-train --policy.path=CKPT`` injects the
    dataset's statistics, whose camera entries LeRobot replaces by ImageNet's
    (``dataset.use_imagenet_stats``, default true): the same ``(x - mean) / std`` pirl's SFT applies.
    """
    from lerobot.configs.types import NormalizationMode

    base = dict.fromkeys(("VISUAL", "STATE", "ACTION"), NormalizationMode.IDENTITY)
    base.update({getattr(k, "value", k): NormalizationMode(v) for k, v in (mapping or {}).items()})
    base["VISUAL"] = NormalizationMode.MEAN_STD
    return base


def make_portable(config: Any) -> Any:
    """Make an ``XVLAConfig`` carry what a LeRobot tool needs to feed it (in place; returned):

    * ``resize_imgs_with_padding`` = the declared image size, so frames of any render size (LeRobot's
      ``LiberoEnv`` renders 256 px whatever the policy wants) are resized inside the model
      (``XVLAPolicy._prepare_images``, bilinear) to what the policy was trained on; a no-op for
      frames that already have that size (pirl renders at ``env.camera_size``);
    * the image normalisation entry of :func:`lerobot_normalization_mapping`.
    """
    if config.resize_imgs_with_padding is None and config.image_features:
        shape = tuple(next(iter(config.image_features.values())).shape)
        config.resize_imgs_with_padding = (int(shape[-2]), int(shape[-1]))
    config.normalization_mapping = lerobot_normalization_mapping(config.normalization_mapping)
    return config


def arch_xvla_config(cfg: RunConfig, tokenizer_path: str, arch: XVLAArch | None = None):
    """XVLAConfig for ``policy.size`` = "tiny" / "small" (``arch`` defaults to the size's table
    entry): same action mode (ee6d), views, state layout and processors as ``lerobot/xvla-libero``,
    only narrower and shallower."""
    from lerobot.policies.xvla.configuration_xvla import XVLAConfig

    from pirl_core.policies.xvla.tokenizer import tokenizer_vocab_size

    arch = XVLA_ARCHS[cfg.policy.size] if arch is None else arch
    camera = cfg.env.camera_size
    side = max(1, camera // DAVIT_DOWNSAMPLE)
    tokens_per_view = 1 + side * side
    num_views = len(IMAGE_KEYS)
    # transformer sequence: action tokens + VLM encoder tokens + auxiliary-view tokens
    max_len_seq = cfg.policy.chunk_size + (tokens_per_view + TOKENIZER_MAX_LENGTH)
    max_len_seq += (num_views - 1) * tokens_per_view
    inputs, outputs = _input_features(camera)
    return XVLAConfig(
        input_features=inputs,
        output_features=outputs,
        device=cfg.policy.device,
        chunk_size=cfg.policy.chunk_size,
        n_action_steps=cfg.policy.action_steps,
        dtype="float32",
        florence_config=arch_florence_config(arch, camera, tokenizer_vocab_size(tokenizer_path)),
        tokenizer_name=tokenizer_path,
        tokenizer_max_length=TOKENIZER_MAX_LENGTH,
        hidden_size=arch.hidden_size or cfg.policy.hidden_dim,
        depth=arch.depth,
        num_heads=arch.heads,
        mlp_ratio=arch.mlp_ratio,
        num_domains=LIBERO_DOMAIN_ID + 1,
        len_soft_prompts=arch.soft_prompts,
        dim_time=arch.dim_time,
        max_len_seq=_round_up(max_len_seq, 16),
        action_mode="ee6d",
        num_denoising_steps=cfg.recipe.denoise_steps,
        use_proprio=True,
        max_state_dim=MAX_STATE_DIM,
        max_action_dim=EE6D_ACTION_DIM,
        num_image_views=num_views,
        resize_imgs_with_padding=(camera, camera),
        normalization_mapping=lerobot_normalization_mapping(),
    )


def tiny_xvla_config(cfg: RunConfig, tokenizer_path: str):
    """XVLAConfig for ``policy.size = "tiny"`` (kept for callers that name the size explicitly)."""
    return arch_xvla_config(cfg, tokenizer_path, XVLA_ARCHS["tiny"])


def full_florence_config(camera_size: int) -> dict[str, Any]:
    """Florence-2-large as LeRobot 0.4.4's default ``XVLAConfig`` builds it (DaViT 256-2048 wide,
    depths 1-1-9-1; BART encoder 12 x 1024), with every dropout / drop-path rate at 0 (RL forward
    passes must be deterministic; the pretrained checkpoint's rates do not matter in eval mode)."""
    side = max(1, camera_size // DAVIT_DOWNSAMPLE)
    return {
        "vision_config": {
            "model_type": "davit",
            "drop_path_rate": 0.0,
            "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": max(50, side)},
        },
        "text_config": {
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "encoder_layerdrop": 0.0,
            "decoder_layerdrop": 0.0,
        },
    }


def full_xvla_config(cfg: RunConfig, tokenizer_path: str):
    """XVLAConfig for ``policy.size = "full"``: every architecture field at LeRobot 0.4.4's default
    (hidden 1024, depth 24, 16 heads, 32 soft prompts, 30 domains, max_len_seq 512; ~0.88 B
    parameters), the views, state layout and action mode of ``lerobot/xvla-libero``, and pirl's
    shipped tokenizer (its ids fit Florence-2's 51,289-token vocabulary), so it builds offline."""
    from lerobot.policies.xvla.configuration_xvla import XVLAConfig

    inputs, outputs = _input_features(cfg.env.camera_size)
    return XVLAConfig(
        input_features=inputs,
        output_features=outputs,
        device=cfg.policy.device,
        chunk_size=cfg.policy.chunk_size,
        n_action_steps=cfg.policy.action_steps,
        dtype="float32",
        florence_config=full_florence_config(cfg.env.camera_size),
        tokenizer_name=tokenizer_path,
        action_mode="ee6d",
        num_denoising_steps=cfg.recipe.denoise_steps,
        use_proprio=True,
        max_action_dim=EE6D_ACTION_DIM,
        num_image_views=len(IMAGE_KEYS),
        resize_imgs_with_padding=(cfg.env.camera_size, cfg.env.camera_size),
        normalization_mapping=lerobot_normalization_mapping(),
    )


@torch.no_grad()
def init_uninitialised_params(policy: torch.nn.Module, std: float = 0.02) -> None:
    """Initialise what LeRobot leaves as ``torch.empty``: Florence-2's ``image_projection``."""
    vlm = policy.model.vlm
    torch.nn.init.normal_(vlm.image_projection, mean=0.0, std=std)


def check_finite_params(policy: torch.nn.Module, limit: float = 1e3) -> None:
    """Fail loudly if any parameter is non-finite or absurdly large (an uninitialised leftover)."""
    for name, p in policy.named_parameters():
        if not torch.isfinite(p).all() or p.abs().max().item() > limit:
            raise RuntimeError(f"parameter {name} is not initialised (max |x| = {p.abs().max().item():.3g})")


def build_tiny_policy(cfg: RunConfig, seed: int | None = None) -> BuiltPolicy:
    """A randomly initialised X-VLA from config (``tiny``, ``small`` or ``full``); deterministic given ``seed``
    (default ``cfg.seed``) without disturbing the global torch RNG."""
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    tokenizer_path = cfg.policy.tokenizer or str(TOKENIZER_DIR)
    if not Path(tokenizer_path).is_dir():
        raise ConfigError(
            "policy.tokenizer",
            cfg.policy.tokenizer,
            f"'' (pirl's shipped LIBERO tokenizer) or a local tokenizer directory for policy.size = "
            f"{cfg.policy.size!r}",
        )
    make_config = full_xvla_config if cfg.policy.size == "full" else arch_xvla_config
    config = make_config(cfg, tokenizer_path)
    seed = cfg.seed if seed is None else seed
    with torch.random.fork_rng(devices=[]), quiet_transformers():
        torch.manual_seed(seed)
        policy = XVLAPolicy(config)
        init_uninitialised_params(policy)
    check_finite_params(policy)
    check_device(cfg.policy.device)
    policy.to(cfg.policy.device)
    return BuiltPolicy(policy, tokenizer_path, LIBERO_DOMAIN_ID, f"{cfg.policy.size}(seed={seed})")


# --------------------------------------------------------------------------- pretrained


def check_camera_size(config: Any, cfg: RunConfig) -> None:
    """The checkpoint's declared image size must be ``env.camera_size``: a model trained on 128 px
    images sees other token counts and scales at 64 px, and would run without complaint."""
    for key, feature in config.image_features.items():
        shape = tuple(feature.shape)
        if shape[-2:] != (cfg.env.camera_size, cfg.env.camera_size):
            raise ConfigError(
                "env.camera_size",
                cfg.env.camera_size,
                f"{shape[-1]} (checkpoint {cfg.policy.pretrained_path} declares {key} of shape {list(shape)})",
                hint=f"pass --env.camera_size={shape[-1]}",
            )


def build_pretrained_policy(cfg: RunConfig) -> BuiltPolicy:
    """``policy.size = "pretrained"``: load ``policy.pretrained_path`` (e.g. ``lerobot/xvla-libero``)
    from the local cache with LeRobot's own ``XVLAPolicy.from_pretrained``."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    snap = resolve_local_snapshot(
        cfg.policy.pretrained_path, ("config.json", "model.safetensors"), "policy.pretrained_path"
    )
    config = PreTrainedConfig.from_pretrained(str(snap), local_files_only=True)
    if config.type != "xvla":
        raise ConfigError(
            "policy.pretrained_path",
            cfg.policy.pretrained_path,
            "an X-VLA checkpoint",
            hint=f"type is {config.type!r}",
        )
    if config.chunk_size != cfg.policy.chunk_size:
        raise ConfigError(
            "policy.chunk_size",
            cfg.policy.chunk_size,
            f"{config.chunk_size} (the chunk size {cfg.policy.pretrained_path} was trained with)",
        )
    if config.action_mode.lower() != "ee6d":
        raise ConfigError(
            "policy.pretrained_path", cfg.policy.pretrained_path, "an ee6d X-VLA (LIBERO absolute control)"
        )
    check_camera_size(config, cfg)
    make_portable(config)
    tokenizer = resolve_local_tokenizer(
        cfg.policy.tokenizer or checkpoint_tokenizer(snap, config.tokenizer_name)
    )
    config.tokenizer_name = tokenizer
    config.n_action_steps = cfg.policy.action_steps
    config.device = cfg.policy.device
    check_device(cfg.policy.device)
    with quiet_transformers():
        policy = XVLAPolicy.from_pretrained(str(snap), config=config, local_files_only=True)
    check_finite_params(policy, limit=float("inf"))
    return BuiltPolicy(policy, tokenizer, LIBERO_DOMAIN_ID, str(cfg.policy.pretrained_path))


def build_xvla_policy(cfg: RunConfig) -> BuiltPolicy:
    """The LeRobot ``XVLAPolicy`` of ``cfg.policy``: built from config for ``policy.size`` in
    :data:`~pirl_core.config.CONFIG_SIZES`, else loaded from ``policy.pretrained_path`` (locally)."""
    if cfg.policy.size in CONFIG_SIZES:
        return build_tiny_policy(cfg)
    return build_pretrained_policy(cfg)
