"""Where gradients go: policy, value head and (Flow-Noise) noise head learn; frozen adapter
parts and detached critic inputs stay untouched; optimiser groups get their own lrs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pirl_core.config import RecipeConfig
from pirl_core.policies.mlp import MLPFlowAdapter
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.recipe.trainer import PolicyTrainer
from pirl_core.rollout import RolloutBatch
from tests.batches import one_chunk_episodes


def make(
    method: str = "flow_noise", algorithm: str = "ppo", freeze: bool = False, **recipe: object
) -> ActorCritic:
    torch.manual_seed(0)
    adapter = MLPFlowAdapter(obs_dim=4, env_action_dim=2, chunk_size=4, action_steps=2, freeze_encoder=freeze)
    cfg = dataclasses.replace(RecipeConfig(), method=method, algorithm=algorithm, **recipe)
    ac = build_actor_critic(adapter, cfg)
    # The heads' last layers start at zero (V=0, mid-range sigma), which blocks gradients to the
    # layers below for the very first step; give them weights so every path is observable.
    for head in (ac.value_head, ac.noise_head, ac.adapter.skip):
        if head is not None:
            last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
            torch.nn.init.normal_(last.weight, std=0.1)
    return ac


def fake_batch(ac: ActorCritic, n: int = 16, seed: int = 0) -> RolloutBatch:
    """A real rollout-shaped batch: chains sampled by the policy, one-chunk episodes."""
    g = torch.Generator().manual_seed(seed)
    obs = {"state": torch.randn(n, 4, generator=g)}
    out = ac.act(obs, g)
    reward = (torch.rand(n, generator=g) > 0.5).float()
    return one_chunk_episodes(
        obs,
        out.chain,
        out.sde_step,
        out.logp,
        out.value,
        reward,
        terminated=reward > 0,
        success=reward > 0,
        group_size=4,
    )


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_gradients_reach_policy_value_and_noise_heads(method: str) -> None:
    ac = make(method, sde_noise_level=0.5)
    batch = fake_batch(ac)
    logp, entropy, value = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
    (logp.sum() + entropy.sum() + value.sum()).backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads(ac.adapter.trunk))
    assert all(g is not None and g.abs().sum() > 0 for g in grads(ac.value_head))
    if method == "flow_noise":
        assert ac.noise_head is not None
        assert all(g is not None and g.abs().sum() > 0 for g in grads(ac.noise_head))
    else:
        assert ac.noise_head is None


def test_detached_critic_sends_no_value_gradient_into_the_policy() -> None:
    for detach in (True, False):
        ac = make(critic_detach=detach)
        batch = fake_batch(ac)
        _, _, value = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
        value.pow(2).sum().backward()
        encoder_grads = [g for g in grads(ac.adapter.encoder) if g is not None]
        if detach:
            assert not encoder_grads
        else:
            assert encoder_grads and sum(float(g.abs().sum()) for g in encoder_grads) > 0


def test_action_head_critic_reads_the_action_head() -> None:
    ac = make(critic="action_head", critic_detach=False)
    batch = fake_batch(ac)
    _, _, value = ac.evaluate(batch.obs, batch.chain, batch.sde_step)
    value.sum().backward()
    assert any(g is not None and g.abs().sum() > 0 for g in grads(ac.adapter.trunk))


def test_update_moves_trainable_parts_and_keeps_frozen_parts_frozen() -> None:
    ac = make(freeze=True, lr=1e-3, value_lr=1e-3, noise_lr=1e-3)
    trainer = PolicyTrainer(ac, ac.recipe)
    frozen_before = [p.detach().clone() for p in ac.adapter.encoder.parameters()]
    trunk_before = [p.detach().clone() for p in ac.adapter.trunk.parameters()]
    value_before = [p.detach().clone() for p in ac.value_head.parameters()]
    noise_before = [p.detach().clone() for p in ac.noise_head.parameters()]
    trainer.update(fake_batch(ac))
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, ac.adapter.encoder.parameters(), strict=True))
    assert all(p.grad is None for p in ac.adapter.encoder.parameters())
    assert not all(
        torch.equal(a, b) for a, b in zip(trunk_before, ac.adapter.trunk.parameters(), strict=True)
    )
    assert not all(torch.equal(a, b) for a, b in zip(value_before, ac.value_head.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(noise_before, ac.noise_head.parameters(), strict=True))
    # set_rl_mode (called by the actor after every parameter push) must not unfreeze.
    ac.adapter.set_rl_mode()
    assert not any(p.requires_grad for p in ac.adapter.encoder.parameters())


def test_param_groups_have_separate_learning_rates() -> None:
    ac = make(lr=1e-5, value_lr=2e-4, noise_lr=3e-3)
    trainer = PolicyTrainer(ac, ac.recipe)
    assert {k: o.param_groups[0]["lr"] for k, o in trainer.optimizers.items()} == {
        "policy": 1e-5,
        "value": 2e-4,
        "noise": 3e-3,
    }
    groups = ac.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == sum(1 for p in ac.parameters() if p.requires_grad)


def test_grpo_flow_sde_has_neither_critic_nor_noise_head() -> None:
    ac = make("flow_sde", "grpo")
    assert ac.value_head is None and ac.noise_head is None
    assert set(PolicyTrainer(ac, ac.recipe).optimizers) == {"policy"}
    batch = fake_batch(ac)
    assert torch.equal(batch.value, torch.zeros(16))


def test_observation_is_encoded_once_per_batch() -> None:
    """The expensive encode runs once per act/evaluate, not once per denoising step."""
    ac = make(critic="action_head")
    calls = {"encode": 0}
    original = ac.adapter.encode

    def counting(obs):  # type: ignore[no-untyped-def]
        calls["encode"] += 1
        return original(obs)

    ac.adapter.encode = counting  # type: ignore[method-assign]
    batch = fake_batch(ac)
    assert calls["encode"] == 1
    ac.evaluate(batch.obs, batch.chain, batch.sde_step)
    assert calls["encode"] == 2
