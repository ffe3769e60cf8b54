"""Sampler log-likelihoods: chain = sum of its Gaussian parts, Flow-SDE scores only its stored
step, noise only on the sampled channels, and the ratio-equals-one invariant for the MLP adapter
in both prediction modes and both methods."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pirl_core.config import RecipeConfig
from pirl_core.policies.mlp import MLPCleanActionAdapter, MLPFlowAdapter
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.recipe.flow import ode_mean, sde_moments, time_grid, to_velocity
from tests.recipe_checks import max_ratio_error

CHUNK, STEPS_EXEC, ENV_DIM, PAD = 5, 3, 2, 1


def make(method: str, mode: str = "velocity", seed: int = 0, **recipe: object) -> ActorCritic:
    torch.manual_seed(seed)
    cls = MLPFlowAdapter if mode == "velocity" else MLPCleanActionAdapter
    adapter = cls(obs_dim=4, env_action_dim=ENV_DIM, chunk_size=CHUNK, action_steps=STEPS_EXEC, pad_dims=PAD)
    cfg = dataclasses.replace(RecipeConfig(), method=method, denoise_steps=4, **recipe)
    return build_actor_critic(adapter, cfg, seed=seed)


def obs_batch(n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"state": torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))}


def test_mask_covers_executed_steps_and_real_dims_only() -> None:
    mask = make("flow_noise").adapter.sampled_mask()
    assert mask.shape == (CHUNK, ENV_DIM + PAD)
    assert mask[:STEPS_EXEC, :ENV_DIM].all()
    assert not mask[STEPS_EXEC:].any() and not mask[:, ENV_DIM:].any()


def _manual_flow_noise(ac: ActorCritic, obs, chain) -> list[torch.Tensor]:
    """Per-step (B,) log-densities via torch.distributions.Normal on the masked channels."""
    ctx = ac.adapter.encode(obs)
    grid = time_grid(4)
    mask = ac.adapter.sampled_mask()
    terms = []
    for k in range(4):
        t = grid[k].expand(chain.shape[0])
        pred = ac.adapter.predict(chain[:, k], t, ctx)
        v = to_velocity(pred.value, chain[:, k], t, ac.adapter.prediction_type)
        std = ac.noise_head(pred.features, t)
        dist = torch.distributions.Normal(ode_mean(chain[:, k], v, 0.25), std)
        terms.append((dist.log_prob(chain[:, k + 1]) * mask).sum(dim=(1, 2)))
    return terms


@pytest.mark.parametrize("mode", ["velocity", "clean_action"])
def test_flow_noise_chain_log_likelihood_is_the_sum_of_its_transitions(mode: str) -> None:
    ac = make("flow_noise", mode)
    obs = obs_batch()
    out = ac.act(obs, torch.Generator().manual_seed(3))
    with torch.no_grad():
        terms = _manual_flow_noise(ac, obs, out.chain)
        logp, entropy, _ = ac.evaluate(obs, out.chain, out.sde_step)
    assert torch.allclose(out.logp, sum(terms), atol=1e-4)
    assert torch.allclose(logp, sum(terms), atol=1e-4)
    assert (out.sde_step == -1).all()
    # Entropy: sum over steps and masked channels of 1/2 log(2 pi e sigma^2), sigma in bounds.
    assert entropy.shape == (6,)


def test_flow_noise_reductions_and_prior_are_named_choices() -> None:
    obs = obs_batch()
    base = make("flow_noise")
    out = base.act(obs, torch.Generator().manual_seed(3))
    with torch.no_grad():
        terms = torch.stack(_manual_flow_noise(base, obs, out.chain), dim=-1)  # (B, K) sums
        n_masked = float(base.adapter.sampled_mask().sum())
        prior = (
            torch.distributions.Normal(0.0, 1.0).log_prob(out.chain[:, 0]) * base.adapter.sampled_mask()
        ).sum(dim=(1, 2))
        for action_red, step_red, prior_on in [
            ("mean", "sum", False),
            ("sum", "mean", True),
            ("mean", "mean", True),
        ]:
            ac = make(
                "flow_noise",
                logprob_action_reduction=action_red,
                logprob_step_reduction=step_red,
                include_prior=prior_on,
            )
            logp, _, _ = ac.evaluate(obs, out.chain, out.sde_step)
            per_step = terms / n_masked if action_red == "mean" else terms
            parts = [per_step] + (
                [(prior / n_masked if action_red == "mean" else prior).unsqueeze(-1)] if prior_on else []
            )
            all_terms = torch.cat(parts, dim=-1)
            expected = all_terms.mean(-1) if step_red == "mean" else all_terms.sum(-1)
            assert torch.allclose(logp, expected, atol=1e-4), (action_red, step_red, prior_on)


@pytest.mark.parametrize("mode", ["velocity", "clean_action"])
def test_flow_sde_hybrid_scores_only_the_stored_step(mode: str) -> None:
    ac = make("flow_sde", mode, sde_noise_level=0.5)
    obs = obs_batch(32)
    out = ac.act(obs, torch.Generator().manual_seed(5))
    j = out.sde_step
    assert set(j.tolist()) <= {0, 1, 2, 3} and len(set(j.tolist())) > 1  # random, stored per sample
    ctx = ac.adapter.encode(obs)
    grid = time_grid(4)
    mask = ac.adapter.sampled_mask()
    with torch.no_grad():
        rows = torch.arange(32)
        x_j, x_next, t = out.chain[rows, j], out.chain[rows, j + 1], grid[j]
        v = to_velocity(ac.adapter.predict(x_j, t, ctx).value, x_j, t, ac.adapter.prediction_type)
        mean, std = sde_moments(x_j, v, t, 0.25, 0.5, 4)
        expected = (torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x_next) * mask).sum(
            dim=(1, 2)
        )
        logp, _, _ = ac.evaluate(obs, out.chain, j)
    assert torch.allclose(out.logp, expected, atol=1e-4)
    assert torch.allclose(logp, expected, atol=1e-4)

    # Every other step is a deterministic ODE step: the chain reproduces it exactly.
    with torch.no_grad():
        for k in range(4):
            others = j != k
            tk = grid[k].expand(32)
            vk = to_velocity(ac.adapter.predict(out.chain[:, k], tk, ctx).value, out.chain[:, k], tk, mode)
            det = ode_mean(out.chain[:, k], vk, 0.25)
            assert torch.allclose(out.chain[others, k + 1], det[others], atol=1e-5)

    # Changing a later transition (after the stored step's target) does not change the log-prob.
    chain2 = out.chain.clone()
    last_only = j < 3
    chain2[last_only, 4] += 1.0
    with torch.no_grad():
        logp2, _, _ = ac.evaluate(obs, chain2, j)
    assert torch.allclose(logp2, logp, atol=1e-6)
    chain3 = out.chain.clone()
    chain3[rows, j + 1] += 0.1
    with torch.no_grad():
        logp3, _, _ = ac.evaluate(obs, chain3, j)
    assert not torch.allclose(logp3, logp, atol=1e-3)


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
def test_noise_enters_only_the_sampled_channels(method: str) -> None:
    ac = make(method, sde_noise_level=0.5)
    obs = obs_batch()
    stochastic = ac.act(obs, torch.Generator().manual_seed(1))
    mask = ac.adapter.sampled_mask()
    ctx = ac.adapter.encode(obs)
    grid = time_grid(4)
    with torch.no_grad():
        for k in range(4):
            t = grid[k].expand(6)
            x = stochastic.chain[:, k]
            det = ode_mean(x, ac.adapter.predict(x, t, ctx).value, 0.25)
            assert torch.allclose(stochastic.chain[:, k + 1][:, ~mask], det[:, ~mask], atol=1e-6)
    # ... and the sampled channels really are random.
    assert not torch.allclose(
        stochastic.x0, ac.act(obs, torch.Generator().manual_seed(1), deterministic=True).x0
    )


def test_sampling_is_a_function_of_the_generator() -> None:
    ac = make("flow_sde", sde_noise_level=0.5)
    obs = obs_batch()
    a = ac.act(obs, torch.Generator().manual_seed(11))
    b = ac.act(obs, torch.Generator().manual_seed(11))
    c = ac.act(obs, torch.Generator().manual_seed(12))
    assert torch.equal(a.chain, b.chain) and torch.equal(a.sde_step, b.sde_step)
    assert not torch.equal(a.chain, c.chain)


def test_deterministic_sampling_is_the_ode() -> None:
    ac = make("flow_noise")
    out = ac.act(obs_batch(), torch.Generator().manual_seed(0), deterministic=True)
    assert (out.logp == 0).all() and (out.sde_step == -1).all()
    assert torch.equal(out.x0, out.chain[:, -1])


@pytest.mark.parametrize("mode", ["velocity", "clean_action"])
@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
@pytest.mark.parametrize("critic", ["after_vlm", "action_head"])
def test_ratio_equals_one_for_the_mlp_adapter(method: str, mode: str, critic: str) -> None:
    ac = make(method, mode, sde_noise_level=0.5, critic=critic)
    assert max_ratio_error(ac, obs_batch(64), torch.Generator().manual_seed(7)) < 1e-4
