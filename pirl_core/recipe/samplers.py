"""Samplers with exact log-likelihoods: ``ode`` (evaluation), ``flow_noise`` and ``flow_sde``.

A sampler does two things with the *same* transition moments:

* ``sample``: run K denoising steps from x_1 and return the whole chain (B, K+1, C, D) plus the
  log-likelihood of its random part (what the actor stores);
* ``score``: given a stored chain, recompute that log-likelihood with gradients (what the learner
  does). On-policy, score(sample) reproduces the stored log-prob: the ratio-equals-one invariant.

Which channels are random. Noise enters only the channels of ``adapter.sampled_mask()`` (the
executed chunk steps x the flow-generated action dims). All other channels follow the
deterministic ODE mean; they are functions of the scored channels and of x_1, so the chain's
randomness is exactly what is scored. x_1 ~ N(0, I) on every channel is an exogenous draw that
does not depend on the parameters; its density (the "prior" term) can optionally be added
(``recipe.include_prior``) but never changes a ratio.

Reductions are named config choices: ``recipe.logprob_action_reduction`` (sum | mean over the
masked chunk x dims elements of one transition) and ``recipe.logprob_step_reduction`` (sum | mean
over the scored terms of the chain: K transitions (+ prior) for Flow-Noise, the one stochastic
step for Flow-SDE).

Ratio granularity (``recipe.ratio_mode``): ``score`` returns one log-prob per chunk (B,) in
"chunk" mode, or one per masked element (B, E) in "element" mode (E = executed chunk steps x
flow-generated dims; each element's terms reduced over the scored steps only), for one PPO
ratio per element (RLinf's ``token_level``, DPPO/ReinFlow). ``sample`` always returns the chunk
log-prob: that is what a rollout stores and what the learner's contract check compares
(:meth:`ChainSampler.reduce_elements` maps element log-probs back to it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from pirl_core.config import RecipeConfig
from pirl_core.policies.base import Context, FlowPolicyAdapter
from pirl_core.recipe.flow import (
    gaussian_entropy,
    gaussian_logpdf,
    ode_mean,
    sde_moments,
    time_grid,
    to_velocity,
)
from pirl_core.recipe.heads import NoiseHead

Reduction = Literal["sum", "mean"]
NO_SDE_STEP = -1
"""``sde_step`` value for chains that are not hybrid (Flow-Noise, ODE)."""


@dataclass
class SampleResult:
    chain: Tensor  # (B, K+1, C, D): chain[:, 0] = x_1 (noise), chain[:, K] = x_0 (action)
    sde_step: Tensor  # (B,) long: the stochastic step index of a Flow-SDE hybrid chain, else -1
    logp: Tensor  # (B,) log-likelihood of the chain's random part (0 for ODE)
    entropy: Tensor  # (B,) entropy of the scored Gaussians, same reductions as logp


def reduce_action(elem: Tensor, mask: Tensor, how: Reduction) -> Tensor:
    """(B, C, D) elementwise terms -> (B,), over the masked (sampled and executed) channels only."""
    total = (elem * mask).sum(dim=(-2, -1))
    if how == "sum":
        return total
    if how == "mean":
        return total / mask.sum()
    raise ValueError(f"unknown reduction {how!r}")


def gather_elements(elem: Tensor, mask: Tensor) -> Tensor:
    """(B, C, D) elementwise terms -> (B, E): the masked channels only, row-major (chunk step, dim)."""
    return elem[:, mask.bool()]


def reduce_steps(terms: Tensor, how: Reduction) -> Tensor:
    """(B, S) per-step terms -> (B,); (B, E, S) per-element per-step terms -> (B, E)."""
    if how == "sum":
        return terms.sum(dim=-1)
    if how == "mean":
        return terms.mean(dim=-1)
    raise ValueError(f"unknown reduction {how!r}")


def draw_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard normal noise from the given generator only (rollouts must be reproducible from it).
    Drawn on the generator's device, then moved, so CPU-seeded runs give identical noise on GPU."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class ChainSampler(ABC):
    """Common machinery: the grid, the mask and the prediction -> velocity step."""

    def __init__(
        self, steps: int, action_reduction: Reduction, step_reduction: Reduction, per_element: bool = False
    ) -> None:
        self.steps = steps
        self.dt = 1.0 / steps
        self.action_reduction: Reduction = action_reduction
        self.step_reduction: Reduction = step_reduction
        # recipe.ratio_mode == "element": score() keeps one log-prob per masked element.
        self.per_element = per_element

    def score_terms(self, elem: Tensor, mask: Tensor) -> Tensor:
        """One transition's (B, C, D) log-densities as ``score`` reports them: (B,) reduced over
        the masked channels (chunk mode) or (B, E) per masked element (element mode)."""
        if self.per_element:
            return gather_elements(elem, mask)
        return reduce_action(elem, mask, self.action_reduction)

    def reduce_elements(self, logp: Tensor) -> Tensor:
        """(B, E) element log-probs -> (B,) chunk log-probs, as ``sample`` reduces them (the
        reductions are linear, so the order of step and element reduction does not matter);
        (B,) passes through."""
        if logp.dim() == 1:
            return logp
        if self.action_reduction == "sum":
            return logp.sum(dim=-1)
        return logp.mean(dim=-1)

    def grid(self, device: torch.device) -> Tensor:
        return time_grid(self.steps, device)

    @staticmethod
    def mask(adapter: FlowPolicyAdapter, like: Tensor) -> Tensor:
        return adapter.sampled_mask().to(device=like.device, dtype=like.dtype)

    def velocity(
        self, adapter: FlowPolicyAdapter, ctx: Context, x_t: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One network evaluation -> (velocity, per-token features), both float32 whatever the
        adapter's compute precision: chains and log-densities are always float32."""
        with adapter.compute_context():
            pred = adapter.predict(x_t, t, ctx)
        return to_velocity(pred.value.float(), x_t, t, adapter.prediction_type), pred.features.float()

    @abstractmethod
    def sample(
        self, adapter: FlowPolicyAdapter, ctx: Context, x1: Tensor, generator: torch.Generator
    ) -> SampleResult: ...

    @abstractmethod
    def score(
        self, adapter: FlowPolicyAdapter, ctx: Context, chain: Tensor, sde_step: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Stored chain -> (logp (B,), entropy (B,)), differentiable."""


class OdeSampler(ChainSampler):
    """Deterministic Euler integration of the probability-flow ODE (evaluation). No log-prob."""

    def sample(
        self, adapter: FlowPolicyAdapter, ctx: Context, x1: Tensor, generator: torch.Generator
    ) -> SampleResult:
        grid = self.grid(x1.device)
        b = x1.shape[0]
        xs = [x1]
        x = x1
        for k in range(self.steps):
            t = grid[k].expand(b)
            v, _ = self.velocity(adapter, ctx, x, t)
            x = ode_mean(x, v, self.dt)
            xs.append(x)
        zeros = x1.new_zeros(b)
        sde_step = torch.full((b,), NO_SDE_STEP, dtype=torch.long, device=x1.device)
        return SampleResult(torch.stack(xs, dim=1), sde_step, zeros, zeros)

    def score(
        self, adapter: FlowPolicyAdapter, ctx: Context, chain: Tensor, sde_step: Tensor
    ) -> tuple[Tensor, Tensor]:
        raise RuntimeError(
            "ODE chains are deterministic and have no likelihood; train with flow_noise or flow_sde"
        )


class FlowNoiseSampler(ChainSampler):
    """One-layer MDP: every step x_{t-Delta} ~ N(ODE mean, sigma_phi^2); the chain is one action.

    log pi(chain) = reduce_steps([prior?] + [log N(x_{k+1}; mean_k, sigma_k^2)]_k), each term
    reduced over the masked channels first.
    """

    def __init__(
        self,
        noise_head: NoiseHead,
        steps: int,
        action_reduction: Reduction,
        step_reduction: Reduction,
        include_prior: bool,
        per_element: bool = False,
    ) -> None:
        super().__init__(steps, action_reduction, step_reduction, per_element)
        self.noise_head = noise_head
        self.include_prior = include_prior

    def moments(
        self, adapter: FlowPolicyAdapter, ctx: Context, x_t: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        v, features = self.velocity(adapter, ctx, x_t, t)
        return ode_mean(x_t, v, self.dt), self.noise_head(features, t)

    def _prior_terms(self, x1: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        unit = torch.ones_like(x1)
        lp = reduce_action(gaussian_logpdf(x1, torch.zeros_like(x1), unit), mask, self.action_reduction)
        ent = reduce_action(gaussian_entropy(unit), mask, self.action_reduction)
        return lp, ent

    def sample(
        self, adapter: FlowPolicyAdapter, ctx: Context, x1: Tensor, generator: torch.Generator
    ) -> SampleResult:
        grid = self.grid(x1.device)
        mask = self.mask(adapter, x1)
        b = x1.shape[0]
        xs, lps, ents = [x1], [], []
        if self.include_prior:
            lp, ent = self._prior_terms(x1, mask)
            lps.append(lp)
            ents.append(ent)
        x = x1
        for k in range(self.steps):
            t = grid[k].expand(b)
            mean, std = self.moments(adapter, ctx, x, t)
            noise = draw_noise(tuple(x.shape), generator, x.device)
            x = torch.where(mask.bool(), mean + std * noise, mean)
            xs.append(x)
            lps.append(reduce_action(gaussian_logpdf(x, mean, std), mask, self.action_reduction))
            ents.append(reduce_action(gaussian_entropy(std), mask, self.action_reduction))
        sde_step = torch.full((b,), NO_SDE_STEP, dtype=torch.long, device=x1.device)
        logp = reduce_steps(torch.stack(lps, dim=-1), self.step_reduction)
        entropy = reduce_steps(torch.stack(ents, dim=-1), self.step_reduction)
        return SampleResult(torch.stack(xs, dim=1), sde_step, logp, entropy)

    def score(
        self, adapter: FlowPolicyAdapter, ctx: Context, chain: Tensor, sde_step: Tensor
    ) -> tuple[Tensor, Tensor]:
        grid = self.grid(chain.device)
        mask = self.mask(adapter, chain)
        b = chain.shape[0]
        lps, ents = [], []
        if self.include_prior:
            x1 = chain[:, 0]
            _, ent = self._prior_terms(x1, mask)
            lps.append(self.score_terms(gaussian_logpdf(x1, torch.zeros_like(x1), torch.ones_like(x1)), mask))
            ents.append(ent)
        # All K steps re-run with gradient: this is the cost the Flow-SDE hybrid avoids.
        for k in range(self.steps):
            t = grid[k].expand(b)
            mean, std = self.moments(adapter, ctx, chain[:, k], t)
            lps.append(self.score_terms(gaussian_logpdf(chain[:, k + 1], mean, std), mask))
            ents.append(reduce_action(gaussian_entropy(std), mask, self.action_reduction))
        return (
            reduce_steps(torch.stack(lps, dim=-1), self.step_reduction),
            reduce_steps(torch.stack(ents, dim=-1), self.step_reduction),
        )


class FlowSdeSampler(ChainSampler):
    """Two-layer MDP, hybrid ODE-SDE: per sample one step j ~ U{0..K-1} is an SDE step with
    sigma_t = a*sqrt(t/(1-t)); all other steps are ODE. j is stored with the chain and only the
    transition x_j -> x_{j+1} is scored, so an update costs one network evaluation per sample
    instead of K. (``include_prior`` does not apply: x_1 is not part of the scored transition.)
    """

    def __init__(
        self,
        steps: int,
        noise_level: float,
        action_reduction: Reduction,
        step_reduction: Reduction,
        per_element: bool = False,
    ) -> None:
        super().__init__(steps, action_reduction, step_reduction, per_element)
        self.noise_level = noise_level

    def sample(
        self, adapter: FlowPolicyAdapter, ctx: Context, x1: Tensor, generator: torch.Generator
    ) -> SampleResult:
        grid = self.grid(x1.device)
        mask = self.mask(adapter, x1)
        b = x1.shape[0]
        sde_step = torch.randint(0, self.steps, (b,), generator=generator, device=generator.device).to(
            x1.device
        )
        xs = [x1]
        logp = x1.new_zeros(b)
        entropy = x1.new_zeros(b)
        x = x1
        for k in range(self.steps):
            t = grid[k].expand(b)
            v, _ = self.velocity(adapter, ctx, x, t)
            det = ode_mean(x, v, self.dt)
            mean, std = sde_moments(x, v, t, self.dt, self.noise_level, self.steps)
            noise = draw_noise(tuple(x.shape), generator, x.device)
            here = (sde_step == k).reshape(b, 1, 1)
            x = torch.where(mask.bool() & here, mean + std * noise, det)
            xs.append(x)
            lp = reduce_action(gaussian_logpdf(x, mean, std), mask, self.action_reduction)
            ent = reduce_action(gaussian_entropy(std.expand_as(x)), mask, self.action_reduction)
            logp = torch.where(here.reshape(b), lp, logp)
            entropy = torch.where(here.reshape(b), ent, entropy)
        # One scored term: reduce_steps over a single step is the identity for both choices.
        return SampleResult(torch.stack(xs, dim=1), sde_step, logp, entropy)

    def score(
        self, adapter: FlowPolicyAdapter, ctx: Context, chain: Tensor, sde_step: Tensor
    ) -> tuple[Tensor, Tensor]:
        if bool((sde_step < 0).any()) or bool((sde_step >= self.steps).any()):
            raise ValueError(
                f"flow_sde chains need a stored sde_step in [0, {self.steps}); got {sde_step.tolist()}"
            )
        grid = self.grid(chain.device)
        mask = self.mask(adapter, chain)
        rows = torch.arange(chain.shape[0], device=chain.device)
        j = sde_step.to(chain.device)
        x_t, x_next, t = chain[rows, j], chain[rows, j + 1], grid[j]
        v, _ = self.velocity(adapter, ctx, x_t, t)
        mean, std = sde_moments(x_t, v, t, self.dt, self.noise_level, self.steps)
        # Chunk mode with the "sum" action reduction is RLinf's Flow-SDE regime: the sum over the
        # executed elements of the one stochastic step's Gaussian log-density.
        logp = self.score_terms(gaussian_logpdf(x_next, mean, std), mask)
        entropy = reduce_action(gaussian_entropy(std.expand_as(x_t)), mask, self.action_reduction)
        return logp, entropy


def make_sampler(recipe: RecipeConfig, noise_head: NoiseHead | None) -> ChainSampler:
    """The training sampler named by ``recipe.method``."""
    if recipe.method == "flow_noise":
        if noise_head is None:
            raise ValueError("flow_noise needs a noise head")
        return FlowNoiseSampler(
            noise_head,
            recipe.denoise_steps,
            recipe.logprob_action_reduction,
            recipe.logprob_step_reduction,
            recipe.include_prior,
            per_element=recipe.ratio_mode == "element",
        )
    if recipe.method == "flow_sde":
        return FlowSdeSampler(
            recipe.denoise_steps,
            recipe.sde_noise_level,
            recipe.logprob_action_reduction,
            recipe.logprob_step_reduction,
            per_element=recipe.ratio_mode == "element",
        )
    raise ValueError(f"unknown recipe.method {recipe.method!r}")
