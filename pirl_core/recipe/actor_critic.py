"""ActorCritic: a policy adapter plus the recipe's heads and sampler, as one ``nn.Module``.

This is what the learner optimises, the actor samples from, evaluation loads and checkpoints
save; :func:`actor_critic_for` is the one place a run's config becomes one. It encodes
each observation batch once (``adapter.encode``) and reuses that context for all K denoising
steps and for the value head, both at rollout (``act``) and at update (``evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pirl_core.config import RecipeConfig, RunConfig
from pirl_core.envs.factory import task_descriptions
from pirl_core.policies.base import Context, FlowPolicyAdapter
from pirl_core.policies.factory import make_adapter
from pirl_core.recipe.fingerprint import frozen_fingerprint
from pirl_core.recipe.heads import NoiseHead, ValueHead
from pirl_core.recipe.samplers import ChainSampler, OdeSampler, make_sampler


@dataclass
class ActOutput:
    chain: Tensor  # (B, K+1, C, D) the denoising chain; chain[:, -1] is the action sample
    sde_step: Tensor  # (B,) long, Flow-SDE's stochastic step (-1 otherwise)
    logp: Tensor  # (B,) rollout log-prob of the chain (0 when deterministic)
    value: Tensor  # (B,) critic value of the observation (0 without a critic)
    x0: Tensor  # (B, C, D) == chain[:, -1]


class ActorCritic(nn.Module):
    """Adapter + value head (PPO) + noise head (Flow-Noise) + the method's sampler."""

    def __init__(
        self,
        adapter: FlowPolicyAdapter,
        recipe: RecipeConfig,
        value_head: ValueHead | None,
        noise_head: NoiseHead | None,
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.value_head = value_head
        self.noise_head = noise_head
        self.recipe = recipe
        # Samplers are plain objects (not modules): the noise head is registered once, above.
        self.sampler: ChainSampler = make_sampler(recipe, noise_head)
        self.eval_sampler = OdeSampler(
            recipe.denoise_steps, recipe.logprob_action_reduction, recipe.logprob_step_reduction
        )
        self.frozen_fingerprint: str | None = None  # set by build_actor_critic (recipe/fingerprint.py)

    @property
    def device(self) -> torch.device:
        return next(self.adapter.parameters()).device

    # ------------------------------------------------------------------ pieces

    def initial_noise(self, batch: int, generator: torch.Generator) -> Tensor:
        """x_1 ~ N(0, I) over the full (C, D) chunk, drawn from ``generator`` only."""
        shape = (batch, self.adapter.chunk_size, self.adapter.action_dim)
        return torch.randn(shape, generator=generator, device=generator.device).to(self.device)

    def critic(self, ctx: Context, x1: Tensor) -> Tensor:
        """V(s) (B,). ``action_head`` placement evaluates the action head at (x_1, t=1); x_1 is the
        chain's own first state, so rollout and update see the same critic input."""
        if self.value_head is None:
            return x1.new_zeros(x1.shape[0])
        with self.adapter.compute_context():
            features = self.adapter.value_features(ctx, self.recipe.critic, x1).float()
        if self.recipe.critic_detach:
            features = features.detach()
        return self.value_head(features)

    def encode(self, obs: dict[str, Tensor]) -> Context:
        """The adapter's observation pass, in the adapter's compute precision."""
        with self.adapter.compute_context():
            return self.adapter.encode(obs)

    # ------------------------------------------------------------------ API

    @torch.no_grad()
    def act(
        self, obs: dict[str, Tensor], generator: torch.Generator, deterministic: bool = False
    ) -> ActOutput:
        """Sample one action chunk per observation. ``deterministic``: ODE sampling (evaluation)."""
        ctx = self.encode(obs)
        batch = next(iter(obs.values())).shape[0]
        x1 = self.initial_noise(batch, generator)
        sampler = self.eval_sampler if deterministic else self.sampler
        out = sampler.sample(self.adapter, ctx, x1, generator)
        value = self.critic(ctx, x1)
        return ActOutput(out.chain, out.sde_step, out.logp, value, out.chain[:, -1])

    def evaluate(
        self, obs: dict[str, Tensor], chain: Tensor, sde_step: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Re-score stored chains with gradients: (logp, entropy, value), each (B,)."""
        ctx = self.encode(obs)
        logp, entropy = self.sampler.score(self.adapter, ctx, chain, sde_step)
        return logp, entropy, self.critic(ctx, chain[:, 0])

    @torch.no_grad()
    def value(self, obs: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """V(s) alone, e.g. to bootstrap a time-limit truncation. Draws x_1 from ``generator``
        (only the ``action_head`` placement reads it)."""
        if self.value_head is None:
            batch = next(iter(obs.values())).shape[0]
            return torch.zeros(batch, device=self.device)
        ctx = self.encode(obs)
        batch = next(iter(obs.values())).shape[0]
        return self.critic(ctx, self.initial_noise(batch, generator))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters per optimiser group; frozen parameters are left out entirely."""
        groups: dict[str, list[nn.Parameter]] = {
            "policy": [p for p in self.adapter.parameters() if p.requires_grad]
        }
        if self.value_head is not None:
            groups["value"] = [p for p in self.value_head.parameters() if p.requires_grad]
        if self.noise_head is not None:
            groups["noise"] = [p for p in self.noise_head.parameters() if p.requires_grad]
        return groups

    def identity(self) -> dict[str, Any]:
        """Recipe + adapter fields that must match on resume."""
        return {
            **self.adapter.identity(),
            "method": self.recipe.method,
            "algorithm": self.recipe.algorithm,
            "denoise_steps": self.recipe.denoise_steps,
            "critic": self.recipe.critic if self.value_head is not None else None,
            "value_head": self.value_head is not None,
            "noise_head": self.noise_head is not None,
        }


def build_actor_critic(adapter: FlowPolicyAdapter, recipe: RecipeConfig, seed: int = 0) -> ActorCritic:
    """Wrap ``adapter`` with the heads its recipe needs.

    * value head: only for PPO (GRPO has no critic), on ``adapter.value_features(recipe.critic)``;
    * noise head: only for Flow-Noise (Flow-SDE's noise schedule is fixed).
    Head weights are drawn from a private RNG seeded with ``seed`` so learner and actor build
    identical modules without touching the global RNG.
    """
    adapter.set_rl_mode()
    device = next(adapter.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        value_head = (
            ValueHead(adapter.value_feature_dim(recipe.critic)) if recipe.algorithm == "ppo" else None
        )
        noise_head = (
            NoiseHead(adapter.noise_feature_dim, adapter.action_dim, recipe.sigma_min, recipe.sigma_max)
            if recipe.method == "flow_noise"
            else None
        )
    if value_head is not None:
        value_head.to(device)
    if noise_head is not None:
        noise_head.to(device)
    actor_critic = ActorCritic(adapter, recipe, value_head, noise_head)
    # Hash of everything that never trains (a frozen VLM, buffers), taken once at build: every
    # parameter push names it and an actor whose own build differs refuses the push.
    actor_critic.frozen_fingerprint = frozen_fingerprint(actor_critic)
    return actor_critic


def actor_critic_for(cfg: RunConfig, adapter: FlowPolicyAdapter | None = None) -> ActorCritic:
    """The run's actor-critic: the configured policy (instructed with the configured tasks) with
    the recipe's heads, seeded with ``cfg.seed``. The learner, every actor, evaluation and the
    in-process loop all build it here, so they hold identical modules (the parameter push and the
    frozen fingerprint rely on it). ``adapter`` replaces the configured policy (benchmarks and
    tests compare parameterisations with it)."""
    if adapter is None:
        adapter = make_adapter(cfg, task_descriptions(cfg))
    return build_actor_critic(adapter, cfg.recipe, seed=cfg.seed)
