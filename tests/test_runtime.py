"""Learner and actor derive the same plan and the same randomness from (seed, actor, version)."""

from __future__ import annotations

from collections import Counter

import torch

from pirl_core.config import load_config
from pirl_core.rollout_plan import episode_plan, rollout_generator
from pirl_core.transport.push import load_parameters, parameters_to_tensors


def test_ppo_plan_gives_each_actor_distinct_ids_per_version() -> None:
    cfg = load_config("toy", ["actor.n_actors=2", "learner.episodes_per_update=8"])
    plans = [episode_plan(cfg, a, v) for v in range(3) for a in range(2)]
    flat = [i for p in plans for i in p]
    assert all(len(p) == 4 for p in plans)
    assert len(set(flat)) == len(flat)


def test_grpo_plan_repeats_each_initial_state_group_size_times_interleaved() -> None:
    cfg = load_config(
        "toy", ["recipe.algorithm=grpo", "recipe.grpo_group_size=4", "learner.episodes_per_update=12"]
    )
    plan = episode_plan(cfg, actor_id=0, version=5)
    assert Counter(plan) == {15: 4, 16: 4, 17: 4}
    # interleaved: a block of consecutive slots meets every group once (slots keep their task)
    assert plan[:3] == [15, 16, 17] and plan[3:6] == [15, 16, 17]


def test_rollout_generator_is_a_pure_function_of_seed_actor_version_round() -> None:
    cfg = load_config("toy")
    a = torch.randn(4, generator=rollout_generator(cfg, 0, 3, 1))
    b = torch.randn(4, generator=rollout_generator(cfg, 0, 3, 1))
    c = torch.randn(4, generator=rollout_generator(cfg, 0, 4, 1))
    d = torch.randn(4, generator=rollout_generator(cfg, 1, 3, 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_parameters_round_trip_and_mismatch_is_a_transport_error() -> None:
    import pytest

    from pirl_core.errors import TransportError

    src, dst = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    load_parameters(dst, parameters_to_tensors(src))
    assert torch.equal(src.weight, dst.weight)
    with pytest.raises(TransportError, match="same --profile"):
        load_parameters(torch.nn.Linear(3, 3), {"bias": torch.zeros(2)})


def test_every_valid_grpo_config_plans_enough_episodes_for_the_learner() -> None:
    """The learner waits for ``episodes_per_update`` episodes per version; the actors' plans must
    supply them in whole groups, or the run stalls forever."""
    from pirl_core.errors import ConfigError

    checked = 0
    for n_actors in (1, 2, 3):
        for episodes in range(2, 25, 2):
            overrides = [
                "recipe.algorithm=grpo",
                "recipe.grpo_group_size=2",
                f"actor.n_actors={n_actors}",
                f"learner.episodes_per_update={episodes}",
            ]
            try:
                cfg = load_config("toy", overrides)
            except ConfigError as err:
                assert err.field == "learner.episodes_per_update"
                continue
            plans = [episode_plan(cfg, a, 0) for a in range(n_actors)]
            assert sum(len(p) for p in plans) == episodes, (n_actors, episodes)
            assert all(set(Counter(p).values()) == {2} for p in plans)  # whole groups only
            checked += 1
    assert checked >= 12


def test_a_missing_cuda_device_is_a_config_error_naming_the_fix() -> None:
    import pytest

    from pirl_core.errors import ConfigError
    from pirl_core.policies.device import check_device

    check_device("cpu")
    with pytest.raises(ConfigError, match="policy.device"):
        check_device("not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--policy.device=cpu"):
            check_device("cuda")
        # through the factory too: the toy MLP never reaches .to("cuda")
        from pirl_core.config import load_config
        from pirl_core.policies.factory import make_adapter

        with pytest.raises(ConfigError, match="policy.device"):
            make_adapter(load_config("toy", ["policy.device=cuda"]), [""])


def test_learner_actor_and_local_loop_build_the_same_seeded_modules() -> None:
    """``seed`` reaches the RL heads and the trainer's minibatch generator in the learner exactly
    as in the in-process loop the learning tests use (it was ignored there: always 0)."""
    from pirl_core.learner import build_trainer
    from pirl_core.recipe.actor_critic import actor_critic_for
    from tests.inprocess.local_loop import build_loop

    def built(seed: int):
        cfg = load_config("toy", ["recipe.method=flow_noise", f"seed={seed}"])
        torch.manual_seed(seed)  # the adapter itself draws from the global RNG (seed_everything)
        trainer = build_trainer(cfg)
        torch.manual_seed(seed)
        actor = actor_critic_for(cfg)
        torch.manual_seed(seed)
        loop = build_loop(cfg)
        loop.env.close()
        return trainer, actor, loop

    trainer, actor, loop = built(7)
    assert trainer.generator.initial_seed() == loop.trainer.generator.initial_seed() == 7
    ref = trainer.actor_critic.state_dict()
    for other in (actor.state_dict(), loop.actor_critic.state_dict()):
        assert ref.keys() == other.keys()
        assert all(torch.equal(ref[k], other[k]) for k in ref)
    trainer_8, _, _ = built(8)
    first = "noise_head.net.0.weight"
    assert not torch.equal(ref[first], trainer_8.actor_critic.state_dict()[first])


def test_version_rounds_leaves_grad_mode_on_in_its_caller_between_rounds() -> None:
    """The generator used to hold torch.no_grad() across its yields, so the caller's code between
    rounds (and after a partly consumed generator) ran with gradients off."""
    from pirl_core.rollout_plan import version_rounds
    from tests.inprocess.local_loop import build_loop

    state = build_loop(load_config("toy", {"env.n_envs": 4, "learner.episodes_per_update": 8}))
    assert torch.is_grad_enabled()
    rounds = version_rounds(state.cfg, state.env, state.actor_critic, actor_id=0, version=0)
    seen = 0
    for batch, _stats, _timing in rounds:
        seen += 1
        assert torch.is_grad_enabled(), f"grad mode off in the caller after round {seen}"
        assert not batch.logp.requires_grad  # the collection itself ran without a graph
    assert seen == 2 and torch.is_grad_enabled()
    state.env.close()
