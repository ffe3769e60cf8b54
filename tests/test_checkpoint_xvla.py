"""X-VLA checkpoints: ``pretrained_model/`` loads with LeRobot's own ``XVLAPolicy.from_pretrained`` and
acts exactly like the in-memory policy; why the RL heads live beside ``model.safetensors``; and a
full bitwise restore of an X-VLA trainer (policy, heads, optimizers, generator)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pirl_core.checkpoints import layout, resume
from pirl_core.config import RunConfig, load_config
from tests.checkpoint_helpers import assert_bitwise_equal, counters, make_trainer, snapshot
from tests.test_xvla_adapter import raw_obs


def _gradient_step(trainer, obs: dict[str, torch.Tensor]) -> None:
    """One real optimizer step on every group, so optimizer state exists for all parameters."""
    ac = trainer.actor_critic
    out = ac.act(obs, torch.Generator().manual_seed(3))
    logp, _entropy, value = ac.evaluate(obs, out.chain, out.sde_step)
    loss = -logp.mean() + (value - 1.0).pow(2).mean()
    for opt in trainer.optimizers.values():
        opt.zero_grad()
    loss.backward()
    for opt in trainer.optimizers.values():
        opt.step()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    cfg: RunConfig = load_config("libero_tiny", {"output_dir": str(tmp_path_factory.mktemp("xvla") / "run")})
    trainer = make_trainer(cfg)
    obs = trainer.actor_critic.adapter.prepare_obs(raw_obs(batch=2, seed=5, size=64))
    _gradient_step(trainer, obs)
    path = resume.save(cfg, 1, trainer, counters(1))
    return cfg, trainer, obs, path


def test_pretrained_model_loads_with_lerobot_and_acts_identically(saved) -> None:
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    _cfg, trainer, obs, path = saved
    in_memory = trainer.actor_critic.adapter.policy
    loaded = XVLAPolicy.from_pretrained(str(path / "pretrained_model"))  # strict=True inside
    sd_a, sd_b = in_memory.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)

    # LeRobot's own sampler, same inputs and same noise (seeded global RNG)
    with torch.no_grad():
        torch.manual_seed(11)
        a = in_memory.predict_action_chunk(obs)
        torch.manual_seed(11)
        b = loaded.predict_action_chunk(obs)
    assert torch.equal(a, b)

    # pirl's sampler through the actor-critic, same inputs and same generator
    ac = trainer.actor_critic
    out_a = ac.act(obs, torch.Generator().manual_seed(12))
    ac.adapter.policy = loaded
    try:
        out_b = ac.act(obs, torch.Generator().manual_seed(12))
    finally:
        ac.adapter.policy = in_memory
    assert torch.equal(out_a.chain, out_b.chain) and torch.equal(out_a.logp, out_b.logp)


def test_extra_keys_in_model_safetensors_would_break_lerobot_loading(saved, tmp_path: Path) -> None:
    """The reason ``rl_heads.safetensors`` is a sibling file: XVLAPolicy.from_pretrained loads with
    ``strict=True``, so value/noise-head keys inside model.safetensors make LeRobot refuse it."""
    from lerobot.policies.xvla.modeling_xvla import XVLAPolicy

    _cfg, _trainer, _obs, path = saved
    copy = tmp_path / "pretrained_model"
    shutil.copytree(path / "pretrained_model", copy)
    weights = load_file(copy / "model.safetensors")
    weights.update(load_file(copy / "rl_heads.safetensors"))
    save_file(weights, copy / "model.safetensors")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        XVLAPolicy.from_pretrained(str(copy))
    XVLAPolicy.from_pretrained(str(path / "pretrained_model"))  # the real layout loads


def test_xvla_trainer_restores_bitwise(saved) -> None:
    cfg, trainer, obs, path = saved
    meta = resume.prepare_run(cfg, resume=True).info.rl_heads_metadata
    assert meta["base_module"] == "adapter.policy"  # X-VLA weights in model.safetensors only

    fresh = make_trainer(cfg)
    plan = resume.prepare_run(cfg, resume=True)
    assert plan is not None and plan.path == path
    state = resume.restore(plan, fresh)
    assert state.step == 1 and state.counters == counters(1)
    assert_bitwise_equal(snapshot(trainer), snapshot(fresh))
    assert all(len(opt.state) > 0 for opt in fresh.optimizers.values())

    # and the next step is identical too
    _gradient_step(trainer, obs)
    _gradient_step(fresh, obs)
    assert_bitwise_equal(snapshot(trainer), snapshot(fresh))
    assert layout.last_pointer(cfg.output_dir) == path.resolve()
