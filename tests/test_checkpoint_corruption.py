"""Unreadable checkpoints: exit 4 with the path, what is wrong and the newest complete checkpoint
that would work; nothing is overwritten."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pirl_core.checkpoints import layout, resume
from pirl_core.errors import CheckpointUnreadableError, ConfigError, ExitCode
from tests.checkpoint_helpers import SMALL_TOY, make_trainer, saved_run, tree_digest
from tests.e2e_helpers import flags_of, run_module


def _fix_manifest(ckpt: Path, rel: str) -> None:
    """Make the manifest agree with a tampered file, so a deeper check has to find the damage."""
    path = ckpt / "training_state" / "training_step.json"
    record = json.loads(path.read_text())
    record["files"][rel] = (ckpt / rel).stat().st_size
    path.write_text(json.dumps(record))


def _remove(rel: str) -> Callable[[Path], None]:
    return lambda ckpt: (ckpt / rel).unlink()


def _truncate(rel: str, keep_manifest: bool) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        path = ckpt / rel
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        if keep_manifest:
            _fix_manifest(ckpt, rel)

    return damage


def _bad_json(rel: str) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        path = ckpt / rel
        data = path.read_bytes()
        path.write_bytes(b"X" + data[1:])  # same size: only parsing can tell

    return damage


CASES = {
    "missing_file": (
        _remove("training_state/rng_state.safetensors"),
        "training_state/rng_state.safetensors is missing",
    ),
    "missing_optimizer": (
        _remove("training_state/value/optimizer_state.safetensors"),
        "training_state/value/optimizer_state.safetensors is missing",
    ),
    "missing_manifest": (
        _remove("training_state/training_step.json"),
        "training_state/training_step.json is missing",
    ),
    "truncated_weights": (
        _truncate("pretrained_model/model.safetensors", keep_manifest=False),
        "pretrained_model/model.safetensors has",
    ),
    "truncated_safetensors_header_check": (
        _truncate("pretrained_model/rl_heads.safetensors", keep_manifest=True),
        "pretrained_model/rl_heads.safetensors is truncated",
    ),
    "bad_json_config": (
        _bad_json("pretrained_model/train_config.json"),
        "train_config.json is not valid JSON",
    ),
    "bad_json_param_groups": (
        _bad_json("training_state/policy/optimizer_param_groups.json"),
        "optimizer_param_groups.json is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_newest_checkpoint_exits_4_naming_the_older_one(tmp_path: Path, case: str) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    damage, expected = CASES[case]
    newest, older = layout.step_dir(cfg.output_dir, 2), layout.step_dir(cfg.output_dir, 1)
    damage(newest)
    digest = tree_digest(tmp_path)
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.prepare_run(cfg, resume=True)
    err = info.value
    assert err.exit_code == ExitCode.CHECKPOINT_UNREADABLE == 4
    line = err.line()
    assert str(newest) in line and expected in line
    assert f"--resume-from {older}" in line
    assert tree_digest(tmp_path) == digest


def test_dangling_last_exits_4(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    shutil.rmtree(layout.step_dir(cfg.output_dir, 2))
    digest = tree_digest(tmp_path)
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.prepare_run(cfg, resume=True)
    line = info.value.line()
    assert "checkpoints/last points to 000002, which does not exist" in line
    assert f"--resume-from {layout.step_dir(cfg.output_dir, 1)}" in line
    assert tree_digest(tmp_path) == digest


def test_explicit_resume_from_a_damaged_checkpoint_exits_4(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1,))
    only = layout.step_dir(cfg.output_dir, 1)
    _bad_json("pretrained_model/config.json")(only)
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.prepare_run(cfg, resume=True, resume_from=str(only))
    assert "config.json is not valid JSON" in info.value.line()
    assert "no complete checkpoint to fall back on: start a new output dir" in info.value.line()


@pytest.mark.parametrize("where", ["rl_heads", "optimizer"])
def test_wrong_shapes_exit_4_before_anything_is_loaded(tmp_path: Path, where: str) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    ckpt = layout.step_dir(cfg.output_dir, 2)
    if where == "rl_heads":
        rel = "pretrained_model/rl_heads.safetensors"
        from pirl_core.checkpoints.verify import safetensors_header

        meta = safetensors_header(ckpt / rel, rel)["__metadata__"]
        tensors = load_file(ckpt / rel)
        tensors["value_head.net.0.weight"] = torch.zeros(7, 3)
        save_file(tensors, ckpt / rel, metadata=meta)
        expected = "wrong shapes: pretrained_model/rl_heads.safetensors 'value_head.net.0.weight' is [7, 3]"
    else:
        rel = "training_state/policy/optimizer_state.safetensors"
        tensors = load_file(ckpt / rel)
        key = next(k for k in tensors if k.endswith("/exp_avg") and tensors[k].ndim == 2)
        tensors[key] = torch.zeros(5, 5)
        save_file(tensors, ckpt / rel)
        expected = f"wrong shapes: {rel} '{key}' is [5, 5]"
    _fix_manifest(ckpt, rel)

    plan = resume.prepare_run(cfg, resume=True)  # structurally fine
    fresh = make_trainer(cfg)
    before = {k: v.clone() for k, v in fresh.actor_critic.state_dict().items()}
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.restore(plan, fresh)
    line = info.value.line()
    assert expected in line, line
    assert f"--resume-from {layout.step_dir(cfg.output_dir, 1)}" in line
    after = fresh.actor_critic.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not opt.state for opt in fresh.optimizers.values())


def test_learner_process_exits_4_with_one_actionable_line(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    _truncate("pretrained_model/model.safetensors", keep_manifest=False)(layout.step_dir(cfg.output_dir, 2))
    digest = tree_digest(tmp_path)
    proc = run_module(
        "pirl_core.learner",
        *("--profile", "toy", *flags_of(SMALL_TOY), f"--output_dir={cfg.output_dir}", "--resume"),
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr[-2000:]
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: checkpoint ") and "model.safetensors has" in first
    assert f"--resume-from {layout.step_dir(cfg.output_dir, 1)}" in first
    assert tree_digest(tmp_path) == digest


def test_explicit_dangling_last_names_the_fallback(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    shutil.rmtree(layout.step_dir(cfg.output_dir, 2))
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.prepare_run(cfg, resume=True, resume_from=str(layout.last_link(cfg.output_dir)))
    assert "dangling link" in info.value.line()
    assert f"--resume-from {layout.step_dir(cfg.output_dir, 1)}" in info.value.line()


def test_the_fallback_advice_for_a_damaged_newest_checkpoint_works(tmp_path: Path) -> None:
    """Following the exit-4 line must lead to a run that starts. Resuming the older checkpoint in
    the same output dir collides with the damaged newer one (exit 2, by design: it would never be
    overwritten), so the advice is to fork into a new output dir."""
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    newest, older = layout.step_dir(cfg.output_dir, 2), layout.step_dir(cfg.output_dir, 1)
    _truncate("pretrained_model/model.safetensors", keep_manifest=False)(newest)
    with pytest.raises(CheckpointUnreadableError) as info:
        resume.prepare_run(cfg, resume=True)
    line = info.value.line()
    assert f"--output_dir=NEW --resume-from {older}" in line, line
    with pytest.raises(ConfigError):  # the same-dir resume the old advice suggested
        resume.prepare_run(cfg, resume=True, resume_from=str(older))
    forked = dataclasses.replace(cfg, output_dir=str(tmp_path / "fork"))
    plan = resume.prepare_run(forked, resume=True, resume_from=str(older))
    assert plan is not None and plan.step == 1
