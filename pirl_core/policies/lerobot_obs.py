"""A raw LIBERO observation batch through LeRobot's processor pipelines: one function every LeRobot
policy family's processors share, so X-VLA and π read the simulator the same way."""

from __future__ import annotations

from typing import Any

import torch


def through_pipelines(raw_obs: dict[str, Any], *pipelines: Any) -> dict[str, torch.Tensor]:
    """``raw_obs`` (numpy, HWC uint8 cameras, nested robot state, ``task``: the instructions) ->
    LeRobot's ``preprocess_observation`` -> each pipeline in order -> the tensors the policy reads."""
    from lerobot.envs.utils import preprocess_observation

    if "task" not in raw_obs:
        raise KeyError("raw LIBERO observation needs 'task' (the instructions) for the tokenizer")
    obs = preprocess_observation({k: v for k, v in raw_obs.items() if k != "task"})
    obs["task"] = list(raw_obs["task"])
    for pipeline in pipelines:
        obs = pipeline(obs)
    return {k: v for k, v in obs.items() if isinstance(v, torch.Tensor)}
