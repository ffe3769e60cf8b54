"""The π0 / π0.5 families: LeRobot's PI0Policy / PI05Policy at pirl's tiny size, the same contract
X-VLA passes (closed-form one-step log-density, ratio exactly 1, cached prefix = LeRobot's joint
pass, checkpoint round trip through LeRobot's from_pretrained, identity refusal on a changed type)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError
from pirl_core.policies.pi.adapter import PiAdapter, build_pi_adapter
from pirl_core.recipe.actor_critic import build_actor_critic
from pirl_core.recipe.flow import ode_mean, sde_moments, time_grid, to_velocity
from tests.libero_synthetic import synthetic_raw_obs

TASK = "pick up the alphabet soup and place it in the basket"
TYPES = ("pi0", "pi05")


def cfg_for(policy_type: str, *overrides: str):
    return load_config("pi05_smoke", [f"policy.type={policy_type}", *overrides])


def raw_obs(batch: int = 2, seed: int = 0) -> dict:
    return synthetic_raw_obs(batch=batch, seed=seed, size=64, task=TASK)


@pytest.fixture(scope="module", params=TYPES)
def adapter(request) -> PiAdapter:
    return build_pi_adapter(cfg_for(request.param), [TASK])


@pytest.fixture(scope="module")
def obs(adapter: PiAdapter) -> dict[str, torch.Tensor]:
    return adapter.prepare_obs(raw_obs())


def joint_pass_velocity(adapter: PiAdapter, obs: dict, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v from LeRobot's own uncached pass: prefix and suffix through ``compute_layer_complete`` together."""
    from lerobot.policies.pi05.modeling_pi05 import make_att_2d_masks

    m = adapter.model
    images, img_masks = adapter.policy._preprocess_images(obs)
    pe, pp, pa = m.embed_prefix(
        images, img_masks, obs["observation.language.tokens"], obs["observation.language.attention_mask"]
    )
    if adapter.policy_type == "pi0":
        se, sp, sa, cond = m.embed_suffix(adapter.policy.prepare_state(obs), x_t, t)
    else:
        se, sp, sa, cond = m.embed_suffix(x_t, t)
    pad, att = torch.cat([pp, sp], 1), torch.cat([pa, sa], 1)
    mask = m._prepare_attention_masks_4d(make_att_2d_masks(pad, att))
    (_, suffix), _ = m.paligemma_with_expert.forward(
        attention_mask=mask,
        position_ids=torch.cumsum(pad, 1) - 1,
        past_key_values=None,
        inputs_embeds=[pe, se],
        use_cache=False,
        adarms_cond=[None, cond],
    )
    return m.action_out_proj(suffix[:, -adapter.chunk_size :].float())


def test_builds_lerobot_policy_at_tiny_size(adapter: PiAdapter) -> None:
    from lerobot.policies.pi0.modeling_pi0 import PI0Policy
    from lerobot.policies.pi05.modeling_pi05 import PI05Policy

    expected = PI05Policy if adapter.policy_type == "pi05" else PI0Policy
    assert type(adapter.policy) is expected
    n = sum(p.numel() for p in adapter.policy.parameters())
    assert n < 1_000_000
    assert (adapter.chunk_size, adapter.action_steps, adapter.action_dim) == (8, 4, 7)
    names = {n for n, _ in adapter.policy.named_parameters()}
    expert_norm = "model.paligemma_with_expert.gemma_expert.model.layers.0.input_layernorm"
    adaptive = f"{expert_norm}.dense.weight" in names  # openpi's parameter names
    assert adaptive == (adapter.policy_type == "pi05")
    assert (f"{expert_norm}.weight" in names) == (adapter.policy_type == "pi0")
    # the expert's vocabulary head is never called: never trained, never pushed
    head = "policy.model.paligemma_with_expert.gemma_expert.lm_head.weight"
    assert adapter.is_frozen(head) and not dict(adapter.named_parameters())[head].requires_grad


def test_shipped_tokenizer_is_a_rebuild_of_the_libero_instructions(tmp_path: Path) -> None:
    from pirl_core.policies.pi.tokenizer import PI_TOKENIZER_DIR, build_pi_tokenizer
    from pirl_core.policies.xvla.tokenizer import libero_instructions

    built = build_pi_tokenizer(libero_instructions(), tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (built / name).read_text() == (PI_TOKENIZER_DIR / name).read_text(), name


def test_cached_prefix_equals_lerobot_joint_pass(adapter: PiAdapter, obs: dict) -> None:
    x = torch.randn(2, adapter.chunk_size, adapter.action_dim, generator=torch.Generator().manual_seed(0))
    for tv in (1.0, 0.6, 0.25):
        t = torch.full((2,), tv)
        with torch.no_grad():
            cached = adapter.predict(x, t, adapter.encode(obs)).value
            joint = joint_pass_velocity(adapter, obs, x, t)
        torch.testing.assert_close(cached, joint, atol=1e-5, rtol=1e-5)
        assert cached.abs().max() > 1e-3  # a real output, not zeros


def test_prompt_carries_the_discretised_state_for_pi05_only(adapter: PiAdapter) -> None:
    a = adapter.prepare_obs(raw_obs(seed=1))
    b = adapter.prepare_obs(raw_obs(seed=2))  # other state, same instruction
    same_tokens = torch.equal(a["observation.language.tokens"], b["observation.language.tokens"])
    assert same_tokens == (adapter.policy_type == "pi0")
    assert torch.equal(
        adapter.prepare_obs(raw_obs(seed=1))["observation.language.tokens"], a["observation.language.tokens"]
    )


def test_flow_noise_one_step_log_density_is_the_closed_form_gaussian(adapter: PiAdapter, obs: dict) -> None:
    cfg = cfg_for(
        adapter.policy_type, "recipe.logprob_action_reduction=sum", "recipe.logprob_step_reduction=sum"
    )
    ac = build_actor_critic(adapter, cfg.recipe, seed=0)
    out = ac.act(obs, torch.Generator().manual_seed(3))
    steps = cfg.recipe.denoise_steps
    mask = adapter.sampled_mask()
    with torch.no_grad():
        ctx = adapter.encode(obs)
        expected = torch.zeros(2)
        for k in range(steps):
            t = time_grid(steps)[k].expand(2)
            pred = adapter.predict(out.chain[:, k], t, ctx)
            v = to_velocity(pred.value, out.chain[:, k], t, adapter.prediction_type)
            dist = torch.distributions.Normal(
                ode_mean(out.chain[:, k], v, 1 / steps), ac.noise_head(pred.features, t)
            )
            expected += (dist.log_prob(out.chain[:, k + 1]) * mask).sum(dim=(1, 2))
    torch.testing.assert_close(out.logp, expected, atol=1e-4, rtol=1e-5)
    assert out.logp.abs().min() > 0


def test_flow_sde_scores_its_stored_step_in_closed_form(adapter: PiAdapter, obs: dict) -> None:
    cfg = cfg_for(adapter.policy_type, "recipe.method=flow_sde", "recipe.logprob_action_reduction=sum")
    ac = build_actor_critic(adapter, cfg.recipe, seed=0)
    out = ac.act(obs, torch.Generator().manual_seed(5))
    j, steps = out.sde_step, cfg.recipe.denoise_steps
    rows = torch.arange(2)
    with torch.no_grad():
        ctx = adapter.encode(obs)
        x_j, t = out.chain[rows, j], time_grid(steps)[j]
        v = to_velocity(adapter.predict(x_j, t, ctx).value, x_j, t, adapter.prediction_type)
        mean, std = sde_moments(x_j, v, t, 1 / steps, cfg.recipe.sde_noise_level, steps)
        lp = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(out.chain[rows, j + 1])
        expected = (lp * adapter.sampled_mask()).sum(dim=(1, 2))
    torch.testing.assert_close(out.logp, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("policy_type", TYPES)
@pytest.mark.parametrize(
    "overrides",
    [
        ("recipe.method=flow_noise", "recipe.critic=after_vlm"),
        ("recipe.method=flow_sde", "recipe.critic=action_head"),
    ],
)
def test_ratio_equals_one_between_actor_and_learner(policy_type: str, overrides: tuple[str, ...]) -> None:
    """Actor and learner build their own π from the same config; the learner re-scores the actor's
    chains on the wire tensors: the ratio is 1 (float32), and gradients reach expert and VLM."""
    cfg = cfg_for(policy_type, *overrides)
    actor = build_actor_critic(build_pi_adapter(cfg, [TASK]), cfg.recipe, seed=cfg.seed)
    learner = build_actor_critic(build_pi_adapter(cfg, [TASK]), cfg.recipe, seed=cfg.seed)
    learner.train()
    wire = actor.adapter.prepare_obs(raw_obs(batch=3, seed=11))
    out = actor.act(wire, torch.Generator().manual_seed(3))
    assert out.chain.shape == (3, cfg.recipe.denoise_steps + 1, 8, 7)
    logp, _, value = learner.evaluate({k: v.clone() for k, v in wire.items()}, out.chain, out.sde_step)
    assert (torch.exp(logp - out.logp) - 1).abs().max().item() < 1e-5
    if learner.value_head is not None:
        torch.testing.assert_close(value, out.value, atol=1e-5, rtol=0)
    (-logp.mean()).backward()
    grads = {n: p.grad for n, p in learner.adapter.named_parameters() if p.grad is not None}
    assert any(".gemma_expert." in n and g.abs().sum() > 0 for n, g in grads.items())
    assert any(".paligemma." in n and g.abs().sum() > 0 for n, g in grads.items())


def test_frozen_vlm_gets_no_gradient_and_encodes_without_graph() -> None:
    cfg = cfg_for("pi05", "recipe.train_vlm=false")
    ac = build_actor_critic(build_pi_adapter(cfg, [TASK]), cfg.recipe, seed=0)
    wire = ac.adapter.prepare_obs(raw_obs())
    out = ac.act(wire, torch.Generator().manual_seed(0))
    logp, _, _ = ac.evaluate(wire, out.chain, out.sde_step)
    (-logp.mean()).backward()
    for name, p in ac.adapter.named_parameters():
        if ".paligemma." in name:
            assert not p.requires_grad and p.grad is None, name
    assert any(".gemma_expert." in n and p.grad is not None for n, p in ac.adapter.named_parameters())
    assert not ac.adapter.encode(wire)["prefix_out"].requires_grad


def test_save_and_load_through_lerobot_from_pretrained(adapter: PiAdapter, obs: dict, tmp_path: Path) -> None:
    from pirl_core.policies.pi.arch import lerobot_pi_construction
    from pirl_core.policies.pi.build import load_pi_policy, policy_classes, read_arch

    d = tmp_path / "pretrained_model"
    adapter.save_pretrained(d)
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (d / name).is_file(), name
    _, policy_cls = policy_classes(adapter.policy_type)
    with lerobot_pi_construction(read_arch(d)):
        loaded = policy_cls.from_pretrained(str(d))  # LeRobot's own loader
    ours, arch = load_pi_policy(d, adapter.policy_type)
    assert arch == adapter.arch
    ref = adapter.policy.state_dict()
    for policy in (loaded, ours):
        sd = policy.state_dict()
        assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)
    # The saved processors reproduce the wire tensors (tokenizer embedded, statistics saved).
    from lerobot.processor import PolicyProcessorPipeline

    pre = PolicyProcessorPipeline.from_pretrained(str(d), "policy_preprocessor.json")
    from pirl_core.policies.lerobot_obs import through_pipelines

    fresh = through_pipelines(raw_obs(), adapter.processors.env_pre, pre)
    assert [k for k in obs if not torch.equal(fresh[k], obs[k])] == []


def test_a_weight_file_that_does_not_fit_is_refused(adapter: PiAdapter, tmp_path: Path) -> None:
    """LeRobot's π loader would print a warning and return random weights; pirl refuses."""
    import json

    from pirl_core.policies.pi.build import load_pi_policy

    d = tmp_path / "m"
    adapter.save_pretrained(d)
    (d / "pirl_pi_arch.json").write_text(json.dumps({**adapter.arch.as_dict(), "expert_mlp": 96}))
    with pytest.raises(ConfigError, match="policy.pretrained_path"):
        load_pi_policy(d, adapter.policy_type)


@pytest.mark.slow
def test_pi05_smoke_profile_trains_on_libero_and_refuses_a_changed_type(tmp_path: Path) -> None:
    """`make smoke ARGS="--profile pi05_smoke"` as two processes over gRPC: two PPO updates on
    LIBERO, ratio_check <= 1e-6, LeRobot's checkpoint layout; a resume as pi0 exits 3 with the table."""
    from pirl_core.telemetry import read_records
    from tests.e2e_helpers import run_flags, run_module, run_pair

    out = tmp_path / "pi05"
    codes, learner_log, actor_log = run_pair(run_flags(out, profile="pi05_smoke"), out, timeout=600)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    learner = [r for r in read_records(out / "telemetry" / "learner.jsonl") if r["kind"] == "metrics"]
    assert [r["update"] for r in learner] == [1, 2]
    assert all(r["ratio_check"] <= 1e-6 for r in learner), [r["ratio_check"] for r in learner]
    final = out / "checkpoints" / "last" / "pretrained_model"
    config = __import__("json").loads((final / "config.json").read_text())
    assert config["type"] == "pi05" and (final / "pirl_pi_arch.json").is_file()

    refused = run_module(
        "pirl_core.learner", *run_flags(out, "--resume", "--policy.type=pi0", profile="pi05_smoke")
    )
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "policy.type" in refused.stderr and "--policy.type=pi05" in refused.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000001", "000002", "last"]


def test_unknown_words_and_non_libero_envs_are_refused() -> None:
    with pytest.raises(ConfigError, match="policy.tokenizer"):
        build_pi_adapter(cfg_for("pi05"), ["fold the laundry"])
    from pirl_core.policies.registry import policy_family

    with pytest.raises(ConfigError, match="env.type"):
        policy_family("pi05").make_adapter(load_config("toy", ["policy.type=pi05"]), ["x"])


def test_gradient_checkpointing_and_bf16_keep_the_contract() -> None:
    """policy.gradient_checkpointing recomputes the Gemma layers: same log-probs, same gradients;
    policy.dtype=bfloat16 (autocast) keeps the actor/learner ratio at 1."""
    cfg = cfg_for("pi05")
    plain = build_actor_critic(build_pi_adapter(cfg, [TASK]), cfg.recipe, seed=0)
    ckpt_cfg = cfg_for("pi05", "policy.gradient_checkpointing=true")
    recomputed = build_actor_critic(build_pi_adapter(ckpt_cfg, [TASK]), ckpt_cfg.recipe, seed=0)
    assert recomputed.adapter.recompute_layers
    wire = plain.adapter.prepare_obs(raw_obs(batch=2, seed=3))
    out = plain.act(wire, torch.Generator().manual_seed(1))
    grads = []
    for ac in (plain, recomputed):
        logp, _, _ = ac.evaluate(wire, out.chain, out.sde_step)
        (-logp.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in ac.adapter.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)

    from pirl_core.policies.factory import make_adapter

    bf = cfg_for("pi05", "policy.dtype=bfloat16")
    actor = build_actor_critic(make_adapter(bf, [TASK]), bf.recipe, seed=0)
    learner = build_actor_critic(make_adapter(bf, [TASK]), bf.recipe, seed=0)
    assert actor.adapter.compute_dtype == torch.bfloat16
    wire = actor.adapter.prepare_obs(raw_obs(batch=2, seed=4))
    out = actor.act(wire, torch.Generator().manual_seed(2))
    assert torch.isfinite(out.chain).all()
    with torch.no_grad():
        logp, _, _ = learner.evaluate(wire, out.chain, out.sde_step)
        fp32, _, _ = plain.evaluate(wire, out.chain, out.sde_step)
    assert (torch.exp(logp - out.logp) - 1).abs().max().item() < 1e-5
    assert not torch.equal(logp, fp32)  # autocast really ran in bfloat16


def _lerobot_native_checkpoint(adapter: PiAdapter, d: Path) -> Path:
    """A checkpoint as LeRobot writes one: its own TokenizerProcessorStep naming PaliGemma's hub
    tokenizer, no pirl tokenizer inside (the tiny arch file stays: LeRobot cannot name tiny sizes)."""
    import json

    from lerobot.processor import TokenizerProcessorStep

    from pirl_core.policies.pi.tokenizer import PI_TOKENIZER_DIR

    adapter.save_pretrained(d)
    pre = adapter.processors.policy_pre
    steps = list(pre.steps)
    i = next(k for k, s in enumerate(steps) if isinstance(s, TokenizerProcessorStep))
    old = steps[i]
    steps[i] = TokenizerProcessorStep(
        tokenizer_name=str(PI_TOKENIZER_DIR),
        max_length=old.max_length,
        padding=old.padding,
        padding_side=old.padding_side,
    )
    for f in d.glob("policy_preprocessor*"):
        f.unlink()
    type(pre)(steps=steps, name=pre.name).save_pretrained(d)
    path = d / "policy_preprocessor.json"
    config = json.loads(path.read_text())
    for step in config["steps"]:
        if step.get("registry_name") == "tokenizer_processor":
            step["config"]["tokenizer_name"] = "google/paligemma-3b-pt-224"
    path.write_text(json.dumps(config))
    return d


def test_a_lerobot_checkpoint_reads_its_own_tokenizer_files_or_refuses_with_the_fetch_command(
    tmp_path: Path,
) -> None:
    import shutil

    from pirl_core.policies.pi.tokenizer import PI_TOKENIZER_DIR

    adapter = build_pi_adapter(cfg_for("pi05"), [TASK])
    d = _lerobot_native_checkpoint(adapter, tmp_path / "lerobot_pi05")
    pretrained = ("policy.size=pretrained", f"policy.pretrained_path={d}")
    with pytest.raises(ConfigError, match="huggingface-cli download google/paligemma-3b-pt-224"):
        build_pi_adapter(cfg_for("pi05", *pretrained), [TASK])  # not cached, nothing inside: refused
    for f in PI_TOKENIZER_DIR.iterdir():  # the checkpoint ships its tokenizer files
        shutil.copy(f, d / f.name)
    loaded = build_pi_adapter(cfg_for("pi05", *pretrained), [TASK])
    raw = raw_obs(seed=5)
    a, b = adapter.prepare_obs(raw), loaded.prepare_obs(raw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, adapter.chunk_size, adapter.action_dim)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.predict(x, torch.full((2,), 0.5), loaded.encode(b)).value,
            adapter.predict(x, torch.full((2,), 0.5), adapter.encode(a)).value,
        )


def test_a_state_beyond_its_bounds_never_reaches_the_model_as_unknown(adapter: PiAdapter) -> None:
    """LeRobot digitises the normalised state without clipping: below -1 the bin is written "-1".
    pirl's tokenizer knows it, so an unusual scene's state is still read (above 1 it is 255)."""
    raw = raw_obs(seed=6)
    raw["robot_state"]["eef"]["pos"][:] = [[-9.0, 9.0, -9.0], [9.0, -9.0, 9.0]]
    tokens = adapter.prepare_obs(raw)["observation.language.tokens"]
    unk = next(
        s for s in adapter.processors.policy_pre.steps if hasattr(s, "input_tokenizer")
    ).input_tokenizer
    assert unk.unk_token_id not in tokens.tolist()[0] + tokens.tolist()[1]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pirl_pi_arch.json", "{not json"),
        ("pirl_pi_arch.json", '{"depth": 2}'),
        ("pirl_pi_control.json", '{"control_mode": "sideways"}'),
    ],
)
def test_a_damaged_sidecar_file_is_refused_by_name(
    adapter: PiAdapter, tmp_path: Path, name: str, text: str
) -> None:
    """Guessing a π's size or control mode from a damaged file would load the wrong policy."""
    from pirl_core.policies.pi.build import read_arch, read_control_mode

    d = tmp_path / "m"
    adapter.save_pretrained(d)
    (d / name).write_text(text)
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        read_arch(d) if "arch" in name else read_control_mode(d)
