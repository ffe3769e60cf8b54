"""SFT co-training (``recipe.sft_loss_weight``): the term is exactly pirl's SFT loss (LeRobot's
``XVLAPolicy.forward``; π's ``PI05Policy.forward`` through π's demo processor) on a demonstration
batch, its gradient reaches the policy, its batches are a function of (seed, update, step), and
weight 0 is bitwise the run without it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pirl_core.config import load_config
from pirl_core.envs.factory import task_descriptions
from pirl_core.errors import ConfigError
from pirl_core.policies.factory import make_adapter
from pirl_core.recipe.actor_critic import build_actor_critic
from pirl_core.recipe.cotrain import sft_loss
from pirl_core.recipe.trainer import trainer_for
from tests.batches import one_chunk_episodes
from tests.demo_datasets import write_synthetic_demos
from tests.libero_synthetic import synthetic_raw_obs

CAMERA = 32


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    return write_synthetic_demos(tmp_path_factory.mktemp("demos") / "ds", camera_size=CAMERA)


def cfg_with(demos: Path, weight: float):
    return load_config(
        "libero_tiny",
        {
            "env.camera_size": CAMERA,
            "recipe.sft_loss_weight": weight,
            "recipe.sft_dataset": str(demos),
            "recipe.sft_batch_size": 4,
            "recipe.update_epochs": 1,
            "recipe.drift_probe_states": 0,
        },
    )


def build(cfg):
    torch.manual_seed(0)
    adapter = make_adapter(cfg, task_descriptions(cfg))
    return trainer_for(cfg, build_actor_critic(adapter, cfg.recipe, seed=cfg.seed))


def rollout_batch(trainer, n: int = 4):
    ac = trainer.actor_critic
    obs = ac.adapter.prepare_obs(synthetic_raw_obs(n, size=CAMERA))
    out = ac.act(obs, torch.Generator().manual_seed(0))
    return one_chunk_episodes(obs, out.chain, out.sde_step, out.logp, out.value, torch.tensor([1.0, 0, 1, 0]))


def test_the_term_is_the_sft_loss_and_its_gradient_reaches_the_policy(demos: Path) -> None:
    trainer = build(cfg_with(demos, 0.1))
    sft = trainer.sft
    adapter = trainer.actor_critic.adapter
    loss, parts = sft.loss(adapter, update_index=3, step=1)
    # the same frames, the same seeded draws, through the SFT module's own loss function
    raw = sft.raw_batch(sft.indices(3, 1))
    assert len(raw["task"]) == 4
    torch.manual_seed(sft.seed * 1_000_003 + 3 * 10_007 + 1)
    expected, _ = sft_loss(adapter.policy, sft.batcher, raw)
    assert torch.equal(loss, expected.float())
    assert {"position_loss", "gripper_loss"} <= set(parts)
    # deterministic per (update, step), different across steps
    assert sft.indices(3, 1) == sft.indices(3, 1) and sft.indices(3, 1) != sft.indices(3, 2)
    assert torch.equal(sft.loss(adapter, 3, 1)[0], loss)
    loss.backward()
    grads = [p.grad for p in adapter.policy.model.transformer.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)


def test_weight_zero_is_off_bitwise_and_a_weight_changes_the_update(demos: Path) -> None:
    runs = {}
    for name, weight in (("off", 0.0), ("on", 0.5)):
        cfg = cfg_with(demos, weight)
        trainer = build(cfg)
        assert (trainer.sft is None) == (weight == 0)
        metrics = trainer.update(rollout_batch(trainer))
        runs[name] = (metrics, {k: v.detach().clone() for k, v in trainer.actor_critic.named_parameters()})
    plain_cfg = load_config(
        "libero_tiny", {"env.camera_size": CAMERA, "recipe.update_epochs": 1, "recipe.drift_probe_states": 0}
    )
    plain = build(plain_cfg)
    plain_metrics = plain.update(rollout_batch(plain))
    plain_params = dict(plain.actor_critic.named_parameters())
    off_metrics, off_params = runs["off"]
    assert all(torch.equal(v, plain_params[k]) for k, v in off_params.items())
    assert "sft_loss" not in off_metrics and off_metrics["policy_loss"] == plain_metrics["policy_loss"]
    on_metrics, on_params = runs["on"]
    assert on_metrics["sft_loss"] > 0
    assert any(not torch.equal(v, off_params[k]) for k, v in on_params.items())


def test_cotraining_settings_are_validated(demos: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe.sft_dataset"):
        load_config("libero_tiny", {"recipe.sft_loss_weight": 0.1, "recipe.sft_dataset": str(tmp_path)})
    with pytest.raises(ConfigError, match="recipe.sft_loss_weight"):
        load_config("toy", {"recipe.sft_loss_weight": 0.1, "recipe.sft_dataset": str(demos)})
    with pytest.raises(ConfigError, match="recipe.sft_loss_weight"):
        load_config("libero_tiny", {"recipe.sft_loss_weight": -0.1})


def pi_cfg(demos: Path, weight: float, *extra: str):
    return load_config(
        "pi05_smoke",
        [
            f"env.camera_size={CAMERA}",
            "env.control_mode=absolute",  # π trained on pirl's demonstrations acts on absolute targets
            f"recipe.sft_loss_weight={weight}",
            f"recipe.sft_dataset={demos}",
            "recipe.sft_batch_size=4",
            "recipe.update_epochs=1",
            "recipe.drift_probe_states=0",
            *extra,
        ],
    )


def test_pi05_cotrains_with_its_own_loss_and_demo_processor(demos: Path) -> None:
    """The term for π is LeRobot's PI05Policy.forward on the family's demo batch (8-dim LIBERO state,
    rotated wrist view, absolute actions); its gradient reaches the action expert and it moves
    the update."""
    trainer = build(pi_cfg(demos, 0.5))
    adapter = trainer.actor_critic.adapter
    loss, _ = trainer.sft.loss(adapter, update_index=0, step=0)
    assert loss.item() > 0 and torch.isfinite(loss)
    loss.backward()
    expert = adapter.policy.model.paligemma_with_expert.gemma_expert
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in expert.parameters())
    adapter.zero_grad(set_to_none=True)
    metrics = trainer.update(rollout_batch(trainer))
    assert metrics["sft_loss"] > 0


def test_pi_cotraining_refuses_a_relative_run_and_an_old_dataset(demos: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env.control_mode"):
        build(pi_cfg(demos, 0.1, "env.control_mode=relative"))
    old = write_synthetic_demos(tmp_path / "old", camera_size=CAMERA, libero_state=False)
    with pytest.raises(ConfigError, match="recipe.sft_dataset"):
        build(pi_cfg(old, 0.1))
