"""Checkpoint store and the learner API on a real toy trainer: layout, bitwise round trip,
output-dir rules, retention and leftovers."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pirl_core.checkpoints import layout, resume
from pirl_core.errors import ConfigError, ExitCode
from tests.checkpoint_helpers import (
    assert_bitwise_equal,
    counters,
    global_rng_state,
    make_trainer,
    saved_run,
    snapshot,
    toy_config,
    train,
    tree_digest,
)


def test_layout_is_lerobots_with_heads_beside_the_weights(tmp_path: Path) -> None:
    cfg, _trainer = saved_run(tmp_path, steps=(1, 2))
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["000001", "000002", "last"]
    assert os.readlink(root / "last") == "000002"  # relative, as LeRobot's update_last_checkpoint
    ckpt = root / "000002"
    pm, ts = ckpt / "pretrained_model", ckpt / "training_state"
    for name in ("config.json", "model.safetensors", "train_config.json", "rl_heads.safetensors"):
        assert (pm / name).is_file(), name
    for name in ("policy", "value", "noise"):
        assert (ts / name / "optimizer_state.safetensors").is_file(), name
        assert (ts / name / "optimizer_param_groups.json").is_file(), name
    assert (ts / "rng_state.safetensors").is_file()
    assert json.loads((pm / "train_config.json").read_text()) == cfg.to_dict()

    record = json.loads((ts / "training_step.json").read_text())
    assert record["step"] == 2 and record["policy_version"] == 2
    assert record["samples"] == 48 and record["episodes"] == 8
    assert record["counters"] == counters(2)
    assert record["optimizers"] == ["noise", "policy", "value"]
    listed = {str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file()} - {
        "training_state/training_step.json"
    }
    assert set(record["files"]) == listed

    # LeRobot's own reader understands the step, and the heads are not in model.safetensors
    from lerobot.utils.train_utils import load_training_step
    from safetensors import safe_open

    assert load_training_step(ts) == 2
    with safe_open(pm / "model.safetensors", "pt") as f:
        assert not any(k.startswith(("value_head", "noise_head")) for k in f.keys())  # noqa: SIM118
    with safe_open(pm / "rl_heads.safetensors", "pt") as f:
        keys = set(f.keys())  # noqa: SIM118
    assert any(k.startswith("value_head.") for k in keys) and any(k.startswith("noise_head.") for k in keys)
    assert not list(root.glob(".*")), "no temporary debris after a clean save"


def test_round_trip_is_bitwise_and_training_continues_identically(tmp_path: Path) -> None:
    cfg, trainer = saved_run(tmp_path, steps=(2,))
    before = snapshot(trainer)
    rng_before = global_rng_state()

    # a fresh process-like state: new trainer, scrambled global RNGs
    fresh = make_trainer(cfg)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    fresh.generator.manual_seed(99)
    plan = resume.prepare_run(cfg, resume=True, resume_from=None)
    assert plan is not None and plan.step == 2 and plan.report.rows == []
    state = resume.restore(plan, fresh)

    assert (state.step, state.version, state.counters) == (2, 2, counters(2))
    assert_bitwise_equal(before, snapshot(fresh))
    rng_after = global_rng_state()
    assert rng_after[0] == rng_before[0] and rng_after[1] == rng_before[1]
    assert torch.equal(rng_after[2], rng_before[2])
    for name, opt in trainer.optimizers.items():
        assert fresh.optimizers[name].state_dict()["param_groups"] == opt.state_dict()["param_groups"]

    # and both continue to the same tensors
    train(cfg, trainer, range(2, 4))
    train(cfg, fresh, range(2, 4))
    assert_bitwise_equal(snapshot(trainer), snapshot(fresh))


def test_new_run_into_used_output_dir_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1,))
    digest = tree_digest(tmp_path)
    with pytest.raises(ConfigError) as info:
        resume.prepare_run(cfg, resume=False)
    assert info.value.exit_code == ExitCode.USAGE
    assert "--resume" in info.value.line() and "another --output_dir" in info.value.line()
    assert tree_digest(tmp_path) == digest


def test_resume_with_nothing_to_resume_exits_2(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path / "empty")
    with pytest.raises(ConfigError) as info:
        resume.prepare_run(cfg, resume=True)
    assert "nothing to resume" in info.value.line()
    assert not (tmp_path / "empty").exists()


def test_resume_prefers_a_finished_checkpoint_newer_than_last(tmp_path: Path) -> None:
    """Writer killed after renaming 000002 into place but before switching ``last``."""
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    link = layout.last_link(cfg.output_dir)
    link.unlink()
    link.symlink_to("000001")
    plan = resume.prepare_run(cfg, resume=True)
    assert plan is not None and plan.step == 2
    assert os.readlink(link) == "000002"  # repaired once everything validated


def test_resume_from_older_checkpoint_in_same_dir_is_refused(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    digest = tree_digest(tmp_path)
    old = str(layout.step_dir(cfg.output_dir, 1))
    with pytest.raises(ConfigError) as info:
        resume.prepare_run(cfg, resume=True, resume_from=old)
    assert "[2]" in info.value.line() and "--output_dir=NEW" in info.value.line()
    assert tree_digest(tmp_path) == digest


def test_fork_into_a_new_output_dir_restores_and_saves_there(tmp_path: Path) -> None:
    cfg, trainer = saved_run(tmp_path, steps=(1, 2))
    forked = toy_config(tmp_path / "fork")
    plan = resume.prepare_run(forked, resume=True, resume_from=str(layout.step_dir(cfg.output_dir, 1)))
    assert plan is not None and plan.step == 1
    assert [r.field for r in plan.report.rows] == ["output_dir"] and plan.report.ok
    fresh = make_trainer(forked)
    resume.restore(plan, fresh)
    path = resume.save(forked, 2, fresh, counters(2))
    assert path == layout.step_dir(forked.output_dir, 2)
    assert os.readlink(layout.last_link(forked.output_dir)) == "000002"


def test_saving_an_existing_step_is_a_no_op(tmp_path: Path) -> None:
    cfg, trainer = saved_run(tmp_path, steps=(1,))
    digest = tree_digest(tmp_path)
    train(cfg, trainer, range(1, 2))
    assert resume.save(cfg, 1, trainer, counters(1)) == layout.step_dir(cfg.output_dir, 1)
    assert tree_digest(tmp_path) == digest


def test_retention_keeps_newest_and_never_the_last_target(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2, 3, 4), **{"checkpoint.keep_last": 2})
    assert [s for s, _ in layout.step_dirs(cfg.output_dir)] == [3, 4]
    # ``last`` pointing at an old checkpoint protects it
    cfg2, _ = saved_run(tmp_path / "b", steps=(1, 2, 3))
    link = layout.last_link(cfg2.output_dir)
    link.unlink()
    link.symlink_to("000001")
    removed = resume.apply_retention(cfg2.output_path, keep_last=1)
    assert [p.name for p in removed] == ["000002"]
    assert [s for s, _ in layout.step_dirs(cfg2.output_dir)] == [1, 3]
    assert not list(layout.checkpoints_root(cfg2.output_dir).glob(".*"))


def test_leftovers_are_ignored_then_cleaned_on_the_next_start(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1,))
    root = layout.checkpoints_root(cfg.output_dir)
    dead_pid = 2**22 + 12345  # above pid_max: never alive
    debris = [root / f".tmp-000002-{dead_pid}", root / f".del-000000-{dead_pid}"]
    for d in debris:
        (d / "pretrained_model").mkdir(parents=True)
        (d / "pretrained_model" / "model.safetensors").write_bytes(b"partial")
    (root / f".last-{dead_pid}").symlink_to("000002")
    assert [s for s, _ in layout.step_dirs(cfg.output_dir)] == [1]  # ignored by readers
    plan = resume.prepare_run(cfg, resume=True)
    assert plan is not None and plan.step == 1
    assert sorted(p.name for p in root.iterdir()) == ["000001", "last"]


def test_changed_learning_rate_takes_effect_on_resume(tmp_path: Path) -> None:
    cfg, trainer = saved_run(tmp_path, steps=(1,))
    new_cfg = toy_config(cfg.output_path, **{"recipe.lr": 1e-4})
    plan = resume.prepare_run(new_cfg, resume=True)
    assert plan is not None and [r.field for r in plan.report.changed] == ["recipe.lr"]
    fresh = make_trainer(new_cfg)
    resume.restore(plan, fresh)
    assert fresh.optimizers["policy"].param_groups[0]["lr"] == 1e-4
    assert fresh.optimizers["value"].param_groups[0]["lr"] == cfg.recipe.value_lr
    # moments still come from the checkpoint
    saved = trainer.optimizers["policy"].state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh.optimizers["policy"].state_dict()["state"][0]["exp_avg"], saved)


def test_saving_again_after_an_interrupted_last_switch_finishes_the_switch(tmp_path: Path) -> None:
    """Ctrl-C between the rename and the ``last`` switch: the learner's interrupt handler saves the
    same step again, which must not rewrite it but must point ``last`` at it."""
    cfg, trainer = saved_run(tmp_path, steps=(1, 2))
    link = layout.last_link(cfg.output_dir)
    link.unlink()
    link.symlink_to("000001")
    before = tree_digest(layout.step_dir(cfg.output_dir, 2))
    resume.save(cfg, 2, trainer, counters(2))
    assert os.readlink(link) == "000002"
    assert tree_digest(layout.step_dir(cfg.output_dir, 2)) == before
