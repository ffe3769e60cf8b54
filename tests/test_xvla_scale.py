"""Scaling X-VLA to one GPU, checked on CPU: precision, recompute, micro-batches, frozen VLM,
lean pushes and their fingerprint, gradient checkpointing, KL guards, and the full-size build."""

from __future__ import annotations

import gc

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.errors import ConfigError, ExitCode, RatioCheckError, TransportError
from pirl_core.policies.factory import make_adapter
from pirl_core.policies.xvla.adapter import VLM_PREFIX
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.recipe.trainer import PolicyTrainer
from pirl_core.rollout import RolloutBatch, collect_rollouts
from pirl_core.transport.push import FINGERPRINT_KEY, load_parameters, parameters_to_tensors, push_nbytes
from tests.batches import one_chunk_episodes
from tests.inprocess.local_loop import build_loop
from tests.libero_synthetic import synthetic_raw_obs

TASK = "put both the alphabet soup and the tomato sauce in the basket"
VLM = f"adapter.{VLM_PREFIX}."


def xvla_cfg(**overrides: object):
    return load_config("libero_tiny", {"seed": 0, **overrides})


def build(cfg) -> ActorCritic:
    return build_actor_critic(make_adapter(cfg, [TASK]), cfg.recipe, seed=cfg.seed)


def xvla_batch(ac: ActorCritic, n: int = 8, seed: int = 0) -> RolloutBatch:
    """A rollout-shaped batch sampled by ``ac`` on synthetic LIBERO observations."""
    g = torch.Generator().manual_seed(seed)
    obs = ac.adapter.prepare_obs(synthetic_raw_obs(batch=n, seed=seed, size=64, task=TASK))
    out = ac.act(obs, g)
    reward = torch.linspace(-1.0, 1.0, n)
    return one_chunk_episodes(obs, out.chain, out.sde_step, out.logp, out.value, reward, group_size=2)


def snapshot(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if n.startswith(prefix)}


# ------------------------------------------------------------------ micro-batches


def _toy_trainer(micro: int):
    state = build_loop(
        load_config("toy", {"env.n_envs": 16, "recipe.micro_batch_size": micro, "recipe.minibatches": 1})
    )
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, list(range(12)), torch.Generator().manual_seed(0), 4
    )
    return state.trainer, batch


def test_micro_batch_gradient_equals_the_full_minibatch_gradient() -> None:
    """Mean-reduced loss terms weighted by each micro-batch's share: the accumulated gradient is
    the un-split one (float32, 1e-6), with advantages normalised over the whole batch."""
    grads = {}
    for micro in (0, 5):
        trainer, batch = _toy_trainer(micro)
        adv, returns, _ = trainer.advantages(batch)
        index = torch.arange(len(batch))
        assert len(batch) % 5 != 0  # uneven last micro-batch
        assert len(trainer._chunks(index)) == (1 if micro == 0 else -(-len(batch) // 5))
        trainer._accumulate_gradients(batch, index, batch.logp, adv, returns, first=False)
        grads[micro] = {
            n: p.grad.clone() for n, p in trainer.actor_critic.named_parameters() if p.grad is not None
        }
    assert grads[0].keys() == grads[5].keys() and len(grads[0]) > 0
    for name, full in grads[0].items():
        torch.testing.assert_close(grads[5][name], full, atol=1e-6, rtol=1e-6, msg=name)


def test_micro_batched_update_equals_the_unsplit_update() -> None:
    results = []
    for micro in (0, 4):
        trainer, batch = _toy_trainer(micro)
        metrics = trainer.update(batch)
        results.append((metrics, snapshot(trainer.actor_critic)))
    (m0, p0), (m1, p1) = results
    for name in p0:
        torch.testing.assert_close(p1[name], p0[name], atol=1e-6, rtol=1e-5, msg=name)
    assert m1["approx_kl"] == pytest.approx(m0["approx_kl"], rel=1e-4, abs=1e-7)


# ------------------------------------------------------------------ precision and recompute


def test_bf16_sampling_keeps_chains_and_logprobs_float32() -> None:
    ac = build(xvla_cfg(**{"policy.dtype": "bfloat16"}))
    assert ac.adapter.compute_dtype is torch.bfloat16
    batch = xvla_batch(ac, n=4)
    assert batch.chain.dtype == torch.float32 and batch.logp.dtype == torch.float32
    assert torch.isfinite(batch.logp).all()
    assert next(ac.parameters()).dtype == torch.float32  # autocast: weights stay float32


def test_recompute_makes_the_first_ratio_exactly_one_under_bf16_autocast() -> None:
    """Actor (batch 8) and learner (minibatches of 3 in micro-batches of 2) disagree in bf16;
    after the learner re-scores the behaviour log-probs, ratio_check is exactly 0 and the
    disagreement is reported as logprob_mismatch instead."""
    cfg = xvla_cfg(**{"policy.dtype": "bfloat16", "recipe.minibatches": 3, "recipe.micro_batch_size": 2})
    actor, learner = build(cfg), build(cfg)
    load_parameters(actor, parameters_to_tensors(learner))
    batch = xvla_batch(actor, n=8)
    trainer = PolicyTrainer(learner, cfg.recipe, seed=cfg.seed)
    assert trainer.recompute_logprobs  # "auto" + bfloat16
    metrics = trainer.update(batch)
    assert metrics["logprob_recomputed"] == 1.0
    assert metrics["ratio_check"] == 0.0
    assert 0.0 < metrics["logprob_mismatch_mean"] <= metrics["logprob_mismatch_max"]
    assert metrics["logprob_mismatch_max"] < cfg.recipe.logprob_tolerance


def test_without_recompute_the_mismatch_is_measured_on_the_first_minibatch() -> None:
    cfg = xvla_cfg()  # float32 on CPU: "auto" keeps the rollout's log-probs
    ac = build(cfg)
    trainer = PolicyTrainer(ac, cfg.recipe, seed=cfg.seed)
    assert not trainer.recompute_logprobs
    metrics = trainer.update(xvla_batch(ac))
    assert metrics["logprob_recomputed"] == 0.0
    assert metrics["logprob_mismatch_max"] < 1e-4
    assert metrics["ratio_check"] < 1e-4


@pytest.mark.parametrize("recompute", [True, False])
def test_mismatch_above_tolerance_stops_with_exit_5(recompute: bool) -> None:
    """An actor that scored another policy (here: log-probs shifted by 3) is refused either way:
    with recompute by the log-prob bound, without it by the (tighter) ratio check first."""
    cfg = xvla_cfg(**{"recipe.recompute_logprobs": recompute, "recipe.logprob_tolerance": 0.5})
    ac = build(cfg)
    batch = xvla_batch(ac)
    batch.logp = batch.logp + 3.0
    before = snapshot(ac)
    bound = "recipe.logprob_tolerance=0.5" if recompute else "recipe.ratio_tolerance=0.001"
    with pytest.raises(RatioCheckError, match=bound) as err:
        PolicyTrainer(ac, cfg.recipe, seed=cfg.seed).update(batch)
    assert err.value.exit_code == ExitCode.TRANSPORT
    if recompute:
        assert "stale or partial parameter push" in err.value.message
    assert all(torch.equal(p, before[n]) for n, p in ac.named_parameters())  # nothing applied


def test_a_stale_batch_is_reported_not_refused_and_keeps_its_behaviour_logprobs() -> None:
    """learner.max_staleness > 0: the difference includes real policy lag. It is reported, not
    bounded, and recompute would erase the lag correction, so it is skipped."""
    cfg = xvla_cfg(**{"recipe.recompute_logprobs": True, "recipe.logprob_tolerance": 0.5})
    ac = build(cfg)
    batch = xvla_batch(ac)
    batch.logp = batch.logp + 3.0  # as if sampled by an older version
    metrics = PolicyTrainer(ac, cfg.recipe, seed=cfg.seed).update(batch, on_policy=False)
    assert metrics["logprob_recomputed"] == 0.0
    assert metrics["logprob_mismatch_mean"] == pytest.approx(3.0, abs=1e-3)
    assert metrics["ratio_check"] > 0.9  # exp(-3) - 1: the lag reaches the ratio


# ------------------------------------------------------------------ frozen VLM and lean pushes


def test_set_rl_mode_keeps_a_freeze() -> None:
    """Regression: set_rl_mode (called at every update) used to re-enable every gradient."""
    ac = build(xvla_cfg())
    ac.adapter.freeze_vlm()
    ac.adapter.set_rl_mode()
    flags = {n: p.requires_grad for n, p in ac.adapter.named_parameters()}
    assert not any(v for n, v in flags.items() if n.startswith(VLM_PREFIX))
    assert all(v for n, v in flags.items() if n.startswith("policy.model.transformer."))


def test_frozen_vlm_is_unchanged_by_updates_and_absent_from_the_push() -> None:
    cfg = xvla_cfg(**{"recipe.train_vlm": False, "recipe.lr": 1e-2})
    ac = build(cfg)
    trainer = PolicyTrainer(ac, cfg.recipe, seed=cfg.seed)
    optimised = {id(p) for opt in trainer.optimizers.values() for g in opt.param_groups for p in g["params"]}
    vlm_before = snapshot(ac, VLM)
    head_before = snapshot(ac, "adapter.policy.model.transformer.")
    assert vlm_before and not any(id(p) in optimised for n, p in ac.named_parameters() if n.startswith(VLM))
    for update in range(2):
        metrics = trainer.update(xvla_batch(ac, seed=update))
        assert metrics["grad_norm"] > 0
    assert all(torch.equal(p, vlm_before[n]) for n, p in snapshot(ac, VLM).items())
    assert any(
        not torch.equal(p, head_before[n])
        for n, p in snapshot(ac, "adapter.policy.model.transformer.").items()
    )
    push = parameters_to_tensors(ac)
    assert not any(name.startswith(VLM) for name in push)
    assert any(name.startswith("adapter.policy.model.transformer.") for name in push)
    assert "value_head.net.0.weight" in push  # critic on frozen features still trains


def test_lean_bf16_push_is_accepted_and_a_fingerprint_mismatch_is_refused() -> None:
    cfg = xvla_cfg(**{"recipe.train_vlm": False, "policy.dtype": "bfloat16"})
    learner, actor = build(cfg), build(cfg)
    with torch.no_grad():
        for p in learner.adapter.policy.model.transformer.parameters():
            p.add_(0.01)
    push = parameters_to_tensors(learner)
    assert all(t.dtype == torch.bfloat16 for n, t in push.items() if n != FINGERPRINT_KEY)
    load_parameters(actor, push)
    got = dict(actor.named_parameters())
    for name, t in push.items():
        if name != FINGERPRINT_KEY:
            assert torch.equal(got[name].detach(), t.float()), name

    other = build(xvla_cfg(**{"recipe.train_vlm": False, "policy.dtype": "bfloat16", "seed": 1}))
    assert other.frozen_fingerprint != learner.frozen_fingerprint
    with pytest.raises(TransportError, match="frozen-part fingerprint expected") as err:
        load_parameters(other, push)
    assert err.value.exit_code == ExitCode.TRANSPORT
    assert learner.frozen_fingerprint[:16] in err.value.message  # found
    assert other.frozen_fingerprint[:16] in err.value.message  # expected
    assert "\n" not in err.value.line()


def test_lean_bf16_push_survives_the_wire_format() -> None:
    """bf16 tensors and the uint8 fingerprint through the transport's own payload codec."""
    from pirl_core.transport.payload import decode_payload, encode_payload

    cfg = xvla_cfg(**{"recipe.train_vlm": False, "policy.dtype": "bfloat16"})
    learner, actor = build(cfg), build(cfg)
    push = parameters_to_tensors(learner)
    _, received = decode_payload(encode_payload(push, {"version": 0}))
    assert received.keys() == push.keys()
    assert all(torch.equal(received[n], t) for n, t in push.items())
    load_parameters(actor, received)


def test_push_bytes_full_fp32_vs_trainable_only_bf16() -> None:
    """Tiny model: bytes of today's push (full state dict, fp32) vs the lean bf16 one."""
    full_cfg = xvla_cfg()
    lean_cfg = xvla_cfg(**{"recipe.train_vlm": False, "policy.dtype": "bfloat16"})
    full = build(full_cfg)
    full_bytes = sum(t.numel() * t.element_size() for t in full.state_dict().values())
    assert push_nbytes(parameters_to_tensors(full)) == pytest.approx(full_bytes, rel=0.01)
    lean_bytes = push_nbytes(parameters_to_tensors(build(lean_cfg)))
    vlm_bytes = sum(t.numel() * 4 for n, t in full.state_dict().items() if n.startswith(VLM))  # tied: twice
    expected = (full_bytes - vlm_bytes) / 2 + 32  # half-width trainable tensors + the fingerprint
    assert lean_bytes == pytest.approx(expected, rel=0.01)
    assert lean_bytes < 0.5 * full_bytes


# ------------------------------------------------------------------ gradient checkpointing


@pytest.mark.parametrize("train_vlm", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(train_vlm: bool) -> None:
    grads = []
    for checkpointing in (False, True):
        cfg = xvla_cfg(**{"policy.gradient_checkpointing": checkpointing, "recipe.train_vlm": train_vlm})
        ac = build(cfg)
        batch = xvla_batch(ac, n=4)
        logp, entropy, value = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
        (-logp.mean() + value.pow(2).mean() - entropy.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in ac.named_parameters() if p.grad is not None})
        torch.testing.assert_close(logp, batch.logp, atol=1e-4, rtol=0)
    plain, ckpt = grads
    assert plain.keys() == ckpt.keys()
    assert any(n.startswith(VLM) for n in plain) == train_vlm
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, atol=1e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------ KL guards


def test_target_kl_stops_the_update_early() -> None:
    state = build_loop(
        load_config(
            "toy",
            {"env.n_envs": 16, "recipe.lr": 0.05, "recipe.target_kl": 1e-6, "recipe.update_epochs": 4},
        )
    )
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, list(range(16)), torch.Generator().manual_seed(0), 4
    )
    metrics = state.trainer.update(batch)
    assert metrics["kl_stopped"] == 1.0
    assert metrics["early_stop_epoch"] >= 0
    assert 1 <= metrics["minibatch_steps"] < 4 * state.cfg.recipe.minibatches


def test_lr_warmup_is_linear_and_follows_the_update_index() -> None:
    """The schedule reads the learner's update count, so a trainer rebuilt on resume (fresh
    optimiser groups, or groups restored with the checkpoint's warm-up lr) continues it exactly."""
    cfg = load_config("toy", {"env.n_envs": 16, "recipe.lr_warmup_updates": 4})
    state = build_loop(cfg)
    batch, _, _ = collect_rollouts(state.env, state.actor_critic, list(range(8)), torch.Generator(), 4)
    lrs = [state.trainer.update(batch, on_policy=False)["lr_policy"] for _ in range(5)]
    assert lrs == pytest.approx([cfg.recipe.lr * f for f in (0.25, 0.5, 0.75, 1.0, 1.0)])
    resumed = build_loop(cfg).trainer
    for opt in resumed.optimizers.values():  # as restored from a checkpoint taken after update 1
        for group in opt.param_groups:
            group["lr"] = 123.0
    assert resumed.update(batch, update_index=2, on_policy=False)["lr_policy"] == pytest.approx(
        cfg.recipe.lr * 0.75
    )
    assert resumed.updates_done == 3


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"recipe.micro_batch_size": -1}, "recipe.micro_batch_size"),
        ({"recipe.target_kl": float("nan")}, "recipe.target_kl"),
        ({"recipe.logprob_tolerance": float("inf")}, "recipe.logprob_tolerance"),
        ({"recipe.lr_warmup_updates": -2}, "recipe.lr_warmup_updates"),
        ({"recipe.recompute_logprobs": "sometimes"}, "recipe.recompute_logprobs"),
        ({"policy.dtype": "float16"}, "policy.dtype"),
    ],
)
def test_bad_scale_settings_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config("libero_tiny", overrides)


def test_mlp_refuses_a_vlm_freeze() -> None:
    with pytest.raises(ConfigError, match="recipe.train_vlm"):
        load_config("toy", {"recipe.train_vlm": False})


def test_new_defaults_are_neutral_for_smoke_and_toy() -> None:
    for profile in ("libero_tiny", "toy"):
        cfg = load_config(profile)
        assert cfg.policy.dtype == "float32" and not cfg.policy.gradient_checkpointing
        r = cfg.recipe
        assert (r.micro_batch_size, r.target_kl, r.lr_warmup_updates, r.train_vlm) == (0, 0.0, 0, True)
        assert r.recompute_logprobs == "auto"  # resolves to off on CPU float32


# ------------------------------------------------------------------ full size


@pytest.mark.slow
def test_full_size_builds_offline_with_the_default_architecture() -> None:
    """LeRobot 0.4.4's default X-VLA (~0.88 B) from config, random init, no hub; construct only."""
    from pirl_core.policies.xvla.build import build_xvla_policy

    cfg = xvla_cfg(**{"policy.size": "full", "env.camera_size": 256})
    built = build_xvla_policy(cfg)
    policy = built.policy
    total = sum(p.numel() for p in policy.parameters())
    vlm = sum(p.numel() for p in policy.model.vlm.parameters())
    assert total == pytest.approx(880e6, rel=0.03)
    assert vlm == pytest.approx(569.5e6, rel=0.03)
    assert policy.config.hidden_size == 1024 and policy.config.depth == 24
    text = policy.model.vlm.language_model.model.encoder
    assert len(text.layers) == 12 and text.layers[0].self_attn.embed_dim == 1024
    assert float(policy.model.vlm.image_projection.detach().abs().max()) < 1.0  # initialised, not torch.empty
    assert built.source == "full(seed=0)"
    del built, policy
    gc.collect()


def test_bench_profile_carries_the_scale_settings() -> None:
    """The memory budget in profiles/bench.toml assumes these; changing one needs a new budget."""
    cfg = load_config("bench", {"policy.device": "cpu"})
    assert (cfg.policy.dtype, cfg.recipe.train_vlm) == ("bfloat16", False)
    per_minibatch = cfg.learner.episodes_per_update * 52 // cfg.recipe.minibatches
    assert 0 < cfg.recipe.micro_batch_size <= 32 < per_minibatch
    assert cfg.recipe.target_kl > 0 and cfg.recipe.lr_warmup_updates > 0
    assert (cfg.recipe.logprob_action_reduction, cfg.recipe.logprob_step_reduction) == ("mean", "mean")


@pytest.mark.slow
def test_learner_and_actor_run_bf16_with_a_frozen_vlm_and_lean_pushes(tmp_path) -> None:
    """The real processes over gRPC: bf16 autocast, frozen VLM, micro-batches, lean bf16 pushes
    with the fingerprint, recompute + mismatch metric, warm-up. The actor accepts every push."""
    from pirl_core.telemetry import read_records
    from tests.e2e_helpers import free_port, run_pair

    out = tmp_path / "bf16-frozen"
    args = [
        "--profile",
        "libero_tiny",
        f"--output_dir={out}",
        f"--learner.port={free_port()}",
        "--policy.dtype=bfloat16",
        "--recipe.train_vlm=false",
        "--recipe.micro_batch_size=2",
        "--recipe.lr_warmup_updates=2",
        "--learner.updates=2",
    ]
    codes, learner_log, actor_log = run_pair(args, out, timeout=600)
    assert codes == [0, 0], f"learner:\n{learner_log[-3000:]}\nactor:\n{actor_log[-3000:]}"
    rows = [r for r in read_records(out / "telemetry" / "learner.jsonl") if "logprob_mismatch_max" in r]
    assert len(rows) == 2
    cfg = load_config("libero_tiny")
    assert [r["lr_policy"] for r in rows] == pytest.approx([cfg.recipe.lr / 2, cfg.recipe.lr])
    for r in rows:
        assert r["logprob_recomputed"] == 1.0 and r["ratio_check"] == 0.0
        assert 0.0 < r["logprob_mismatch_max"] < cfg.recipe.logprob_tolerance
        assert 0.0 < r["push_mb"] < 1.0  # lean bf16 push of the tiny model (full fp32: ~2.5 MB)
