"""Demonstrations -> X-VLA training batches, through the processors a rollout uses (the SFT loop
and RL's SFT co-training term both read demonstrations through this module).

Why this way:

* The dataset is opened with LeRobot's own ``LeRobotDataset`` and ``delta_timestamps`` for the
  action chunk, exactly as ``lerobot-train`` does for a policy whose ``action_delta_indices`` are
  ``range(chunk_size)``.
* Past an episode's end LeRobot clamps the query to the episode's last frame and flags it in
  ``action_is_pad``: the padded steps already *repeat the last action*. pirl keeps them and trains
  on them unmasked, because (1) ``XVLAPolicy.forward`` (LeRobot's loss, which SFT must use) takes no
  mask and (2) in absolute end-effector control, holding the final target pose and gripper is the
  right continuation of a finished demonstration. The fraction of padded steps is reported.
* Images and state in the dataset are already what ``LiberoProcessorStep`` produces
  (``pirl_core.recipe.demo_schema``), so a batch goes through the rest of the rollout chain only
  (:func:`pirl_core.policies.xvla.processors.make_demo_processor`, then the policy preprocessor).
* The dataset directory must hold ``meta/info.json``: without it LeRobot would fetch metadata from
  the hub, which pirl never does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pirl_core.errors import ConfigError
from pirl_core.recipe import demo_schema as schema


@dataclass
class DemoInfo:
    repo_id: str
    fps: int
    episodes: int
    frames: int
    image_size: int
    features: tuple[str, ...] = ()  # every feature the dataset stores (meta/info.json)


def read_info(root: Path, repo_id: str | None) -> DemoInfo:
    """``meta/info.json`` checked against the schema (keys and dims), before LeRobot touches it."""
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise ConfigError(
            "--dataset",
            str(root),
            "a LeRobot dataset directory holding meta/info.json",
            hint="record one first",
        )
    info = json.loads(info_path.read_text())
    features = info.get("features", {})
    for key, dim in ((schema.STATE_KEY, schema.STATE_DIM), (schema.ACTION_KEY, schema.ACTION_DIM)):
        shape = list(features.get(key, {}).get("shape", []))
        if shape != [dim]:
            raise ConfigError(
                f"--dataset {key}", shape or None, f"shape [{dim}] (pirl_core/recipe/demo_schema.py)"
            )
    sizes = set()
    for key in schema.IMAGE_KEYS:
        shape = list(features.get(key, {}).get("shape", []))
        if len(shape) != 3 or shape[0] != shape[1]:
            raise ConfigError(f"--dataset {key}", shape or None, "a square image [H, H, 3] (schema.features)")
        sizes.add(int(shape[0]))
    if len(sizes) != 1:
        raise ConfigError("--dataset", sorted(sizes), "both camera views at one size")
    return DemoInfo(
        repo_id=repo_id or info.get("repo_id") or f"local/{root.name}",
        fps=int(info["fps"]),
        episodes=int(info.get("total_episodes", 0)),
        frames=int(info.get("total_frames", 0)),
        image_size=sizes.pop(),
        features=tuple(features),
    )


def open_demos(root: Path, info: DemoInfo, chunk_size: int):
    """The dataset with one ``chunk_size``-step action chunk per frame."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    delta = {schema.ACTION_KEY: [i / info.fps for i in range(chunk_size)]}
    return LeRobotDataset(info.repo_id, root=root, delta_timestamps=delta)


DEMO_KEYS: tuple[str, ...] = (*schema.IMAGE_KEYS, schema.STATE_KEY, schema.ACTION_KEY, "task")


class DemoBatcher:
    """A collated dataset batch -> the tensors the policy's ``forward`` reads (same processors as a
    rollout; see the module docstring). ``extra_keys``: dataset features a family's demo processor
    reads beyond :data:`DEMO_KEYS` (π: ``schema.LIBERO_STATE_KEY``); X-VLA reads none."""

    def __init__(self, demo_pre, policy_pre, extra_keys: tuple[str, ...] = ()) -> None:
        self.demo_pre = demo_pre
        self.policy_pre = policy_pre
        self.keys = (*DEMO_KEYS, *extra_keys)

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.policy_pre(self.demo_pre({k: batch[k] for k in self.keys}))
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


RERECORD = "python -m pirl_core.demos.record --suite SUITE --tasks IDS --episodes-per-task N --out NEW_DIR"


def check_family_inputs(sft, cfg, info, dataset_dir: Path, field: str = "--dataset") -> None:
    """The dataset holds the features the family reads, and the run is in the control mode the
    family's SFT trains for (``SftSupport.demo_features`` / ``control_mode``). One check for SFT
    (``field`` = ``--dataset``) and RL's co-training term (``recipe.sft_dataset``)."""
    for key in sft.demo_features:
        if key not in info.features:
            raise ConfigError(
                f"{field} {key}" if field.startswith("--") else field,
                None if field.startswith("--") else str(dataset_dir),
                f"a dataset holding {key} (policy.type {cfg.policy.type!r} reads it; {dataset_dir} "
                "was recorded before pirl stored it)",
                hint=f"re-record it: {RERECORD}",
            )
    if sft.control_mode is not None and cfg.env.control_mode != sft.control_mode:
        raise ConfigError(
            "env.control_mode",
            cfg.env.control_mode,
            f"{sft.control_mode!r} for policy.type {cfg.policy.type!r} trained on pirl's demonstrations",
            hint=f"--env.control_mode={sft.control_mode}",
        )
