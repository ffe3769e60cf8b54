"""Resume refusal: every identity field is fatal (exit 3, a table row with both values, nothing
written); every tunable is reported as changed and allowed; no config field is left unclassified."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file, save_file

from pirl_core.checkpoints import identity, layout, resume
from pirl_core.config import RunConfig, parse_override
from pirl_core.errors import ExitCode, ResumeMismatchError
from tests.checkpoint_helpers import make_trainer, saved_run, toy_config, tree_digest
from tests.e2e_helpers import ROOT, flags_of, run_module

# One changed value per fatal field (plus what config validation needs alongside it).
FATAL_CHANGES: dict[str, dict[str, Any]] = {
    "env.type": {"env.type": "libero", "env.suite": "libero_10"},
    "env.suite": {"env.suite": "point_reach"},
    "env.task_ids": {"env.task_ids": [0, 1]},
    "env.control_mode": {"env.control_mode": "relative"},
    "policy.type": {"policy.type": "xvla"},
    "policy.size": {"policy.size": "pretrained", "policy.pretrained_path": "/models/xvla"},
    "policy.pretrained_path": {"policy.pretrained_path": "/models/other"},
    "policy.tokenizer": {"policy.tokenizer": "facebook/bart-large"},
    "policy.chunk_size": {"policy.chunk_size": 8},
    "policy.action_steps": {"policy.action_steps": 2},
    "policy.hidden_dim": {"policy.hidden_dim": 64},
    "recipe.method": {"recipe.method": "flow_sde"},
    "recipe.algorithm": {"recipe.algorithm": "grpo", "recipe.grpo_group_size": 2},
    "recipe.denoise_steps": {"recipe.denoise_steps": 8},
    "recipe.critic": {"recipe.critic": "action_head"},
    "recipe.train_vlm": {
        "recipe.train_vlm": False,
        "policy.type": "xvla",
        "env.type": "libero",
        "env.suite": "libero_10",
    },
}

TUNABLE_CHANGES: dict[str, Any] = {
    "profile": "toy-variant",
    "seed": 7,
    "output_dir": None,  # filled per test: a fresh dir (a fork)
    "env.episode_length": 9,
    "env.n_envs": 2,
    "env.hard_reset": False,
    "env.camera_size": 32,  # the toy env has no camera (fatal on LIBERO: see the test below)
    "env.workers": 2,
    "env.render_every_step": True,
    "policy.device": "cuda",
    "recipe.sigma_min": 0.05,
    "recipe.sigma_max": 0.2,
    "recipe.sde_noise_level": 0.3,
    "recipe.include_prior": True,
    "recipe.logprob_action_reduction": "mean",
    "recipe.logprob_step_reduction": "sum",  # the toy profile uses "mean"
    "recipe.clip": 0.1,
    "recipe.advantage_mode": "success_only",
    "recipe.value_clip": 0.3,
    "recipe.gamma": 0.9,
    "recipe.lam": 0.9,
    "recipe.update_epochs": 3,
    "recipe.minibatches": 1,
    "recipe.entropy_coef": 0.01,
    "recipe.grad_clip": 1.0,
    "recipe.normalize_advantages": False,
    "recipe.lr": 1e-4,
    "recipe.value_lr": 1e-4,
    "recipe.noise_lr": 1e-4,
    "recipe.critic_detach": True,  # the toy profile uses false
    "recipe.grpo_group_size": 4,
    "recipe.grpo_filter": False,  # the toy profile uses true
    "recipe.loss_aggregation": "episode",
    "recipe.ratio_tolerance": 1e-2,
    "recipe.micro_batch_size": 4,
    "recipe.recompute_logprobs": True,
    "recipe.logprob_tolerance": 0.5,
    "recipe.target_kl": 0.02,
    "recipe.lr_warmup_updates": 5,
    "recipe.grpo_filter_range": [0.2, 0.8],
    "recipe.critic_warmup_updates": 2,
    "recipe.sft_dataset": "outputs/lift/demos",  # unused while recipe.sft_loss_weight is 0
    "recipe.sft_batch_size": 8,
    "recipe.drift_probe_states": 8,
    "policy.dtype": "bfloat16",
    "policy.gradient_checkpointing": True,
    "learner.host": "0.0.0.0",
    "learner.port": 50999,
    "learner.updates": 500,
    "learner.episodes_per_update": 8,
    "learner.max_staleness": 1,
    "learner.actor_timeout_s": 30.0,
    "learner.auth_token": "s3cret",
    "learner.auth_token_file": str(ROOT / "pyproject.toml"),
    "learner.run_id": "shared-run",
    "learner.tls_cert": str(ROOT / "pyproject.toml"),
    "learner.tls_key": str(ROOT / "pyproject.toml"),
    "learner.tls_ca": str(ROOT / "pyproject.toml"),
    "learner.max_payload_mb": 64.0,
    "learner.nproc": 2,
    "learner.strategy": "fsdp",
    "learner.collective_timeout_s": 60.0,
    "actor.n_actors": 2,
    "actor.connect_timeout_s": 30.0,
    "actor.progress_every_s": 10.0,
    "checkpoint.every": 5,
    "checkpoint.keep_last": 3,
    "telemetry.log_every": 10,
    "telemetry.wandb": "offline",
    "telemetry.wandb_project": "pirl-other",
    "telemetry.wandb_entity": "lab",
    "telemetry.wandb_run_name": "renamed",
    "telemetry.wandb_tags": ["sweep-1"],
    "telemetry.tensorboard": True,
    "eval.every": 10,
    "eval.episodes_per_task": 3,
    "env.train_init_states": "0-29",
    "eval.val_init_states": "30-39",
    "eval.test_init_states": "40-49",
}

# Tunables whose changed value needs a run another setting allows (validation): each changes on
# resume of a saved run built with the base overrides (see the test below).
CONDITIONAL_TUNABLES: dict[str, tuple[Any, dict[str, Any]]] = {
    # element ratios need learner.max_staleness = 0 (TUNABLE_CHANGES sets 1)
    "recipe.ratio_mode": ("element", {"recipe.method": "flow_sde"}),
    # per-step clips need Flow-SDE (a fatal field, so the saved run is Flow-SDE already)
    "recipe.clip_per_denoise_step": ([0.001, 0.003, 0.006, 0.01], {"recipe.method": "flow_sde"}),
    # the drift bound is measured in one learner process (TUNABLE_CHANGES sets learner.nproc 2)
    "recipe.max_action_drift_mm": (30.0, {"recipe.method": "flow_sde"}),
}

# Tunables no toy run can change (they need an X-VLA policy; policy.type is fatal): classified and
# round-tripped here; their effect is tested in tests/test_recipe_sft_cotrain.py.
XVLA_ONLY_TUNABLES: dict[str, Any] = {"recipe.sft_loss_weight": 0.1}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, Path]:
    base = tmp_path_factory.mktemp("identity")
    cfg, _ = saved_run(base, steps=(1,))
    return cfg, layout.step_dir(cfg.output_dir, 1)


def test_every_config_field_is_classified() -> None:
    fields = set(identity.config_fields())
    unclassified = fields - set(identity.FIELD_CLASSES)
    assert not unclassified, (
        f"declare these RunConfig fields with config.setting(..., resume=...): {sorted(unclassified)}"
    )
    assert not set(identity.FIELD_CLASSES) - fields, "stale entries in FIELD_CLASSES"
    # conditionally fatal fields (FATAL_ONLY_IF) are tunables on the toy profile these tests use
    fatal = {f for f, s in identity.FIELD_CLASSES.items() if s == identity.FATAL} - set(
        identity.FATAL_ONLY_IF
    )
    assert set(FATAL_CHANGES) == fatal, "give each fatal field a changed value in FATAL_CHANGES"
    assert set(TUNABLE_CHANGES) | set(CONDITIONAL_TUNABLES) | set(XVLA_ONLY_TUNABLES) == fields - fatal, (
        "give each tunable a changed value in TUNABLE_CHANGES (or CONDITIONAL_TUNABLES)"
    )


def test_fix_flags_round_trip_through_the_override_parser() -> None:
    values = {**{k: v for change in FATAL_CHANGES.values() for k, v in change.items()}, **TUNABLE_CHANGES}
    values.update({name: value for name, (value, _) in CONDITIONAL_TUNABLES.items()})
    values.update(XVLA_ONLY_TUNABLES)
    values.update({"output_dir": "/data/run 1", "policy.tokenizer": "", "learner.host": "true"})
    for name, value in values.items():
        if name == "profile":
            continue
        (arg,) = shlex.split(identity.flag(name, value))
        assert parse_override(arg) == (name, value), arg


@pytest.mark.parametrize("field", sorted(FATAL_CHANGES))
def test_fatal_field_refuses_with_its_row_and_writes_nothing(run, field: str) -> None:
    cfg, ckpt = run
    current = toy_config(cfg.output_path, **FATAL_CHANGES[field])
    saved_value = identity.flatten(cfg.to_dict())[field]
    new_value = identity.flatten(current.to_dict())[field]
    digest = tree_digest(cfg.output_path)
    with pytest.raises(ResumeMismatchError) as info:
        resume.prepare_run(current, resume=True)
    err = info.value
    assert err.exit_code == ExitCode.RESUME_MISMATCH == 3
    assert tree_digest(cfg.output_path) == digest
    rows = {r.field: r for r in err.report.rows}
    row = rows[field]
    assert (row.severity, row.checkpoint, row.current) == ("fatal", saved_value, new_value)
    assert row.fix.startswith(identity.flag(field, saved_value))
    table = err.detail
    line = next(ln for ln in table.splitlines() if ln.startswith(field + " "))
    assert identity.value_text(saved_value) in line and identity.value_text(new_value) in line
    assert field in err.line() and str(ckpt) in err.line()


def test_tunables_are_reported_as_changed_not_fatal(run, tmp_path: Path) -> None:
    cfg, ckpt = run
    changes = dict(TUNABLE_CHANGES, output_dir=str(tmp_path / "fork"))
    profile = changes.pop("profile")
    current = toy_config(Path(changes.pop("output_dir")), **changes)
    current.profile = profile
    plan = resume.prepare_run(current, resume=True, resume_from=str(ckpt))
    assert plan is not None and plan.report.ok
    assert {r.field for r in plan.report.rows} == set(TUNABLE_CHANGES)
    assert all(r.severity == "changed" and r.fix.startswith("allowed") for r in plan.report.rows)
    assert "s3cret" not in plan.report.to_json() and "s3cret" not in plan.report.format_table()


def test_conditional_tunables_are_reported_as_changed_not_fatal(tmp_path: Path) -> None:
    bases = {tuple(sorted(base.items())) for _, base in CONDITIONAL_TUNABLES.values()}
    for base in bases:
        fields = {n: v for n, (v, b) in CONDITIONAL_TUNABLES.items() if tuple(sorted(b.items())) == base}
        cfg, _ = saved_run(tmp_path / str(len(base)), steps=(1,), **dict(base))
        ckpt = layout.step_dir(cfg.output_dir, 1)
        current = toy_config(Path(cfg.output_dir), **dict(base), **fields)
        plan = resume.prepare_run(current, resume=True, resume_from=str(ckpt))
        assert plan is not None and plan.report.ok
        assert {r.field for r in plan.report.rows} == set(fields)
        assert all(r.severity == "changed" for r in plan.report.rows)


def test_table_and_json_for_the_console(run) -> None:
    cfg, ckpt = run
    current = toy_config(
        cfg.output_path, **{"recipe.denoise_steps": 8, "policy.chunk_size": 8, "recipe.lr": 1e-4}
    )
    with pytest.raises(ResumeMismatchError) as info:
        resume.prepare_run(current, resume=True)
    report = info.value.report
    lines = report.format_table().splitlines()
    assert lines[0].split() == [
        "field",
        "checkpoint",
        "(expected)",
        "current",
        "severity",
        "how",
        "to",
        "fix",
    ]
    assert [ln.split()[0] for ln in lines[2:]] == ["policy.chunk_size", "recipe.denoise_steps", "recipe.lr"]
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["step"] == 1 and data["checkpoint"] == str(ckpt)
    by_field = {r["field"]: r for r in data["rows"]}
    assert by_field["recipe.denoise_steps"] == {
        "field": "recipe.denoise_steps",
        "checkpoint": 4,
        "current": 8,
        "severity": "fatal",
        "fix": "--recipe.denoise_steps=4 (or start a new output dir)",
    }
    assert by_field["recipe.lr"]["severity"] == "changed"


def test_model_identity_mismatch_is_refused_at_restore_before_loading(tmp_path: Path) -> None:
    """The built model's identity (ActorCritic.identity()) is saved in rl_heads.safetensors; a model
    whose identity differs (e.g. code changed an architecture size) is refused with exit 3."""
    cfg, trainer = saved_run(tmp_path, steps=(1,))
    ckpt = layout.step_dir(cfg.output_dir, 1)
    heads = ckpt / "pretrained_model" / "rl_heads.safetensors"
    from pirl_core.checkpoints.verify import safetensors_header

    meta = dict(safetensors_header(heads, "x")["__metadata__"])
    ident = json.loads(meta["model_identity"])
    ident["feature_dim"] = ident["feature_dim"] * 2
    meta["model_identity"] = json.dumps(ident)
    save_file(load_file(heads), heads, metadata=meta)
    record_path = ckpt / "training_state" / "training_step.json"
    record = json.loads(record_path.read_text())
    record["files"]["pretrained_model/rl_heads.safetensors"] = heads.stat().st_size
    record_path.write_text(json.dumps(record))

    plan = resume.prepare_run(cfg, resume=True)
    fresh = make_trainer(cfg)
    before = {k: v.clone() for k, v in fresh.actor_critic.state_dict().items()}
    with pytest.raises(ResumeMismatchError) as info:
        resume.restore(plan, fresh)
    (row,) = info.value.report.fatal
    assert row.field == "model.feature_dim" and row.checkpoint == ident["feature_dim"]
    after = fresh.actor_critic.state_dict()
    assert all((before[k] == after[k]).all() for k in before), "nothing loaded before the refusal"


def test_learner_process_exits_3_with_the_table_and_writes_nothing(run) -> None:
    cfg, _ = run
    digest = tree_digest(cfg.output_path)
    proc = run_module(
        "pirl_core.learner",
        *("--profile", "toy", *flags_of(_small_overrides(cfg)), "--resume", "--recipe.denoise_steps=8"),
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: cannot resume from") and "recipe.denoise_steps" in first
    assert "--recipe.denoise_steps=4 (or start a new output dir)" in proc.stderr
    assert tree_digest(cfg.output_path) == digest


def _small_overrides(cfg: RunConfig) -> dict[str, Any]:
    from tests.checkpoint_helpers import SMALL_TOY

    return {**SMALL_TOY, "output_dir": cfg.output_dir}


def test_camera_size_is_fatal_only_where_a_camera_exists() -> None:
    libero = RunConfig()  # the default env is LIBERO
    bigger = RunConfig()
    bigger.env.camera_size = 128
    (row,) = identity.compare_configs(libero.to_dict(), bigger)
    assert (row.field, row.severity) == ("env.camera_size", identity.FATAL)
    assert "env.camera_size" in identity.actor_identity(libero)
    toy = toy_config(Path("unused"))
    assert "env.camera_size" not in identity.actor_identity(toy)


def test_actor_contract_comes_from_the_resume_classification() -> None:
    """Handshake fields are exactly the fatal ones; pushed fields are tunables (a resume may change
    them because the next push carries them to running actors)."""
    cfg = toy_config(Path("unused"))
    fatal = {f for f, s in identity.FIELD_CLASSES.items() if s == identity.FATAL} - {"env.camera_size"}
    assert set(identity.actor_identity(cfg)) == fatal
    assert all(identity.FIELD_CLASSES[f] == identity.CHANGED for f in identity.PUSHED_FIELDS)
    behaviour_policy = {
        "recipe.sigma_min",
        "recipe.sigma_max",
        "recipe.sde_noise_level",
        "recipe.include_prior",
        "recipe.logprob_action_reduction",
        "recipe.logprob_step_reduction",
    }
    assert behaviour_policy <= set(identity.PUSHED_FIELDS)
    other = toy_config(Path("unused"), **{"recipe.denoise_steps": 8})
    (line,) = identity.compare_identity(identity.actor_identity(other), identity.actor_identity(cfg))
    assert line == "recipe.denoise_steps: learner 8, actor 4"
