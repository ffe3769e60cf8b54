"""Trust-region regimes (``recipe.ratio_mode``, ``recipe.clip_per_denoise_step``).

* element log-probs are the closed-form per-element Gaussian log-densities of the scored
  transition(s), restricted to the executed chunk steps x env action dims;
* the chunk-mode "sum" of Flow-SDE is exactly the sum of those elements (RLinf's regime);
* on an unchanged policy every ratio is 1 in every mode; on a shifted one the clip acts;
* per-step clips pick each transition's clip by its stochastic step; target_kl stops in each mode.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pirl_core.config import RecipeConfig, load_config
from pirl_core.errors import ConfigError
from pirl_core.policies.mlp import MLPFlowAdapter
from pirl_core.recipe.actor_critic import ActorCritic, build_actor_critic
from pirl_core.recipe.flow import time_grid, to_velocity
from pirl_core.recipe.ppo import ppo_loss
from pirl_core.rollout import collect_rollouts
from tests.inprocess.local_loop import build_loop

CHUNK, STEPS_EXEC, ENV_DIM, PAD, K = 5, 3, 2, 1, 4
N_ELEM = STEPS_EXEC * ENV_DIM


def make(method: str, seed: int = 0, **recipe: object) -> ActorCritic:
    torch.manual_seed(seed)
    adapter = MLPFlowAdapter(
        obs_dim=4, env_action_dim=ENV_DIM, chunk_size=CHUNK, action_steps=STEPS_EXEC, pad_dims=PAD
    )
    cfg = dataclasses.replace(RecipeConfig(), method=method, denoise_steps=K, **recipe)
    return build_actor_critic(adapter, cfg, seed=seed)


def obs_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"state": torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))}


def closed_form_logpdf(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2) written from the formula (not pirl's helper)."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


def sde_step_closed_form(ac: ActorCritic, obs, chain, j, a: float) -> torch.Tensor:
    """(B, C, D) log-densities of the one Flow-SDE transition x_j -> x_{j+1}, from the method's
    formulas: sigma_t = a sqrt(t/(1-t)) (1-t := Delta at t = 1), std = sigma_t sqrt(Delta),
    mean = x_t - Delta v - sigma_t^2 Delta / (2t) (x_t + (1-t) v)."""
    ctx = ac.adapter.encode(obs)
    dt = 1.0 / K
    rows = torch.arange(chain.shape[0])
    t = time_grid(K)[j]
    x_t, x_next = chain[rows, j], chain[rows, j + 1]
    v = to_velocity(ac.adapter.predict(x_t, t, ctx).value, x_t, t, "velocity")
    tb = t.reshape(-1, 1, 1)
    sigma = a * torch.sqrt(tb / torch.where(tb >= 1.0, torch.full_like(tb, dt), 1.0 - tb))
    mean = x_t - dt * v - sigma**2 * dt / (2 * tb) * (x_t + (1 - tb) * v)
    return closed_form_logpdf(x_next, mean, (sigma * math.sqrt(dt)).expand_as(mean))


def executed(elem: torch.Tensor) -> torch.Tensor:
    """(B, C, D) -> (B, executed steps x env dims), row-major."""
    return elem[:, :STEPS_EXEC, :ENV_DIM].reshape(elem.shape[0], -1)


def test_flow_sde_element_logprobs_are_the_one_step_gaussian_per_element() -> None:
    a = 0.5
    element = make("flow_sde", sde_noise_level=a, ratio_mode="element")
    chunk_sum = make("flow_sde", sde_noise_level=a, logprob_action_reduction="sum")
    chunk_mean = make("flow_sde", sde_noise_level=a, logprob_action_reduction="mean")
    obs = obs_batch(16)
    out = element.act(obs, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = executed(sde_step_closed_form(element, obs, out.chain, out.sde_step, a))
        elem_logp, _, _ = element.evaluate(obs, out.chain, out.sde_step)
        sum_logp, _, _ = chunk_sum.evaluate(obs, out.chain, out.sde_step)
        mean_logp, _, _ = chunk_mean.evaluate(obs, out.chain, out.sde_step)
    assert elem_logp.shape == (16, N_ELEM)  # only executed steps x env dims: padding is not scored
    assert torch.allclose(elem_logp, expected, atol=1e-5)
    # RLinf's Flow-SDE chunk_level: the SUM over the executed elements of the one stochastic step.
    assert torch.allclose(sum_logp, expected.sum(-1), atol=1e-4)
    assert torch.allclose(mean_logp, expected.mean(-1), atol=1e-5)
    # The rollout stores the chunk log-prob; reduce_elements maps element log-probs back to it.
    assert torch.allclose(element.sampler.reduce_elements(elem_logp), out.logp, atol=1e-4)


@pytest.mark.parametrize("step_reduction", ["sum", "mean"])
def test_flow_noise_element_logprobs_reduce_each_element_over_the_steps(step_reduction: str) -> None:
    ac = make("flow_noise", ratio_mode="element", logprob_step_reduction=step_reduction)
    obs = obs_batch()
    out = ac.act(obs, torch.Generator().manual_seed(3))
    ctx = ac.adapter.encode(obs)
    grid = time_grid(K)
    with torch.no_grad():
        per_step = []
        for k in range(K):
            t = grid[k].expand(8)
            pred = ac.adapter.predict(out.chain[:, k], t, ctx)
            std = ac.noise_head(pred.features, t).expand_as(out.chain[:, k])
            mean = out.chain[:, k] - pred.value / K
            per_step.append(executed(closed_form_logpdf(out.chain[:, k + 1], mean, std)))
        terms = torch.stack(per_step, dim=-1)
        expected = terms.sum(-1) if step_reduction == "sum" else terms.mean(-1)
        logp, _, _ = ac.evaluate(obs, out.chain, out.sde_step)
    assert logp.shape == (8, N_ELEM)
    assert torch.allclose(logp, expected, atol=1e-5)


def toy(method: str, **extra: object):
    overrides = {"recipe.method": method, "env.n_envs": 16, **extra}
    return build_loop(load_config("toy", overrides))


def toy_batch(state, seed: int = 0):
    batch, _, _ = collect_rollouts(
        state.env,
        state.actor_critic,
        list(range(16)),
        torch.Generator().manual_seed(seed),
        state.cfg.policy.action_steps,
    )
    return batch


@pytest.mark.parametrize("method", ["flow_noise", "flow_sde"])
@pytest.mark.parametrize("mode", ["chunk", "element"])
def test_ratio_is_one_on_an_unchanged_policy_and_the_clip_acts_after_a_shift(method: str, mode: str) -> None:
    state = toy(method, **{"recipe.ratio_mode": mode})
    batch = toy_batch(state)
    metrics = state.trainer.update(batch)
    assert metrics["ratio_check"] < 1e-4  # every element's (or chunk's) ratio is 1 before a step
    assert metrics["logprob_mismatch_max"] < 1e-3  # the re-scored log-probs reduce to the rollout's
    assert math.isfinite(metrics["approx_kl"]) and metrics["approx_kl"] >= 0
    # The update moved the policy: scored against the batch's own behaviour log-probs, the shifted
    # policy's ratios leave [1 - clip, 1 + clip] somewhere, so the clip acts.
    ac = state.actor_critic
    obs = batch.obs
    with torch.no_grad():
        new_logp, entropy, _ = ac.evaluate(obs, batch.chain, batch.sde_step)
    old = batch.logp
    if mode == "element":
        new_state = toy(method, **{"recipe.ratio_mode": mode})  # the unchanged policy (same seed)
        with torch.no_grad():
            old, _, _ = new_state.actor_critic.evaluate(obs, batch.chain, batch.sde_step)
        assert old.shape == new_logp.shape == (len(batch), int(ac.adapter.sampled_mask().sum()))
    out = ppo_loss(new_logp, old, torch.ones(len(batch)), entropy, clip=0.01, entropy_coef=0.0)
    assert float(out.clip_frac) > 0
    assert float(out.approx_kl) > 0


def test_per_denoise_step_clip_follows_each_transitions_stochastic_step() -> None:
    clips = [0.001, 0.002, 0.005, 0.01]
    state = toy("flow_sde", **{"recipe.clip_per_denoise_step": clips})
    sde_step = torch.tensor([0, 3, 1, 2])
    assert state.trainer.clip_for(sde_step).tolist() == pytest.approx([0.001, 0.01, 0.002, 0.005])
    # A ratio of 1.004 is inside the last step's clip, outside the first step's.
    ratio = torch.full((4,), 1.004)
    out = ppo_loss(
        ratio.log(), torch.zeros(4), torch.ones(4), torch.zeros(4), state.trainer.clip_for(sde_step), 0.0
    )
    assert float(out.clip_frac) == pytest.approx(0.5)  # steps 0 and 1 clip, 2 and 3 do not
    # Element ratios share their transition's clip.
    out = ppo_loss(
        ratio.log().unsqueeze(-1).expand(4, 3),
        torch.zeros(4, 3),
        torch.ones(4),
        torch.zeros(4),
        state.trainer.clip_for(sde_step),
        0.0,
    )
    assert float(out.clip_frac) == pytest.approx(0.5)
    metrics = state.trainer.update(toy_batch(state))
    assert metrics["ratio_check"] < 1e-4 and math.isfinite(metrics["policy_loss"])
    assert metrics["clip_frac"] > 0  # clips of 0.001-0.01 act within an update


@pytest.mark.parametrize("mode", ["chunk", "element"])
def test_target_kl_stops_an_update_in_each_mode(mode: str) -> None:
    state = toy("flow_sde", **{"recipe.ratio_mode": mode, "recipe.target_kl": 1e-9})
    metrics = state.trainer.update(toy_batch(state))
    assert metrics["kl_stopped"] == 1.0
    assert metrics["minibatch_steps"] == 1.0  # the first minibatch (ratio 1, kl 0) steps, the next stops


def test_ratio_mode_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="recipe.ratio_mode"):
        load_config("toy", {"recipe.ratio_mode": "element", "learner.max_staleness": 1})
    with pytest.raises(ConfigError, match="recipe.ratio_mode"):
        load_config("toy", {"recipe.ratio_mode": "token"})
    with pytest.raises(ConfigError, match="recipe.clip_per_denoise_step"):
        load_config("toy", {"recipe.method": "flow_noise", "recipe.clip_per_denoise_step": [0.01] * 4})
    with pytest.raises(ConfigError, match="recipe.clip_per_denoise_step"):
        load_config("toy", {"recipe.method": "flow_sde", "recipe.clip_per_denoise_step": [0.01] * 3})
    with pytest.raises(ConfigError, match="recipe.clip_per_denoise_step"):
        load_config(
            "toy", {"recipe.method": "flow_sde", "recipe.clip_per_denoise_step": [0.01, 0.01, 0.01, 1.5]}
        )
