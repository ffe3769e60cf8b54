"""The X-VLA adapter: tiny offline build, processors, RL-safe forward passes, save/load, ratio == 1.

These use LeRobot's real XVLAPolicy and processor pipelines on synthetic LIBERO-shaped raw
observations (the real-simulator chain is in tests/test_libero_env.py, marked slow).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode
from pirl_core.policies.xvla.adapter import XVLAAdapter, build_xvla_adapter
from pirl_core.policies.xvla.build import build_tiny_policy
from tests.libero_synthetic import synthetic_raw_obs

TASK = "put both the alphabet soup and the tomato sauce in the basket"


def raw_obs(batch: int = 2, seed: int = 0, size: int = 256) -> dict:
    return synthetic_raw_obs(batch=batch, seed=seed, size=size, task=TASK)


def smoke_cfg(*overrides: str):
    return load_config("libero_tiny", list(overrides))


@pytest.fixture(scope="module")
def adapter() -> XVLAAdapter:
    return build_xvla_adapter(smoke_cfg(), [TASK])


@pytest.fixture(scope="module")
def obs(adapter: XVLAAdapter) -> dict[str, torch.Tensor]:
    return adapter.prepare_obs(raw_obs())


def ode_chunk(
    adapter: XVLAAdapter, obs: dict[str, torch.Tensor], x1: torch.Tensor, steps: int = 4
) -> torch.Tensor:
    """Plain Euler sampling through the adapter contract (clean action -> velocity)."""
    ctx = adapter.encode(obs)
    x = x1
    for k in range(steps):
        t = torch.full((x.shape[0],), 1 - k / steps)
        a_hat = adapter.predict(x, t, ctx).value
        x = x - (1 / steps) * (x - a_hat) / t[:, None, None]
    return x


# ------------------------------------------------------------------ build


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7])
def test_tiny_builds_finite_for_several_seeds(seed: int) -> None:
    cfg = smoke_cfg(f"seed={seed}")
    built = build_tiny_policy(cfg)
    policy = built.policy
    for name, p in policy.named_parameters():
        assert torch.isfinite(p).all(), name
        assert p.abs().max().item() < 10, name  # no torch.empty leftovers (1e22 seen upstream)
    proj = policy.model.vlm.image_projection
    assert 0.01 < proj.std().item() < 0.03  # explicitly initialised (LeRobot leaves it torch.empty)
    n_params = sum(p.numel() for p in policy.parameters())
    assert n_params < 500_000
    adapter = build_xvla_adapter(cfg, [TASK])
    o = adapter.prepare_obs(raw_obs(seed=seed))
    with torch.no_grad():
        ctx = adapter.encode(o)
        pred = adapter.predict(torch.randn(2, adapter.chunk_size, adapter.action_dim), torch.ones(2), ctx)
    assert torch.isfinite(pred.value).all() and torch.isfinite(pred.features).all()
    assert all(torch.isfinite(v.float()).all() for v in ctx.values())


def test_same_seed_same_weights_other_seed_differs() -> None:
    a = build_tiny_policy(smoke_cfg("seed=5")).policy.state_dict()
    b = build_tiny_policy(smoke_cfg("seed=5")).policy.state_dict()
    c = build_tiny_policy(smoke_cfg("seed=6")).policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_config_follows_profile(adapter: XVLAAdapter) -> None:
    cfg = smoke_cfg()
    pc = adapter.policy.config
    assert (adapter.chunk_size, adapter.action_steps, adapter.action_dim) == (8, 4, 20)
    assert (pc.chunk_size, pc.n_action_steps) == (cfg.policy.chunk_size, cfg.policy.action_steps)
    assert pc.action_mode == "ee6d" and pc.num_denoising_steps == cfg.recipe.denoise_steps
    assert pc.image_features["observation.images.image"].shape == (3, 64, 64)
    text = pc.florence_config["text_config"]
    assert text["dropout"] == 0 and pc.florence_config["vision_config"]["drop_path_rate"] == 0


# ------------------------------------------------------------------ processors


def test_prepare_obs_is_deterministic_and_policy_ready(adapter: XVLAAdapter) -> None:
    raw = raw_obs(batch=3, seed=4)
    raw["pixels"]["image"][:, :, :128] = 0  # black left half, white right half
    raw["pixels"]["image"][:, :, 128:] = 255
    a, b = adapter.prepare_obs(raw), adapter.prepare_obs(raw)
    assert set(a) == {
        "observation.images.image",
        "observation.images.image2",
        "observation.state",
        "observation.language.tokens",
        "observation.language.attention_mask",
        "domain_id",
    }
    assert all(torch.equal(a[k], b[k]) for k in a)
    img = a["observation.images.image"]
    assert img.shape == (3, 3, 256, 256) and img.dtype == torch.float32  # frames keep the render size
    # ... and the policy resizes them to its image size (config.resize_imgs_with_padding)
    assert adapter.policy._build_model_inputs(a)["image_input"].shape == (3, 2, 3, 64, 64)
    # ImageNet-normalised once (a second normalisation would squash into ~[-9, -6]).
    assert -2.2 < img.min().item() < -1.0 and 1.5 < img.max().item() < 2.7
    assert a["observation.state"].shape == (3, 20)
    assert torch.equal(a["domain_id"], torch.full((3,), 3))
    assert a["observation.language.tokens"].shape == (3, 24)
    assert a["observation.language.tokens"][0, 0].item() == 0  # <s>


def test_to_env_action_gives_seven_dims(adapter: XVLAAdapter, obs: dict) -> None:
    with torch.no_grad():
        x0 = ode_chunk(adapter, obs, torch.randn(2, adapter.chunk_size, adapter.action_dim))
    act = adapter.to_env_action(x0, obs)
    assert act.shape == (2, adapter.action_steps, 7) and act.dtype == np.float32
    assert np.isfinite(act).all()
    assert set(np.unique(act[..., 6])) <= {-1.0, 1.0}
    # xyz passes through unchanged (absolute control): first three channels of the chunk
    np.testing.assert_allclose(act[..., :3], x0[:, : adapter.action_steps, :3].numpy(), rtol=0, atol=1e-6)
    # gripper: sigmoid(logit) > 0.5  <=>  logit > 0
    expect = np.where(x0[:, : adapter.action_steps, 9].numpy() > 0, 1.0, -1.0)
    np.testing.assert_array_equal(act[..., 6], expect)


def test_sampled_mask_excludes_grippers_second_arm_and_unexecuted_steps(adapter: XVLAAdapter) -> None:
    mask = adapter.sampled_mask()
    assert mask.shape == (8, 20) and mask.dtype == torch.bool
    assert mask[:4, :9].all()
    assert not mask[4:].any()
    assert not mask[:, 9:].any()  # 9 and 19 are gripper logits, 10-19 the unexecuted second arm
    assert int(mask.sum()) == 4 * 9


# ------------------------------------------------------------------ forward passes


def test_action_head_matches_lerobot_transformer_forward(adapter: XVLAAdapter, obs: dict) -> None:
    """The adapter's feature-exposing copy of SoftPromptedTransformer.forward is exact."""
    with torch.no_grad():
        ctx = adapter.encode(obs)
        x = torch.randn(2, adapter.chunk_size, adapter.action_dim)
        t = torch.tensor([0.75, 0.25])
        mine = adapter.predict(x, t, ctx).value
        proprio_m, x_m = adapter.model.action_space.preprocess(ctx["proprio"], x)
        ref = adapter.model.transformer(
            domain_id=ctx["domain_id"],
            vlm_features=ctx["vlm_features"],
            aux_visual_inputs=ctx["aux_visual_inputs"],
            action_with_noise=x_m,
            proprio=proprio_m,
            t=t,
        )
    assert torch.equal(mine, ref)


def test_gripper_channels_of_x_t_do_not_matter(adapter: XVLAAdapter, obs: dict) -> None:
    """X-VLA zeroes gripper channels at its input: they carry no flow state."""
    with torch.no_grad():
        ctx = adapter.encode(obs)
        x = torch.randn(2, adapter.chunk_size, adapter.action_dim)
        y = x.clone()
        y[..., [9, 19]] = 123.0
        t = torch.full((2,), 0.5)
        assert torch.equal(adapter.predict(x, t, ctx).value, adapter.predict(y, t, ctx).value)


def test_cached_context_equals_fresh_encoding(adapter: XVLAAdapter, obs: dict) -> None:
    x1 = torch.randn(2, adapter.chunk_size, adapter.action_dim)
    with torch.no_grad():
        cached = ode_chunk(adapter, obs, x1)
        x = x1
        for k in range(4):
            t = torch.full((2,), 1 - k / 4)
            a_hat = adapter.predict(x, t, adapter.encode(obs)).value  # re-encode every step
            x = x - 0.25 * (x - a_hat) / t[:, None, None]
    assert torch.equal(cached, x)


def test_rl_forward_passes_are_identical_even_after_train(adapter: XVLAAdapter, obs: dict) -> None:
    x = torch.randn(2, adapter.chunk_size, adapter.action_dim)
    t = torch.full((2,), 0.5)
    adapter.train()  # what a learner loop might call: must not switch dropout on
    assert not adapter.policy.training
    outs = []
    for _ in range(2):
        ctx = adapter.encode(obs)
        pred = adapter.predict(x, t, ctx)
        outs.append((pred.value, adapter.value_features(ctx, "after_vlm")))
        assert pred.value.requires_grad  # gradients still flow
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    # The guard is needed: LeRobot's action transformer hard-codes dropout 0.1.
    adapter.policy.train()
    try:
        with torch.no_grad():
            ctx = adapter.encode(obs)
            a, b = adapter.predict(x, t, ctx).value, adapter.predict(x, t, ctx).value
        assert not torch.equal(a, b)
    finally:
        adapter.set_rl_mode()


def test_value_features_shapes(adapter: XVLAAdapter, obs: dict) -> None:
    with torch.no_grad():
        ctx = adapter.encode(obs)
        x1 = torch.randn(2, adapter.chunk_size, adapter.action_dim)
        v1 = adapter.value_features(ctx, "after_vlm")
        v2 = adapter.value_features(ctx, "action_head", x1)
    assert v1.shape == (2, adapter.value_feature_dim("after_vlm"))
    assert v2.shape == (2, adapter.value_feature_dim("action_head"))
    assert adapter.noise_feature_dim == adapter.predict(x1, torch.ones(2), ctx).features.shape[-1]
    with pytest.raises(ValueError):
        adapter.value_features(ctx, "action_head")


# ------------------------------------------------------------------ save / load / identity


def test_save_pretrained_roundtrip_with_lerobot_from_pretrained(
    adapter: XVLAAdapter, obs: dict, tmp_path: Path
) -> None:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    adapter.save_pretrained(tmp_path / "pretrained_model")
    d = tmp_path / "pretrained_model"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (d / name).is_file(), name
    loaded = XVLAPolicy.from_pretrained(str(d))
    sd_a, sd_b = adapter.policy.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)

    other = XVLAAdapter(
        type("B", (), {"policy": loaded, "tokenizer_path": "", "domain_id": 3, "source": "loaded"})(),
        adapter.processors,
        adapter.action_steps,
        "tiny",
    )
    x1 = torch.randn(2, adapter.chunk_size, adapter.action_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ode_chunk(adapter, obs, x1), ode_chunk(other, obs, x1)
    assert torch.equal(a, b)
    np.testing.assert_array_equal(adapter.to_env_action(a, obs), other.to_env_action(b, obs))


def test_identity_names_architecture(adapter: XVLAAdapter) -> None:
    ident = adapter.identity()
    assert ident["policy_type"] == "xvla" and ident["prediction_type"] == "clean_action"
    assert ident["action_mode"] == "ee6d" and ident["gripper_channels"] == [9, 19]
    assert ident["image_shape"] == [3, 64, 64] and ident["hidden_size"] == 64
    assert ident["chunk_size"] == 8 and ident["action_steps"] == 4 and ident["action_dim"] == 20
    import json

    json.dumps(ident)  # checkpoint-storable


# ------------------------------------------------------------------ bench profile


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch) -> Path:
    """Point huggingface_hub and transformers at an empty cache, offline (whatever this machine holds)."""
    import huggingface_hub.constants as hub_constants
    import transformers.utils.hub as transformers_hub

    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.usefixtures("empty_hf_cache")
def test_bench_profile_without_cache_fails_fast_with_fetch_command() -> None:
    cfg = load_config("bench", ["policy.device=cpu"])
    with pytest.raises(ConfigError) as info:
        build_xvla_adapter(cfg, [TASK])
    err = info.value
    assert err.exit_code == ExitCode.USAGE
    assert "huggingface-cli download lerobot/xvla-libero" in err.line()
    assert err.field == "policy.pretrained_path"


def test_pretrained_size_loads_a_local_lerobot_checkpoint(
    adapter: XVLAAdapter, obs: dict, tmp_path: Path
) -> None:
    """policy.size = "pretrained" with a local directory: LeRobot's from_pretrained, same outputs."""
    adapter.save_pretrained(tmp_path / "ckpt")
    cfg = smoke_cfg("policy.size=pretrained", f"policy.pretrained_path={tmp_path / 'ckpt'}")
    loaded = build_xvla_adapter(cfg, [TASK])
    assert loaded.source == str(tmp_path / "ckpt") and loaded.identity()["policy_size"] == "pretrained"
    x1 = torch.randn(2, adapter.chunk_size, adapter.action_dim)
    with torch.no_grad():
        assert torch.equal(ode_chunk(adapter, obs, x1), ode_chunk(loaded, obs, x1))
    with pytest.raises(ConfigError, match="policy.chunk_size"):
        build_xvla_adapter(smoke_cfg(*_pretrained(tmp_path), "policy.chunk_size=16"), [TASK])


def _pretrained(tmp_path: Path) -> tuple[str, str]:
    return ("policy.size=pretrained", f"policy.pretrained_path={tmp_path / 'ckpt'}")


@pytest.mark.usefixtures("empty_hf_cache")
def test_missing_pretrained_tokenizer_fails_fast_with_fetch_command(
    adapter: XVLAAdapter, tmp_path: Path
) -> None:
    adapter.save_pretrained(tmp_path / "ckpt")
    cfg = smoke_cfg(*_pretrained(tmp_path), "policy.tokenizer=facebook/bart-large")
    with pytest.raises(ConfigError) as info:
        build_xvla_adapter(cfg, [TASK])
    assert "huggingface-cli download facebook/bart-large" in info.value.line()
    assert info.value.field == "policy.tokenizer"


def test_unknown_instruction_words_are_refused() -> None:
    with pytest.raises(ConfigError, match="policy.tokenizer"):
        build_xvla_adapter(smoke_cfg(), ["fold the laundry"])


# ------------------------------------------------------------------ ratio == 1 with H1's recipe


@pytest.mark.parametrize(
    "overrides",
    [
        ("recipe.method=flow_noise", "recipe.critic=after_vlm"),
        ("recipe.method=flow_sde", "recipe.critic=action_head"),
        ("recipe.method=flow_sde", "recipe.algorithm=grpo"),
    ],
)
def test_ratio_equals_one_between_actor_and_learner(overrides: tuple[str, ...]) -> None:
    """The actor and the learner build their own adapters from the same config; the learner
    re-scores the actor's stored chains on the wire tensors: |ratio - 1| < 1e-4 in float32."""
    from pirl_core.recipe.actor_critic import build_actor_critic

    cfg = smoke_cfg(*overrides)
    actor = build_actor_critic(build_xvla_adapter(cfg, [TASK]), cfg.recipe, seed=cfg.seed)
    learner = build_actor_critic(build_xvla_adapter(cfg, [TASK]), cfg.recipe, seed=cfg.seed)
    learner.train()

    wire = actor.adapter.prepare_obs(raw_obs(batch=4, seed=11))
    out = actor.act(wire, torch.Generator().manual_seed(3))
    assert out.chain.shape == (4, cfg.recipe.denoise_steps + 1, 8, 20)
    assert torch.isfinite(out.logp).all()
    # Channels outside the sampled mask follow the deterministic mean, so the executed gripper logit
    # is the last step's prediction (up to float rounding of x - dt * (x - a_hat) / dt).
    with torch.no_grad():
        ctx = learner.adapter.encode(wire)
        k_last = cfg.recipe.denoise_steps - 1
        t_last = torch.full((4,), 1.0 / cfg.recipe.denoise_steps)
        a_last = learner.adapter.predict(out.chain[:, k_last], t_last, ctx).value
    torch.testing.assert_close(out.x0[..., [9, 19]], a_last[..., [9, 19]], atol=1e-5, rtol=0)
    logp, _entropy, value = learner.evaluate({k: v.clone() for k, v in wire.items()}, out.chain, out.sde_step)
    ratio = torch.exp(logp - out.logp)
    assert (ratio - 1).abs().max().item() < 1e-4
    assert out.logp.abs().min() > 0  # a real log-density, not a zero placeholder
    if learner.value_head is not None:
        assert torch.allclose(value, out.value, atol=1e-5, rtol=0)
    # gradients reach the X-VLA action head and the VLM
    (-logp.mean()).backward()
    grads = {n: p.grad for n, p in learner.adapter.named_parameters() if p.grad is not None}
    assert any(n.startswith("policy.model.transformer.") and g.abs().sum() > 0 for n, g in grads.items())
    assert any(n.startswith("policy.model.vlm.") and g.abs().sum() > 0 for n, g in grads.items())
