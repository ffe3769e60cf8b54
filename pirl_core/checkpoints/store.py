"""Write one checkpoint crash-safely, and load its parts back into a live trainer.

Writing (:func:`write_checkpoint`): everything goes into ``checkpoints/.tmp-<step>-<pid>/``; the
base policy through the adapter's own ``save_pretrained`` (LeRobot's layout, loadable by LeRobot's
``from_pretrained``), the RL-only tensors into ``pretrained_model/rl_heads.safetensors``, optimizers
with LeRobot's ``save_optimizer_state`` (one subdirectory per name), RNG with LeRobot's
``serialize_rng_state`` plus the trainer's generator, and last ``training_step.json`` with the
counters and a manifest of every file and its size. Then fsync everything, rename into place, and
switch ``last``. A checkpoint is immutable once renamed: saving the same step again is a no-op.

Loading is split into :func:`check_compatible` (headers and shapes only, nothing mutated, raises
:class:`~pirl_core.checkpoints.verify.Problem`) and :func:`load_into` (mutates the trainer), so a
checkpoint that does not fit is refused before any live tensor changes.

Which tensors go where is decided at save time: after ``adapter.save_pretrained`` the writer finds
the submodule of the actor-critic whose parameter names match ``model.safetensors`` (the "base
module", e.g. ``adapter.policy`` for X-VLA) and records its path in ``rl_heads.safetensors``'s
metadata; every other tensor of the actor-critic (value head, noise head, adapter extras) is stored
in ``rl_heads.safetensors``. If no submodule matches, the whole actor-critic goes there (correct,
only larger), so restore never depends on an adapter's internal naming.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pirl_core.checkpoints import fsutil, layout
from pirl_core.checkpoints.verify import CheckpointInfo, Problem, safetensors_header

GENERATOR_KEY = "trainer_generator_state"  # no py/np/torch prefix: LeRobot's deserializer skips it
HEADS_FORMAT = "pirl-rl-heads/1"

if TYPE_CHECKING:  # the recipe pulls in the policy stack; listing and validating never need it
    from pirl_core.recipe.trainer import PolicyTrainer


# --------------------------------------------------------------------------- identity


def model_identity(actor_critic: nn.Module) -> dict[str, Any]:
    """The model's resume identity: ActorCritic.identity() (adapter + recipe) when present."""
    ident = getattr(actor_critic, "identity", None)
    if callable(ident):
        return dict(ident())
    return dict(actor_critic.adapter.identity())


# --------------------------------------------------------------------------- writing


def _cpu_copy(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous, unshared CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def find_base_module(actor_critic: nn.Module, weights_file: Path) -> str | None:
    """Path (in ``actor_critic``) of the module whose state dict ``model.safetensors`` holds."""
    header = safetensors_header(weights_file, weights_file.name)
    file_shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    if not file_shapes:
        return None
    state = actor_critic.state_dict()
    matches = []
    for name, _module in actor_critic.named_modules():
        prefix = f"{name}." if name else ""
        if all(prefix + k in state and list(state[prefix + k].shape) == s for k, s in file_shapes.items()):
            matches.append(name)
    return max(matches, key=len) if matches else None


def _prefix(base: str) -> str:
    return f"{base}." if base else ""


def _extras(state: Mapping[str, torch.Tensor], base: str | None) -> dict[str, torch.Tensor]:
    if base is None:
        return dict(state)
    p = _prefix(base)
    return {k: v for k, v in state.items() if not (p == "" or k.startswith(p))}


def _manifest(root: Path) -> dict[str, int]:
    files = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = path.stat().st_size
    return dict(sorted(files.items()))


def write_checkpoint(
    output_dir: Path,
    step: int,
    total_steps: int,
    train_config: dict[str, Any],
    trainer: PolicyTrainer,
    counters: Mapping[str, Any],
    version: int,
) -> Path:
    """Write checkpoint ``step`` and point ``last`` at it; returns its final path."""
    from lerobot.optim.optimizers import save_optimizer_state
    from lerobot.utils.random_utils import serialize_rng_state

    root = layout.checkpoints_root(output_dir)
    name = layout.step_name(step, total_steps)
    final = root / name
    if final.exists():
        # Immutable: this step was saved already (e.g. Ctrl-C right after a save, or during the
        # ``last`` switch). Only finish the switch if that is what was interrupted.
        finished = layout.step_dirs(output_dir)
        if finished and finished[-1][1] == final and layout.last_pointer(output_dir) != final.resolve():
            switch_pointer(output_dir, layout.LAST_CHECKPOINT_LINK, name, step)
        return final
    root.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    tmp = root / f"{layout.TMP_PREFIX}{name}-{pid}"
    fsutil.remove_tree(tmp)
    pause = fsutil.pause_point
    pause(step, "start")
    try:
        pretrained = tmp / layout.PRETRAINED_MODEL_DIR
        state_dir = tmp / layout.TRAINING_STATE_DIR
        pretrained.mkdir(parents=True)
        state_dir.mkdir(parents=True)

        actor_critic = trainer.actor_critic
        actor_critic.adapter.save_pretrained(pretrained)
        pause(step, "pretrained_model")

        weights = pretrained / layout.MODEL_WEIGHTS
        base = find_base_module(actor_critic, weights) if weights.is_file() else None
        extras = _cpu_copy(_extras(actor_critic.state_dict(), base))
        meta = {
            "format": HEADS_FORMAT,
            "base_module": "" if base is None else base,
            "base_in_model_safetensors": "false" if base is None else "true",
            "model_identity": json.dumps(model_identity(actor_critic), default=str, sort_keys=True),
        }
        save_file(extras, pretrained / layout.RL_HEADS, metadata=meta)
        pause(step, "rl_heads")

        (pretrained / layout.TRAIN_CONFIG).write_text(json.dumps(train_config, indent=4), encoding="utf-8")
        pause(step, "train_config")
        from pirl_core.checkpoints import model_card

        model_card.write(
            pretrained, step_record={"step": step, "policy_version": version, "counters": dict(counters)}
        )

        optimizers = trainer.optimizers
        for opt_name, optimizer in optimizers.items():
            save_optimizer_state({opt_name: optimizer}, state_dir)  # -> training_state/<name>/
            pause(step, f"optimizer:{opt_name}")

        rng = serialize_rng_state()
        rng[GENERATOR_KEY] = trainer.generator.get_state()
        save_file(_cpu_copy(rng), state_dir / layout.RNG_STATE)
        pause(step, "rng_state")

        record = {
            "step": step,  # LeRobot's key: lerobot.utils.train_utils.load_training_step reads it
            "policy_version": version,
            "samples": counters.get("samples"),
            "episodes": counters.get("episodes"),
            "counters": dict(counters),
            "optimizers": sorted(optimizers),
            "generator": True,
            "saved_at": time.time(),
            "pirl_format": layout.FORMAT_VERSION,
            "files": _manifest(tmp),
        }
        (state_dir / layout.TRAINING_STEP).write_text(json.dumps(record, indent=4), encoding="utf-8")
        pause(step, "training_step")

        fsutil.fsync_tree(tmp)
        pause(step, "fsynced")
        os.rename(tmp, final)
        fsutil.fsync_path(root)
        pause(step, "renamed")
    except BaseException:
        fsutil.remove_tree(tmp)
        raise
    switch_pointer(output_dir, layout.LAST_CHECKPOINT_LINK, name, step)
    pause(step, "last")
    return final


def switch_pointer(output_dir: Path, pointer: str, target_name: str, step: int) -> None:
    """Point ``checkpoints/<pointer>`` (``last`` or ``best``) at the finished checkpoint
    ``target_name``, atomically: readers see the old target or the new one, never none. The
    temporary link is ``.last-[<pointer>-]<pid>``: leftover debris the next start removes. The
    crash-test hook announces ``<pointer>:link`` between creating the temporary link and the rename."""
    tag = "" if pointer == layout.LAST_CHECKPOINT_LINK else f"{pointer}-"
    fsutil.switch_symlink(
        layout.checkpoints_root(output_dir) / pointer,
        target_name,
        f"{layout.LAST_TMP_PREFIX}{tag}{os.getpid()}",
        before_replace=lambda: fsutil.pause_point(step, f"{pointer}:link"),
    )


# --------------------------------------------------------------------------- loading


def _shape_problems(expected: Mapping[str, list[int]], live: Mapping[str, torch.Tensor], where: str) -> None:
    for key, shape in expected.items():
        if key not in live:
            raise Problem(f"{where}: tensor {key!r} has no counterpart in the current model")
        if list(live[key].shape) != list(shape):
            raise Problem(
                f"wrong shapes: {where} {key!r} is {list(shape)} in the checkpoint, "
                f"{list(live[key].shape)} in the current model"
            )


def _tied_names(state: Mapping[str, torch.Tensor]) -> dict[str, set[str]]:
    """Names that share storage (tied weights): safetensors keeps only one of each group."""
    groups: dict[tuple[int, int, tuple[int, ...]], set[str]] = {}
    for key, t in state.items():
        if t.device.type == "meta" or t.numel() == 0:
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        groups.setdefault(ident, set()).add(key)
    return {k: g for g in groups.values() for k in g if len(g) > 1}


def check_compatible(info: CheckpointInfo, trainer: PolicyTrainer) -> None:
    """Everything a restore needs, checked against the live trainer without changing it."""
    check_weights(info, trainer.actor_critic)
    saved_opts = set(info.training_step.get("optimizers", []))
    live_opts = trainer.optimizers
    if saved_opts != set(live_opts):
        raise Problem(
            f"the checkpoint has optimizers {sorted(saved_opts)}, the current trainer {sorted(live_opts)}"
        )
    for name, optimizer in live_opts.items():
        _check_optimizer(info.path, name, optimizer)


def check_weights(info: CheckpointInfo, actor_critic: nn.Module) -> None:
    """The policy's part of :func:`check_compatible` (evaluation loads weights only)."""
    meta = info.rl_heads_metadata
    if meta.get("format") != HEADS_FORMAT:
        raise Problem(f"{layout.PRETRAINED_MODEL_DIR}/{layout.RL_HEADS} has format {meta.get('format')!r}")
    state = actor_critic.state_dict()
    base = meta.get("base_module", "") if meta.get("base_in_model_safetensors") == "true" else None

    if base is not None:
        try:
            base_module = actor_critic.get_submodule(base) if base else actor_critic
        except AttributeError as exc:
            raise Problem(f"the current model has no module {base!r} to load model.safetensors into") from exc
        base_state = base_module.state_dict()
        rel = f"{layout.PRETRAINED_MODEL_DIR}/{layout.MODEL_WEIGHTS}"
        header = safetensors_header(info.model_dir / layout.MODEL_WEIGHTS, rel)
        shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
        _shape_problems(shapes, base_state, rel)
        tied = _tied_names(base_state)
        missing = [k for k in base_state if k not in shapes and not (tied.get(k, set()) & set(shapes))]
        if missing:
            raise Problem(f"{rel} lacks {len(missing)} tensor(s) of the current model, e.g. {missing[:3]}")

    rel = f"{layout.PRETRAINED_MODEL_DIR}/{layout.RL_HEADS}"
    header = safetensors_header(info.model_dir / layout.RL_HEADS, rel)
    head_shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    _shape_problems(head_shapes, state, rel)
    expected = set(_extras(state, base))
    if set(head_shapes) != expected:
        missing = sorted(expected - set(head_shapes))
        raise Problem(f"{rel} lacks tensor(s) of the current model: {missing[:5]}")


def _optimizer_files(name: str) -> tuple[str, str]:
    base = f"{layout.TRAINING_STATE_DIR}/{name}"
    return f"{base}/{layout.OPTIMIZER_STATE}", f"{base}/{layout.OPTIMIZER_PARAM_GROUPS}"


def _check_optimizer(path: Path, name: str, optimizer: torch.optim.Optimizer) -> None:
    state_rel, groups_rel = _optimizer_files(name)
    saved_groups = json.loads((path / groups_rel).read_text(encoding="utf-8"))
    live_groups = optimizer.param_groups
    if len(saved_groups) != len(live_groups) or any(
        len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, live_groups, strict=False)
    ):
        raise Problem(
            f"wrong shapes: optimizer {name!r} has groups of "
            f"{[len(s['params']) for s in saved_groups]} parameters in the checkpoint, "
            f"{[len(g['params']) for g in live_groups]} in the current trainer"
        )
    params = [p for g in live_groups for p in g["params"]]
    header = safetensors_header(path / state_rel, state_rel)
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        parts = key.split("/")  # state/<index>/<name>
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            continue
        index = int(parts[1])
        if index >= len(params):
            raise Problem(f"{state_rel}: state for parameter {index}, the trainer has {len(params)}")
        shape = entry["shape"]
        if shape and list(shape) != list(params[index].shape):
            raise Problem(
                f"wrong shapes: {state_rel} {key!r} is {list(shape)}, "
                f"parameter {index} of optimizer {name!r} is {list(params[index].shape)}"
            )


def _load_optimizer(path: Path, name: str, optimizer: torch.optim.Optimizer) -> None:
    """LeRobot's file format, loaded tolerantly: saved hyperparameters over the live groups'
    (so a param-group key added by a newer torch keeps its default), live ``params`` ids."""
    from lerobot.datasets.utils import unflatten_dict

    state_rel, groups_rel = _optimizer_files(name)
    flat = load_file(path / state_rel)
    nested = unflatten_dict(flat)
    state = {int(k): v for k, v in nested.get("state", {}).items()}
    saved_groups = json.loads((path / groups_rel).read_text(encoding="utf-8"))
    live = optimizer.state_dict()
    groups = []
    for saved, current in zip(saved_groups, live["param_groups"], strict=True):
        merged = dict(current)
        for key, value in saved.items():
            if key == "params" or key not in current:
                continue
            merged[key] = tuple(value) if isinstance(current[key], tuple) else value
        groups.append(merged)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def load_into(info: CheckpointInfo, trainer: PolicyTrainer) -> None:
    """Weights (base + heads), optimizers, RNG and generator. Call check_compatible first."""
    from lerobot.utils.random_utils import deserialize_rng_state

    load_weights(info, trainer.actor_critic)
    for name, optimizer in trainer.optimizers.items():
        _load_optimizer(info.path, name, optimizer)

    rng = load_file(info.path / layout.TRAINING_STATE_DIR / layout.RNG_STATE)
    generator_state = rng.pop(GENERATOR_KEY, None)
    deserialize_rng_state(rng)
    if generator_state is not None:
        trainer.generator.set_state(generator_state)


def load_weights(info: CheckpointInfo, actor_critic: nn.Module) -> None:
    """Base weights and RL heads into ``actor_critic``. Call :func:`check_weights` first."""
    meta = info.rl_heads_metadata
    base = meta.get("base_module", "") if meta.get("base_in_model_safetensors") == "true" else None
    device = next(actor_critic.parameters()).device
    with torch.no_grad():
        if base is not None:
            base_module = actor_critic.get_submodule(base) if base else actor_critic
            tensors = load_file(info.model_dir / layout.MODEL_WEIGHTS, device=str(device))
            base_module.load_state_dict(tensors, strict=False)  # tied duplicates were checked
        heads = load_file(info.model_dir / layout.RL_HEADS, device=str(device))
        actor_critic.load_state_dict(heads, strict=False)  # exact key set was checked
