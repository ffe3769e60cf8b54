"""The actor adopts the behaviour-policy settings pushed with the parameters (pirl_core.behaviour)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pirl_core.behaviour import apply_behaviour
from pirl_core.checkpoints.identity import behaviour
from pirl_core.config import load_config
from pirl_core.errors import ExitCode, TransportError
from pirl_core.learner import build_trainer


def test_pushed_sigma_range_and_reductions_change_what_the_actor_samples(tmp_path: Path) -> None:
    actor_cfg = load_config("toy", {"output_dir": str(tmp_path), "policy.hidden_dim": 16})
    learner_cfg = load_config(
        "toy",
        {
            "output_dir": str(tmp_path),
            "policy.hidden_dim": 16,
            "recipe.sigma_max": 0.5,
            "recipe.logprob_step_reduction": "sum",
            "learner.episodes_per_update": 8,
        },
    )
    actor_critic = build_trainer(actor_cfg).actor_critic
    learner_ac = build_trainer(learner_cfg).actor_critic
    actor_critic.load_state_dict(learner_ac.state_dict())
    obs = {"state": torch.randn(3, actor_critic.adapter.obs_dim)}

    def sample(ac) -> torch.Tensor:
        with torch.no_grad():
            out = ac.act(obs, torch.Generator().manual_seed(1))
        return torch.cat([out.chain.flatten(), out.logp])

    assert not torch.equal(sample(actor_critic), sample(learner_ac))  # before the push: off-policy
    new_cfg = apply_behaviour(actor_cfg, actor_critic, behaviour(learner_cfg), actor_id=0)
    assert torch.equal(sample(actor_critic), sample(learner_ac))  # exactly what the learner scores
    assert new_cfg.recipe.sigma_max == 0.5 and new_cfg.learner.episodes_per_update == 8
    assert actor_cfg.recipe.sigma_max == 0.8  # the actor's own flags are not mutated
    assert apply_behaviour(new_cfg, actor_critic, behaviour(learner_cfg), actor_id=0) is new_cfg


@pytest.mark.parametrize(
    "pushed,words",
    [
        (None, "no valid 'behaviour'"),
        ({"recipe.sigma_max": 0.5}, "no valid 'behaviour'"),
        ("override", "no valid 'behaviour'"),
    ],
)
def test_a_malformed_push_is_a_transport_error(tmp_path: Path, pushed, words: str) -> None:
    cfg = load_config("toy", {"output_dir": str(tmp_path), "policy.hidden_dim": 16})
    with pytest.raises(TransportError, match=words) as info:
        apply_behaviour(cfg, build_trainer(cfg).actor_critic, pushed, actor_id=0)
    assert info.value.exit_code == ExitCode.TRANSPORT


def test_pushed_values_are_validated_and_actor_ids_checked(tmp_path: Path) -> None:
    cfg = load_config("toy", {"output_dir": str(tmp_path), "policy.hidden_dim": 16})
    ac = build_trainer(cfg).actor_critic
    bad = {**behaviour(cfg), "recipe.sigma_min": 5.0}
    with pytest.raises(TransportError, match="recipe.sigma_min"):
        apply_behaviour(cfg, ac, bad, actor_id=0)
    with pytest.raises(TransportError, match="--actor-id=1 is outside the learner's actor.n_actors=1"):
        apply_behaviour(cfg, ac, behaviour(cfg), actor_id=1)
