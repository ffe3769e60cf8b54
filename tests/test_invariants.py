"""Bad numbers never train and never reach disk (issue 8, findings 2 and 3).

* An update whose first-minibatch ratio check exceeds ``recipe.ratio_tolerance`` stops before
  its first optimizer step (exit 5, the likely causes named), and nothing of it is saved.
* A NaN/inf loss, gradient norm or parameter stops the update (exit 6); a checkpoint of
  non-finite tensors is refused, so ``last`` keeps pointing to the last good one.

The learner-level tests run the real ``Learner.run`` with the real trainer and checkpoint writer;
only gRPC is replaced by :class:`LoopbackServer`, which collects rollouts with the actor's own code
(``actor_critic_for`` + ``version_rounds``) — the transport itself is tested in test_transport_grpc.py.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from pirl_core.checkpoints import layout, resume
from pirl_core.config import RunConfig, load_config
from pirl_core.envs.factory import make_env
from pirl_core.errors import DivergedError, ExitCode, RatioCheckError
from pirl_core.learner import Learner, Progress, build_trainer
from pirl_core.recipe.actor_critic import actor_critic_for
from pirl_core.rollout import collect_rollouts
from pirl_core.rollout_plan import version_rounds
from pirl_core.telemetry import Telemetry
from pirl_core.transport.push import load_parameters, parameters_to_tensors
from pirl_core.transport.round_header import RoundHeader
from tests.inprocess.local_loop import build_loop


def toy_cfg(tmp_path: Path, **overrides: Any) -> RunConfig:
    base = {
        "output_dir": str(tmp_path / "run"),
        "learner.updates": 3,
        "learner.episodes_per_update": 16,
        "checkpoint.every": 1,
        **overrides,
    }
    return load_config("toy", base)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class LoopbackServer:
    """The calls ``Learner.run`` makes, answered in-process by the actor's own collection code.

    From ``bad_from`` on, rollouts come from ``bad_actor_cfg`` (a mismatched actor) or have their
    rewards replaced by NaN (a broken env), so a run can fail after a good checkpoint exists.
    """

    def __init__(self, cfg: RunConfig, bad_from: int, bad_actor_cfg: RunConfig | None = None) -> None:
        self.cfg = cfg
        self.good = actor_critic_for(cfg)
        self.bad = actor_critic_for(bad_actor_cfg) if bad_actor_cfg is not None else None
        self.env = make_env(cfg)
        self.bad_from = bad_from
        self.queue: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = []
        self.published: dict[int, dict[str, torch.Tensor]] = {}
        self.epoch = "loopback"
        self.rejected_payloads = 0

    def publish_parameters(self, version: int, tensors: dict[str, torch.Tensor], header: dict) -> dict:
        self.published[version] = {k: v.clone() for k, v in tensors.items()}
        bad = version >= self.bad_from
        policy = self.bad if bad and self.bad is not None else self.good
        load_parameters(policy, tensors)
        policy.adapter.set_rl_mode()
        for round_index, (batch, stats, _) in enumerate(
            version_rounds(self.cfg, self.env, policy, 0, version)
        ):
            if bad and self.bad is None:
                batch.reward = torch.full_like(batch.reward, math.nan)
            header = RoundHeader.for_round(version, 0, round_index, stats, self.epoch)
            self.queue.append((header.to_wire(), batch.to_tensors()))
        return {}

    def get_rollout(self, timeout: float | None = None):
        return self.queue.pop(0) if self.queue else None

    def connected_actors(self) -> list:
        return []

    def last_contact(self, actor_id) -> float | None:
        return None  # no heartbeats: only rounds count as contact

    def actor_progress(self, actor_id):
        return None


def run_until_error(cfg: RunConfig, server: LoopbackServer, error: type[Exception]) -> tuple[Learner, Any]:
    trainer = build_trainer(cfg)
    learner = Learner(cfg, Telemetry(cfg.output_dir, "learner"), Progress(), trainer, server)
    with pytest.raises(error) as info:
        learner.run()
    server.env.close()
    return learner, info.value


def test_ratio_above_tolerance_stops_before_the_step_and_saves_nothing(tmp_path: Path) -> None:
    # Issue 8's reproduction: the actor samples with other sigma bounds than the learner scores.
    cfg = toy_cfg(tmp_path)
    actor_cfg = toy_cfg(tmp_path, **{"recipe.sigma_max": 0.5})
    server = LoopbackServer(cfg, bad_from=1, bad_actor_cfg=actor_cfg)
    learner, err = run_until_error(cfg, server, RatioCheckError)

    assert err.exit_code == ExitCode.TRANSPORT == 5
    line = err.line()
    assert f"recipe.ratio_tolerance={cfg.recipe.ratio_tolerance:g}" in line
    for cause in ("different settings or pirl versions", "dropout", "precision"):
        assert cause in line
    assert learner.progress.step == 1  # update 2 was refused
    # Not one optimizer step of the refused update: the parameters are those pushed for version 1.
    assert same(parameters_now(learner), server.published[1])
    assert [p.name for _, p in layout.step_dirs(cfg.output_path)] == ["000001"]
    assert os.readlink(layout.last_link(cfg.output_path)) == "000001"


def parameters_now(learner: Learner) -> dict[str, torch.Tensor]:
    """The learner's parameters in the form a push carries them (trainable tensors + fingerprint)."""
    return parameters_to_tensors(learner.trainer.actor_critic)


def test_matching_actor_passes_the_ratio_check(tmp_path: Path) -> None:
    cfg = toy_cfg(tmp_path, **{"learner.updates": 2})
    server = LoopbackServer(cfg, bad_from=10**9)
    learner = Learner(cfg, Telemetry(cfg.output_dir, "learner"), Progress(), build_trainer(cfg), server)
    learner.run()
    server.env.close()
    assert learner.progress.step == 2
    assert os.readlink(layout.last_link(cfg.output_path)) == "000002"


def test_nan_rewards_stop_the_update_before_any_step(tmp_path: Path) -> None:
    cfg = toy_cfg(tmp_path)
    server = LoopbackServer(cfg, bad_from=1)
    learner, err = run_until_error(cfg, server, DivergedError)
    assert err.exit_code == ExitCode.DIVERGED == 6
    assert "the loss is nan" in err.line()
    assert same(parameters_now(learner), server.published[1])
    assert [p.name for _, p in layout.step_dirs(cfg.output_path)] == ["000001"]


@pytest.mark.parametrize(
    ("field", "value"), [("lr", math.inf), ("entropy_coef", math.nan), ("sigma_max", math.inf)]
)
def test_non_finite_settings_that_slip_past_validation_never_train_or_save(
    tmp_path: Path, field: str, value: float
) -> None:
    """Issue 8: --recipe.lr=inf / entropy_coef=nan / sigma_max=inf ran to exit 0 and saved NaNs.
    validate() now refuses them (test_config.py); this is the second line of defence for a value
    that reaches the trainer anyway (an old checkpoint's config, a programmatic caller)."""
    cfg = toy_cfg(tmp_path)
    setattr(cfg.recipe, field, value)
    state = build_loop(cfg)
    batch, _, _ = collect_rollouts(
        state.env, state.actor_critic, list(range(16)), torch.Generator().manual_seed(0), 4
    )
    before = snapshot(state.actor_critic)
    with pytest.raises(DivergedError):
        state.trainer.update(batch)
    if field == "lr":  # AdamW stepped to inf/NaN parameters: that state never reaches disk
        with pytest.raises(DivergedError) as info:
            resume.save(cfg, 1, state.trainer, {"step": 1, "version": 1})
        assert "checkpoint not written" in info.value.line()
    else:  # a NaN loss or gradient norm is caught before the step: nothing moved
        assert same(snapshot(state.actor_critic), before)
    assert not layout.step_dirs(cfg.output_path)
    state.env.close()


def test_checkpoint_of_non_finite_parameters_is_refused_and_last_is_kept(tmp_path: Path) -> None:
    cfg = toy_cfg(tmp_path)
    trainer = build_trainer(cfg)
    resume.save(cfg, 1, trainer, {"step": 1, "version": 1})
    with torch.no_grad():
        next(trainer.actor_critic.parameters())[0].fill_(math.nan)
    with pytest.raises(DivergedError) as info:
        resume.save(cfg, 2, trainer, {"step": 2, "version": 2})
    assert "checkpoint not written" in info.value.line() and "last" in info.value.line()
    assert [p.name for _, p in layout.step_dirs(cfg.output_path)] == ["000001"]
    assert os.readlink(layout.last_link(cfg.output_path)) == "000001"


def test_first_nonfinite_names_the_first_bad_tensor_and_ignores_integers() -> None:
    from pirl_core.recipe.numerics import first_nonfinite

    ok = [("a", torch.zeros(3)), ("steps", torch.tensor([2**40])), ("empty", torch.zeros(0))]
    assert first_nonfinite(ok) is None
    assert first_nonfinite([*ok, ("b", torch.tensor([1.0, math.nan])), ("c", torch.tensor(math.inf))]) == "b"
    assert first_nonfinite([("c", torch.tensor([-math.inf])), *ok]) == "c"
