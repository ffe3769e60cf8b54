"""Building LeRobot ``PI0Policy``/``PI05Policy`` objects for pirl: from config or a local checkpoint.

* ``policy.size`` = tiny / small: pirl's :data:`~pirl_core.policies.pi.arch.PI_ARCHS`, random init,
  LIBERO's 7-dim action unpadded (the state padded to 32, as LeRobot's prompt step assumes), the images at env.camera_size.
* ``full``: LeRobot's own numbers (PaliGemma 2B + Gemma 300M + So400m, state/action padded to 32,
  224 px), random init — for parameter counts and GPU benchmarks.
* ``pretrained``: any LeRobot π0/π0.5 checkpoint directory (or a cached hub snapshot), read
  locally, never downloaded. pirl's own tiny/small checkpoints carry :data:`ARCH_FILE` so they load
  at their size; LeRobot's carry none and load at LeRobot's. A checkpoint pirl writes also records
  the ``env.control_mode`` it acts in (:data:`CONTROL_FILE`; absent: LeRobot's π LIBERO checkpoints'
  relative control); loading it under another mode is refused.

Weights are loaded strictly: LeRobot's ``from_pretrained`` for π returns a randomly initialised
model when the state dict does not fit (it prints a warning and carries on); pirl refuses instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pirl_core.config import RunConfig
from pirl_core.errors import ConfigError
from pirl_core.policies.device import check_device
from pirl_core.policies.pi.arch import PI_ARCHS, PiArch, lerobot_pi_construction
from pirl_core.policies.pi.libero import (
    ACTION_DIM,
    ACTION_KEY,
    CONTROL_MODES,
    IMAGE_KEYS,
    STATE_DIM,
    STATE_KEY,
)
from pirl_core.policies.pi.tokenizer import PI_TOKENIZER_DIR

ARCH_FILE = "pirl_pi_arch.json"  # written next to config.json by pirl for tiny / small policies
CONTROL_FILE = "pirl_pi_control.json"  # {"control_mode": ...}: what the policy's actions mean
DEFAULT_CONTROL_MODE = "relative"  # a checkpoint without CONTROL_FILE (LeRobot's pi05_libero)
# pirl's π0.5 LIBERO prompt: <bos> + "task :" + <= 21 instruction words + ", state :" + 32 state bins
# + "; action :" = at most 62 tokens. The state keeps LeRobot's padding to 32 (``max_state_dim``):
# LeRobot's state-prompt step does not save its own ``max_state_dim``, so a reloaded pipeline
# always pads to 32, and pirl's policies must too.
TOKENIZER_MAX_LENGTH = 72
FULL_IMAGE_SIZE = 224


@dataclass
class BuiltPi:
    """A constructed π policy plus what its processors need."""

    policy: Any  # PI0Policy | PI05Policy
    policy_type: str  # "pi0" | "pi05"
    arch: PiArch | None  # None: LeRobot's own sizes
    tokenizer_dir: str
    source: str  # "tiny(seed=N)" or the checkpoint it came from
    checkpoint_dir: Path | None = None  # its processors are used when present
    tokenizer_override: str = ""  # policy.tokenizer as given (a checkpoint's own tokenizer otherwise)
    control_mode: str = DEFAULT_CONTROL_MODE  # env.control_mode the actions are meant for


def policy_classes(policy_type: str) -> tuple[type, type]:
    """(config class, policy class) of a π family."""
    if policy_type == "pi05":
        from lerobot.policies.pi05.configuration_pi05 import PI05Config
        from lerobot.policies.pi05.modeling_pi05 import PI05Policy

        return PI05Config, PI05Policy
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy

    return PI0Config, PI0Policy


def pi_config(cfg: RunConfig, size: str) -> Any:
    """The LeRobot config of a π policy built from config for ``cfg`` at ``size``."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    config_cls, _ = policy_classes(cfg.policy.type)
    full = size == "full"
    side = FULL_IMAGE_SIZE if full else cfg.env.camera_size
    extra: dict[str, Any] = {}
    if not full:
        extra = {"max_action_dim": ACTION_DIM, "tokenizer_max_length": TOKENIZER_MAX_LENGTH}
    return config_cls(
        input_features={
            **{
                k: PolicyFeature(FeatureType.VISUAL, (3, cfg.env.camera_size, cfg.env.camera_size))
                for k in IMAGE_KEYS
            },
            STATE_KEY: PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
        },
        output_features={ACTION_KEY: PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        device=cfg.policy.device,
        chunk_size=cfg.policy.chunk_size,
        n_action_steps=cfg.policy.action_steps,
        num_inference_steps=cfg.recipe.denoise_steps,
        image_resolution=(side, side),
        dtype="float32",
        train_expert_only=not cfg.recipe.train_vlm,
        **extra,
    )


def quiet_build(fn, *args, **kwargs):
    """Construction under transformers' error-only logging (PaliGemma warns about deprecated kwargs)."""
    from pirl_core.policies.xvla.build import quiet_transformers

    with quiet_transformers():
        return fn(*args, **kwargs)


def build_from_config(cfg: RunConfig, seed: int | None = None) -> BuiltPi:
    """A randomly initialised π policy (tiny, small or full); deterministic given ``seed``
    (default ``cfg.seed``) without disturbing the global RNG."""
    _, policy_cls = policy_classes(cfg.policy.type)
    arch = None if cfg.policy.size == "full" else PI_ARCHS[cfg.policy.size]
    tokenizer_dir = cfg.policy.tokenizer or str(PI_TOKENIZER_DIR)
    if not Path(tokenizer_dir).is_dir():
        raise ConfigError(
            "policy.tokenizer", cfg.policy.tokenizer, "'' (pirl's π tokenizer) or a local tokenizer directory"
        )
    config = pi_config(cfg, cfg.policy.size)
    seed = cfg.seed if seed is None else seed
    check_device(cfg.policy.device)
    with torch.random.fork_rng(devices=[]), lerobot_pi_construction(arch):
        torch.manual_seed(seed)
        policy = quiet_build(policy_cls, config)
    policy.to(cfg.policy.device)
    source = f"{cfg.policy.size}(seed={seed})"
    return BuiltPi(policy, cfg.policy.type, arch, tokenizer_dir, source, control_mode=cfg.env.control_mode)


def _read_sidecar(directory: Path, name: str) -> dict | None:
    """One of pirl's small JSON files next to a π's ``config.json`` (None: absent). A damaged one
    is refused by name: guessing the size or the control mode would load the wrong policy."""
    path = Path(directory) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise ConfigError("policy.pretrained_path", str(directory), f"a readable JSON object in {name}")
    return data


def read_arch(directory: Path) -> PiArch | None:
    data = _read_sidecar(directory, ARCH_FILE)
    if data is None:
        return None
    try:
        return PiArch(**data)
    except TypeError:
        raise ConfigError(
            "policy.pretrained_path",
            str(directory),
            f"{ARCH_FILE} with the fields {sorted(PiArch.__dataclass_fields__)}",
        ) from None


def write_arch(directory: Path, arch: PiArch | None) -> None:
    if arch is not None:
        (Path(directory) / ARCH_FILE).write_text(json.dumps(arch.as_dict(), indent=2, sort_keys=True) + "\n")


def read_control_mode(directory: Path) -> str:
    """The ``env.control_mode`` a saved π acts in (:data:`CONTROL_FILE`, else relative)."""
    data = _read_sidecar(directory, CONTROL_FILE)
    if data is None:
        return DEFAULT_CONTROL_MODE
    mode = data.get("control_mode")
    if mode not in CONTROL_MODES:
        raise ConfigError(
            "policy.pretrained_path",
            str(directory),
            f"{CONTROL_FILE} naming one of {list(CONTROL_MODES)} (found {mode!r})",
        )
    return str(mode)


def write_control_mode(directory: Path, control_mode: str) -> None:
    text = json.dumps({"control_mode": control_mode}, indent=2, sort_keys=True)
    (Path(directory) / CONTROL_FILE).write_text(text + "\n")


def load_weights_strictly(policy: Any, directory: Path) -> None:
    """LeRobot's key fixes (``_fix_pytorch_state_dict_keys``, the ``model.`` prefix), then a load
    that refuses missing or unexpected tensors. A tensor tied to one that was loaded (PaliGemma's
    ``lm_head`` and ``embed_tokens`` share storage; safetensors keeps one name) is not missing."""
    import logging

    from safetensors.torch import load_file

    logging.disable(logging.WARNING)  # LeRobot warns on every patch-embedding key it passes through
    try:
        raw = load_file(str(Path(directory) / "model.safetensors"))
        state = policy._fix_pytorch_state_dict_keys(raw, policy.config)  # noqa: SLF001
    finally:
        logging.disable(logging.NOTSET)
    state = {k if k.startswith("model.") else f"model.{k}": v for k, v in state.items()}
    try:
        missing, unexpected = policy.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        mismatch = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise ConfigError(
            "policy.pretrained_path",
            str(directory),
            "a checkpoint whose tensors fit the policy it declares",
            hint=mismatch[:300],
        ) from None
    storage = {k: v.data_ptr() for k, v in policy.state_dict(keep_vars=True).items()}
    loaded = {storage[k] for k in state if k in storage}
    missing = [k for k in missing if storage.get(k) not in loaded]
    if missing or unexpected:
        raise ConfigError(
            "policy.pretrained_path",
            str(directory),
            "a checkpoint whose tensors fit the policy it declares",
            hint=f"missing {missing[:3]} ({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})",
        )


def load_pi_policy(
    directory: Path, policy_type: str, device: str = "cpu", overrides: dict[str, Any] | None = None
) -> tuple[Any, PiArch | None]:
    """A π policy from a local LeRobot checkpoint directory, at the size it was saved with."""
    from lerobot.configs.policies import PreTrainedConfig

    policy_classes(policy_type)  # registers LeRobot's config class for the type, or draccus cannot read it
    config = PreTrainedConfig.from_pretrained(str(directory), local_files_only=True)
    if config.type != policy_type:
        raise ConfigError(
            "policy.pretrained_path",
            str(directory),
            f"a {policy_type} checkpoint",
            hint=f"its config.json says type {config.type!r}",
        )
    config.device = device
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    arch = read_arch(directory)
    _, policy_cls = policy_classes(policy_type)
    with lerobot_pi_construction(arch):
        policy = quiet_build(policy_cls, config)
    load_weights_strictly(policy, directory)
    policy.to(device)
    return policy, arch


def build_pretrained(cfg: RunConfig) -> BuiltPi:
    """``policy.size = "pretrained"``: ``policy.pretrained_path`` read locally."""
    from pirl_core.policies.xvla.hub import resolve_local_snapshot

    snap = resolve_local_snapshot(
        cfg.policy.pretrained_path, ("config.json", "model.safetensors"), "policy.pretrained_path"
    )
    check_device(cfg.policy.device)
    saved_mode = read_control_mode(snap)
    if saved_mode != cfg.env.control_mode:
        raise ConfigError(
            "env.control_mode",
            cfg.env.control_mode,
            f"{saved_mode!r} (the control mode {cfg.policy.pretrained_path} acts in, {CONTROL_FILE})",
            hint=f"--env.control_mode={saved_mode}",
        )
    policy, arch = load_pi_policy(
        snap,
        cfg.policy.type,
        cfg.policy.device,
        overrides={"n_action_steps": cfg.policy.action_steps, "train_expert_only": not cfg.recipe.train_vlm},
    )
    if policy.config.chunk_size != cfg.policy.chunk_size:
        raise ConfigError(
            "policy.chunk_size",
            cfg.policy.chunk_size,
            f"{policy.config.chunk_size} (the chunk size {cfg.policy.pretrained_path} was trained with)",
        )
    tokenizer_dir = cfg.policy.tokenizer or str(PI_TOKENIZER_DIR)
    return BuiltPi(
        policy,
        cfg.policy.type,
        arch,
        tokenizer_dir,
        str(cfg.policy.pretrained_path),
        checkpoint_dir=snap,
        tokenizer_override=cfg.policy.tokenizer,
        control_mode=saved_mode,
    )


def build_pi_policy(cfg: RunConfig) -> BuiltPi:
    """The LeRobot π policy of ``cfg.policy``."""
    from pirl_core.config import CONFIG_SIZES

    if cfg.policy.size in CONFIG_SIZES:
        return build_from_config(cfg)
    return build_pretrained(cfg)
