"""Flow arithmetic: grid, prediction conversion, SDE schedule, Gaussian densities, and the
statistical check that Flow-SDE sampling preserves the ODE's marginals (analytic target)."""

from __future__ import annotations

import math

import pytest
import torch

from pirl_core.recipe.flow import (
    gaussian_entropy,
    gaussian_logpdf,
    ode_mean,
    sde_moments,
    sde_sigma,
    time_grid,
    to_velocity,
)
from pirl_core.recipe.samplers import FlowSdeSampler, OdeSampler
from tests.recipe_checks import GaussianTargetAdapter


def test_time_grid_runs_from_noise_to_action() -> None:
    assert torch.allclose(time_grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))


def test_clean_action_prediction_converts_to_the_true_velocity() -> None:
    g = torch.Generator().manual_seed(0)
    a, eps = torch.randn(5, 3, 2, generator=g), torch.randn(5, 3, 2, generator=g)
    t = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.1])
    x_t = t.view(-1, 1, 1) * eps + (1 - t.view(-1, 1, 1)) * a
    assert torch.allclose(to_velocity(a, x_t, t, "clean_action"), eps - a, atol=1e-5)
    assert torch.equal(to_velocity(eps - a, x_t, t, "velocity"), eps - a)
    # The last ODE step from an exact velocity lands on the clean action.
    last = ode_mean(x_t[-2:-1], eps[-2:-1] - a[-2:-1], 0.25)
    assert torch.allclose(last, a[-2:-1], atol=1e-5)


def test_sde_schedule_matches_the_reference_stds() -> None:
    # pirl-method.md: for K=4, a=0.5 the stds are about 0.50, 0.43, 0.25, 0.14.
    t = time_grid(4)[:-1]
    std = sde_sigma(t, 0.5, 4) * math.sqrt(0.25)
    assert torch.allclose(std, torch.tensor([0.5, 0.4330, 0.25, 0.1443]), atol=1e-3)
    x = torch.randn(4, 1, 1)
    _, std2 = sde_moments(x, torch.zeros_like(x), t, 0.25, 0.5, 4)
    assert torch.allclose(std2.flatten(), std)


def test_sde_mean_has_the_drift_correction() -> None:
    x, v = torch.full((1, 1, 1), 0.3), torch.full((1, 1, 1), -0.2)
    t = torch.tensor([0.5])
    mean, _ = sde_moments(x, v, t, 0.25, 0.5, 4)
    sigma2 = 0.25 * (0.5 / 0.5)
    expected = 0.3 - 0.25 * (-0.2) - sigma2 * 0.25 / (2 * 0.5) * (0.3 + 0.5 * -0.2)
    assert float(mean) == pytest.approx(expected, abs=1e-6)


def test_transition_log_density_and_entropy_equal_torch_normal() -> None:
    g = torch.Generator().manual_seed(1)
    mean, x = torch.randn(4, 3, 2, generator=g), torch.randn(4, 3, 2, generator=g)
    std = torch.rand(4, 3, 2, generator=g) * 0.5 + 0.05
    ref = torch.distributions.Normal(mean, std)
    assert torch.allclose(gaussian_logpdf(x, mean, std), ref.log_prob(x), atol=1e-5)
    assert torch.allclose(gaussian_entropy(std), ref.entropy(), atol=1e-6)


def _marginal(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.var())


@pytest.mark.parametrize("mode", ["velocity", "clean_action"])
def test_flow_sde_preserves_the_ode_marginals(mode: str) -> None:
    """Gaussian target N(0.7, 0.5^2): hybrid and fully stochastic SDE chains end with the ODE's
    mean/variance (within sampling error + the t=1 schedule approximation); a chain that adds the
    same noise without the drift correction does not."""
    mu, s, steps, a, n = 0.7, 0.5, 50, 0.5, 20000
    adapter = GaussianTargetAdapter(mu, s, chunk_size=1, action_dim=1, mode=mode)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, 1, 1, generator=g)
    ode = OdeSampler(steps, "sum", "sum").sample(adapter, {}, x1, g).chain[:, -1]
    hybrid = FlowSdeSampler(steps, a, "sum", "sum").sample(adapter, {}, x1, g).chain[:, -1]

    grid = time_grid(steps)
    full, uncorrected = x1, x1
    for k in range(steps):
        t = grid[k].expand(n)
        mean, std = sde_moments(full, adapter.velocity(full, t), t, 1 / steps, a, steps)
        full = mean + std * torch.randn(full.shape, generator=g)
        _, std_u = sde_moments(uncorrected, adapter.velocity(uncorrected, t), t, 1 / steps, a, steps)
        uncorrected = ode_mean(uncorrected, adapter.velocity(uncorrected, t), 1 / steps)
        uncorrected = uncorrected + std_u * torch.randn(full.shape, generator=g)

    m_ode, v_ode = _marginal(ode)
    assert m_ode == pytest.approx(mu, abs=0.01)
    assert v_ode == pytest.approx(s**2, abs=0.02)  # Euler error at K=50 is ~0.014
    for sample in (hybrid, full):
        m, v = _marginal(sample)
        assert m == pytest.approx(m_ode, abs=0.015)
        assert v == pytest.approx(v_ode, abs=0.015)
    _, v_bad = _marginal(uncorrected)
    assert v_bad > v_ode + 0.2
