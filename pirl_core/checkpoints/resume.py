"""The learner's three calls: ``prepare_run`` -> ``restore`` -> ``save``.

::

    plan = resume.prepare_run(cfg, args.resume, args.resume_from)   # before anything is written
    trainer = build_trainer(cfg)
    if plan is not None:
        state = resume.restore(plan, trainer)     # TrainingState(step, version, counters)
    ...
    resume.save(cfg, step, trainer, counters)     # on cadence, at the end, on SIGINT/SIGTERM (never step 0)

Rules (docs/design.md, "Resume"): a resume continues exactly or refuses at once. ``prepare_run`` judges
the output dir and the checkpoint's config identity and raises ConfigError (exit 2),
ResumeMismatchError (exit 3) or CheckpointUnreadableError (exit 4) *before it writes anything*;
only when all is well does it clean the leftovers of a killed writer and repair ``last``.
``restore`` then checks the built model's identity and every tensor shape before it changes any
live tensor, so a refusal there leaves nothing half-loaded either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pirl_core.checkpoints import fsutil, layout, store
from pirl_core.checkpoints.identity import (
    IdentityMismatch,
    IdentityReport,
    compare_configs,
    compare_model,
    raise_if_fatal,
)
from pirl_core.checkpoints.verify import CheckpointInfo, Problem, inspect_or_raise, unreadable
from pirl_core.config import RunConfig
from pirl_core.errors import ConfigError, StorageError
from pirl_core.recipe.numerics import require_finite_tensors
from pirl_core.redact import redact_config
from pirl_core.storage import advice, describe, fault_errno, free_mb, storage_error

if TYPE_CHECKING:
    from pirl_core.recipe.trainer import PolicyTrainer

LR_FIELDS = {"recipe.lr", "recipe.value_lr", "recipe.noise_lr"}


@dataclass
class ResumePlan:
    """A validated checkpoint to continue from, and the tunables that changed."""

    path: Path
    info: CheckpointInfo
    report: IdentityReport

    @property
    def step(self) -> int:
        return self.info.step


@dataclass
class TrainingState:
    step: int
    version: int
    counters: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- prepare_run


def _resolve_in_output_dir(output_dir: Path) -> Path:
    """``--resume``: the checkpoint ``last`` points to, or a newer finished one (the writer was
    killed after renaming it into place but before switching ``last``)."""
    finished = layout.step_dirs(output_dir)
    link = layout.last_link(output_dir)
    if not finished and not (link.is_symlink() or link.exists()):
        raise ConfigError(
            "--resume",
            str(output_dir),
            "an output dir that holds checkpoints",
            hint="nothing to resume there: drop --resume to start a new run, or pass --resume-from PATH",
        )
    if link.exists() and not link.is_symlink():
        raise unreadable(link, "checkpoints/last is not a symlink", output_dir)
    if link.is_symlink():
        target = layout.last_pointer(output_dir)
        assert target is not None
        if not target.exists():
            raise unreadable(
                link, f"checkpoints/last points to {link.readlink()}, which does not exist", output_dir
            )
        last_step = layout.parse_step(target.name)
        if finished and last_step is not None and finished[-1][0] > last_step:
            return finished[-1][1]
        return target
    return finished[-1][1]


def _resolve_target(cfg: RunConfig, resume_from: str | None) -> Path:
    if resume_from is None:
        return _resolve_in_output_dir(cfg.output_path)
    path = Path(resume_from)
    if (path / layout.CHECKPOINTS_DIR).is_dir() and not (path / layout.TRAINING_STATE_DIR).exists():
        return _resolve_in_output_dir(path)  # an output dir: resume its newest checkpoint
    return path


def _check_collisions(cfg: RunConfig, target: Path, step: int) -> None:
    """Continuing must not collide with checkpoints already in the output dir: saving a step that
    exists is a no-op (checkpoints are immutable), so a rewind or a fork into a used output dir
    would silently keep the old files. Refuse with the way out instead."""
    output_dir = cfg.output_path
    finished = layout.step_dirs(output_dir)
    if not finished:
        return
    same_dir = layout.checkpoint_output_dir(target) == output_dir.resolve()
    if not same_dir:
        raise ConfigError(
            "output_dir",
            str(output_dir),
            "an output dir without checkpoints to continue a checkpoint from elsewhere",
            hint=f"it already holds checkpoints of another run; pass --output_dir=NEW --resume-from {target}",
        )
    newer = [s for s, _ in finished if s > step]
    if newer:
        raise ConfigError(
            "--resume-from",
            str(target),
            f"the newest checkpoint of {output_dir} (steps {newer} are newer and would collide)",
            hint=f"resume with --resume, or fork: --output_dir=NEW --resume-from {target}",
        )


def clean_leftovers(output_dir: Path) -> list[Path]:
    """Remove what a killed writer left (hidden temp dirs, link and delete debris)."""
    removed = []
    for path in layout.leftovers(output_dir):
        owner = layout.leftover_owner(path)
        if owner is not None and fsutil.other_process_alive(owner):
            continue  # another live writer's work in progress
        fsutil.remove_tree(path)
        removed.append(path)
    return removed


def prepare_run(cfg: RunConfig, resume: bool, resume_from: str | None = None) -> ResumePlan | None:
    """Judge the output dir and the checkpoint before the run writes anything.

    New run (``resume`` false): refuse (exit 2) when the output dir already holds checkpoints.
    Resume: locate the checkpoint, check it is complete (exit 4), compare its config identity with
    ``cfg`` (exit 3 with the table), refuse collisions and a ``learner.updates`` the checkpoint
    has already reached (exit 2). Only then clean leftovers and
    repair ``last``. Returns the plan for :func:`restore`, or None for a new run.
    """
    output_dir = cfg.output_path
    if not resume and resume_from is None:
        if layout.has_checkpoints(output_dir):
            finished = layout.step_dirs(output_dir)
            newest = f" (newest: step {finished[-1][0]})" if finished else ""
            raise ConfigError(
                "output_dir",
                str(output_dir),
                "an output dir without checkpoints for a new run",
                hint=f"it holds checkpoints{newest}: pass --resume to continue it, or choose another --output_dir",
            )
        clean_leftovers(output_dir)
        return None

    target = _resolve_target(cfg, resume_from)
    if target.is_symlink() and target.exists():
        target = target.resolve()
    in_layout = target.parent.name == layout.CHECKPOINTS_DIR
    owner_dir = layout.checkpoint_output_dir(target) if in_layout else None  # where to look for a fallback
    info = inspect_or_raise(target, owner_dir)
    report = IdentityReport(str(target), info.step, compare_configs(info.train_config, cfg))
    raise_if_fatal(report)
    _check_collisions(cfg, info.path, info.step)
    if cfg.learner.updates <= info.step:
        # Nothing to train: refused here, before the learner listens, so no actor is started for it
        # (launch and the console start actors once the learner is ready) and none waits for it.
        raise ConfigError(
            "learner.updates",
            cfg.learner.updates,
            f"more than the checkpoint's step {info.step} to continue training",
            hint=f"{target} has done {info.step} updates already: pass --learner.updates=N with "
            f"N > {info.step}, or use the checkpoint as it is",
        )

    # Validated: from here on writing is allowed.
    clean_leftovers(output_dir)
    resolved = info.path.resolve()
    if (
        layout.checkpoint_output_dir(resolved) == output_dir.resolve()
        and layout.last_pointer(output_dir) != resolved
    ):
        store.switch_pointer(output_dir, layout.LAST_CHECKPOINT_LINK, resolved.name, info.step)
    return ResumePlan(path=info.path, info=info, report=report)


# --------------------------------------------------------------------------- restore


def restore(plan: ResumePlan, trainer: PolicyTrainer) -> TrainingState:
    """Load the checkpoint into ``trainer`` (weights incl. heads, optimizers, RNGs,
    generator). Checks the built model's identity (exit 3) and every shape (exit 4) first.

    Learning rates: the optimizer state (moments, step counts) and hyperparameters come from the
    checkpoint; if a learning-rate tunable changed (reported in ``plan.report``), the current
    config's learning rates are applied on top, so the change takes effect.
    """
    info = plan.info
    actor_critic = trainer.actor_critic
    saved_identity = info.rl_heads_metadata.get("model_identity")
    if saved_identity is not None:
        rows = compare_model(json.loads(saved_identity), store.model_identity(actor_critic))
        if rows:
            report = IdentityReport(plan.report.checkpoint, plan.report.step, [*plan.report.rows, *rows])
            raise IdentityMismatch(report)
    try:
        store.check_compatible(info, trainer)
    except Problem as problem:
        raise unreadable(info.path, str(problem), layout.checkpoint_output_dir(info.path)) from None

    current_lrs = {
        name: [group["lr"] for group in opt.param_groups] for name, opt in trainer.optimizers.items()
    }
    store.load_into(info, trainer)
    if any(row.field in LR_FIELDS for row in plan.report.changed):
        for name, opt in trainer.optimizers.items():
            for group, lr in zip(opt.param_groups, current_lrs[name], strict=True):
                group["lr"] = lr
    return TrainingState(step=info.step, version=info.version, counters=info.counters)


# --------------------------------------------------------------------------- save


def save(cfg: RunConfig, step: int, trainer: PolicyTrainer, counters: Mapping[str, Any]) -> Path:
    """Write checkpoint ``step`` crash-safely, switch ``last``, apply retention; returns its path.

    Refuses (:class:`DivergedError`, exit 6) before writing anything when a parameter or an
    optimizer state tensor holds NaN/inf: such a checkpoint would replace ``last`` with garbage.

    ``counters`` are stored verbatim in training_step.json and come back from :func:`restore`;
    ``counters["version"]`` (or ``"policy_version"``) is the policy version (default: ``step``),
    ``"samples"`` and ``"episodes"`` are also written at the top level, as LeRobot-style fields.
    """
    require_finite_tensors(
        "checkpoint not written: tensor",
        _state_tensors(trainer),
        f"step {step}; {layout.last_link(cfg.output_path)} still points to the last good one",
    )
    version = int(counters.get("version", counters.get("policy_version", step)))
    try:
        # the saved config never holds a secret (pirl_core/redact.py): a resume asks for it again
        path = store.write_checkpoint(
            cfg.output_path, step, cfg.learner.updates, redact_config(cfg), trainer, counters, version
        )
    except Exception as exc:  # noqa: BLE001 - only filesystem faults are translated
        if fault_errno(exc) is None:
            raise
        raise _not_written(cfg, step, trainer, exc) from exc
    try:
        apply_retention(cfg.output_path, cfg.checkpoint.keep_last)
    except OSError as exc:
        if fault_errno(exc) is None:
            raise
        then = f"checkpoint step {step} is saved and checkpoints/last points to it; {advice(exc.errno)}"
        raise storage_error("(removing an old checkpoint)", cfg.output_path, exc, then) from exc
    return path


def _not_written(cfg: RunConfig, step: int, trainer: PolicyTrainer, exc: BaseException) -> StorageError:
    """The one line for a checkpoint the filesystem refused: what it needs, what is intact, what next.
    (``store.write_checkpoint`` already removed its temporary directory.)"""
    code = fault_errno(exc)
    assert code is not None
    need_mb = sum(t.numel() * t.element_size() for _, t in _state_tensors(trainer)) / 1e6
    free = free_mb(cfg.output_path)
    space = f"needs about {need_mb:.0f} MB" + (f", {free:.0f} MB free" if free is not None else "")
    last = layout.last_pointer(cfg.output_path)
    intact = f"checkpoints/last still points to {last}" if last else "no earlier checkpoint exists"
    where = getattr(exc, "filename", None) or layout.checkpoints_root(cfg.output_path)
    return StorageError(
        f"checkpoint step {step} not written to {where}: {describe(code)} ({space}); nothing partial "
        f"is left and {intact}; {advice(code)}, then continue with --resume"
    )


def _state_tensors(trainer: PolicyTrainer) -> Iterator[tuple[str, torch.Tensor]]:
    yield from trainer.actor_critic.state_dict().items()
    for name, optimizer in trainer.optimizers.items():
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    yield f"optimizer {name} state[{index}].{key}", value


def apply_retention(output_dir: Path, keep_last: int) -> list[Path]:
    """Keep the newest ``keep_last`` checkpoints (0: all), never the ones ``last`` and ``best``
    point to."""
    if keep_last <= 0:
        return []
    finished = layout.step_dirs(output_dir)
    keep = {p.resolve() for _, p in finished[-keep_last:]}
    for pointer in (layout.LAST_CHECKPOINT_LINK, layout.BEST_CHECKPOINT_LINK):
        target = layout.pointer_target(output_dir, pointer)
        if target is not None:
            keep.add(target)
    removed = []
    for step, path in finished:
        if path.resolve() in keep:
            continue
        hidden = fsutil.retire(path, f"{layout.DELETE_PREFIX}{path.name}-{os.getpid()}")
        fsutil.pause_point(step, f"retire:{path.name}")
        fsutil.remove_tree(hidden)
        fsutil.pause_point(step, f"removed:{path.name}")
        removed.append(path)
    return removed
