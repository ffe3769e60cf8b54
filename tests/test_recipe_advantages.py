"""GAE and GRPO against hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from pirl_core.recipe.advantages import episode_weights, explained_variance, gae, grpo_advantages


def test_gae_matches_a_hand_computed_example() -> None:
    # Episode A: three chunks, terminated (success) at the last one -> no bootstrap.
    # Episode B: two chunks, cut by the time limit -> bootstrap from V(s_final) = 0.5.
    reward = torch.tensor([0.0, 0.0, 1.0, 0.2, 0.1])
    value = torch.tensor([0.5, 0.6, 0.7, 0.3, 0.4])
    done = torch.tensor([False, False, True, False, True])
    boot = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5])
    gamma, lam = 0.9, 0.8
    a2 = 1.0 - 0.7
    a1 = (0.9 * 0.7 - 0.6) + gamma * lam * a2
    a0 = (0.9 * 0.6 - 0.5) + gamma * lam * a1
    b1 = 0.1 + 0.9 * 0.5 - 0.4
    b0 = (0.2 + 0.9 * 0.4 - 0.3) + gamma * lam * b1
    expected = torch.tensor([a0, a1, a2, b0, b1])
    adv, ret = gae(reward, value, done, boot, gamma, lam)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert torch.allclose(ret, expected + value, atol=1e-6)
    assert adv[2] == pytest.approx(0.3)  # nothing leaks across the episode boundary


def test_gae_with_lambda_one_is_the_discounted_return_minus_value() -> None:
    reward = torch.tensor([1.0, 2.0, 3.0])
    value = torch.tensor([0.1, 0.2, 0.3])
    done = torch.tensor([False, False, True])
    adv, ret = gae(reward, value, done, torch.zeros(3), 0.5, 1.0)
    assert torch.allclose(ret, torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))


def test_grpo_normalises_within_groups_and_broadcasts_to_chunks() -> None:
    # Group 7: four one-chunk episodes with returns 1, 0, 1, 0.
    # Group 9: two episodes of two chunks each, returns 1.0 (0.25 + 0.75) and 0.0.
    reward = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.25, 0.75, 0.0, 0.0])
    episode = torch.tensor([0, 1, 2, 3, 4, 4, 5, 5])
    group = torch.tensor([7, 7, 7, 7, 9, 9, 9, 9])
    success = torch.tensor([True, False, True, False, False, True, False, False])
    adv, keep = grpo_advantages(reward, episode, group, success, filter_groups=False)
    z4 = 0.5 / math.sqrt(1.0 / 3.0)  # (1 - 0.5) / unbiased std of [1, 0, 1, 0]
    z2 = 0.5 / math.sqrt(0.5)  # (1 - 0.5) / unbiased std of [1, 0]
    expected = torch.tensor([z4, -z4, z4, -z4, z2, z2, -z2, -z2])
    assert torch.allclose(adv, expected, atol=1e-5)
    assert keep.all()


def test_grpo_filter_drops_all_success_and_all_failure_groups() -> None:
    reward = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    episode = torch.arange(6)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    success = reward > 0
    adv, keep = grpo_advantages(reward, episode, group, success, filter_groups=True)
    assert keep.tolist() == [False, False, False, False, True, True]
    assert torch.allclose(adv[:4], torch.zeros(4))  # identical returns -> zero advantage anyway
    assert adv[4] > 0 > adv[5]
    _, keep_all = grpo_advantages(reward, episode, group, success, filter_groups=False)
    assert keep_all.all()


def test_episode_weights_count_each_kept_episode_once() -> None:
    # episodes of 1, 2 and 4 transitions, then one dropped episode of 3
    episode_id = torch.tensor([0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    keep = torch.tensor([True] * 7 + [False] * 3)
    w = episode_weights(episode_id, keep)
    raw = torch.tensor([1.0, 1 / 2, 1 / 2, 1 / 4, 1 / 4, 1 / 4, 1 / 4])
    torch.testing.assert_close(w[:7], raw / raw.mean())
    assert torch.equal(w[7:], torch.zeros(3))
    assert float(w[keep].mean()) == pytest.approx(1.0)
    # every kept episode's weights sum to the same total
    totals = [float(w[episode_id == e].sum()) for e in (0, 1, 2)]
    assert totals == pytest.approx([totals[0]] * 3)
    assert torch.equal(episode_weights(episode_id, torch.zeros(10, dtype=torch.bool)), torch.zeros(10))


def test_weighted_grpo_advantages_average_zero_over_transitions_whatever_the_lengths() -> None:
    """One success in 2 chunks and three failures of 5 chunks: per transition the failures
    outweigh the success (a net push down on what was sampled); weighted, they balance."""
    lengths, successes = [2, 5, 5, 5], [True, False, False, False]
    episode_id = torch.cat([torch.full((n,), e) for e, n in enumerate(lengths)])
    success = torch.cat(
        [torch.tensor([False] * (n - 1) + [ok]) for n, ok in zip(lengths, successes, strict=True)]
    )
    reward = success.float()
    adv, keep = grpo_advantages(reward, episode_id, torch.zeros_like(episode_id), success, filter_groups=True)
    assert float(adv.mean()) == pytest.approx((2 * 1.5 + 15 * -0.5) / 17, abs=1e-4)  # failures dominate
    weighted = adv * episode_weights(episode_id, keep)
    assert float(weighted.mean()) == pytest.approx(0.0, abs=1e-6)


def test_explained_variance() -> None:
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(4)))


def _groups_with(successes: list[int], size: int) -> tuple[torch.Tensor, ...]:
    """One single-chunk episode per row; group g has ``successes[g]`` successes of ``size``."""
    success = torch.tensor([i < k for k in successes for i in range(size)])
    n = success.numel()
    group = torch.arange(n) // size
    return success.float(), torch.arange(n), group, success


def test_grpo_filter_keeps_mean_success_in_0_1_to_0_9_as_rlinf() -> None:
    # groups of 8: every k/8 with 0 < k < 8 lies in [0.1, 0.9], so exactly all-fail/all-success drop
    reward, episode, group, success = _groups_with(list(range(9)), 8)
    _, keep = grpo_advantages(reward, episode, group, success, filter_groups=True)
    kept_groups = sorted(set(group[keep].tolist()))
    assert kept_groups == list(range(1, 8))
    # groups of 16: 1/16 and 15/16 fall outside [0.1, 0.9] and drop; 2/16 = 0.125 stays
    reward, episode, group, success = _groups_with([1, 2, 14, 15], 16)
    _, keep = grpo_advantages(reward, episode, group, success, filter_groups=True)
    assert sorted(set(group[keep].tolist())) == [1, 2]
    _, keep = grpo_advantages(reward, episode, group, success, filter_groups=True, keep_range=(0.05, 0.95))
    assert sorted(set(group[keep].tolist())) == [0, 1, 2, 3]
