"""PPO clipping at and beyond the boundaries: which branch is active, where gradients stop."""

from __future__ import annotations

import math

import pytest
import torch

from pirl_core.recipe.ppo import VALUE_COEF, ppo_loss

CLIP = 0.2


def surrogate(ratio: float, adv: float) -> tuple[float, float]:
    """(loss, d loss / d new_logp) for one sample."""
    new_logp = torch.tensor([math.log(ratio)], requires_grad=True)
    out = ppo_loss(new_logp, torch.zeros(1), torch.tensor([adv]), torch.zeros(1), CLIP, 0.0)
    out.loss.backward()
    assert new_logp.grad is not None
    return float(out.loss.detach()), float(new_logp.grad)


@pytest.mark.parametrize(
    ("ratio", "adv", "expected_loss", "has_grad"),
    [
        (1.0, 1.0, -1.0, True),
        (1.1, 1.0, -1.1, True),  # inside the trust region
        (1.3, 1.0, -1.2, False),  # positive advantage, ratio above 1+clip: clipped, no push further
        (0.7, 1.0, -0.7, True),  # positive advantage, ratio below 1-clip: unclipped, pulled back up
        (0.7, -1.0, 0.8, False),  # negative advantage, ratio below 1-clip: clipped
        (1.3, -1.0, 1.3, True),  # negative advantage, ratio above 1+clip: unclipped, pulled back down
        (1.19, 1.0, -1.19, True),  # just inside the upper boundary
        (1.21, 1.0, -1.2, False),  # just outside it
    ],
)
def test_clipped_surrogate(ratio: float, adv: float, expected_loss: float, has_grad: bool) -> None:
    loss, grad = surrogate(ratio, adv)
    assert loss == pytest.approx(expected_loss, abs=1e-6)
    assert (abs(grad) > 1e-8) == has_grad


def test_clip_fraction_and_kl() -> None:
    new_logp = torch.log(torch.tensor([1.0, 1.1, 1.3, 0.7]))
    out = ppo_loss(new_logp, torch.zeros(4), torch.ones(4), torch.zeros(4), CLIP, 0.0)
    assert float(out.clip_frac) == pytest.approx(0.5)
    r = torch.tensor([1.0, 1.1, 1.3, 0.7])
    assert float(out.approx_kl) == pytest.approx(float(((r - 1) - r.log()).mean()), abs=1e-6)
    assert torch.allclose(out.ratio, r)


def test_value_loss_is_clipped_around_the_rollout_value() -> None:
    old = torch.tensor([0.0, 0.0, 0.0])
    ret = torch.tensor([1.0, 1.0, -1.0])
    new = torch.tensor([0.5, 0.1, 0.5], requires_grad=True)
    out = ppo_loss(
        torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), CLIP, 0.0, new, old, ret, 0.2
    )
    # sample 0: unclipped (0.5-1)^2=0.25, clipped (0.2-1)^2=0.64 -> 0.64, no gradient (clipped branch)
    # sample 1: inside the clip range -> (0.1-1)^2 = 0.81
    # sample 2: moved away from the target: unclipped (1.5)^2=2.25 > clipped (1.2)^2 -> 2.25
    assert float(out.value_loss.detach()) == pytest.approx(0.5 * (0.64 + 0.81 + 2.25) / 3, abs=1e-6)
    out.value_loss.backward()
    assert new.grad is not None
    assert new.grad[0] == 0 and new.grad[1] != 0 and new.grad[2] != 0
    assert float(out.loss.detach()) == pytest.approx(VALUE_COEF * float(out.value_loss.detach()), abs=1e-6)


def test_entropy_bonus_lowers_the_loss() -> None:
    ent = torch.tensor([2.0, 4.0])
    base = ppo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), ent, CLIP, 0.0)
    bonus = ppo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), ent, CLIP, 0.01)
    assert float(base.loss - bonus.loss) == pytest.approx(0.03)
