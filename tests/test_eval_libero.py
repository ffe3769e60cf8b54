"""``python -m pirl_core.eval`` on LIBERO with a tiny X-VLA checkpoint (tests/profiles/libero_tiny.toml): per-task table,
a valid ``eval_info.json`` and an MP4 (both cameras side by side) with one frame per step plus the
initial one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e_helpers import run_module

pytestmark = pytest.mark.slow


def test_tiny_checkpoint_eval_with_video(tmp_path: Path) -> None:

    import imageio.v3 as iio

    from pirl_core.checkpoints import resume
    from pirl_core.config import load_config
    from pirl_core.envs.libero import render_size_for
    from pirl_core.learner import build_trainer

    run = tmp_path / "run"
    cfg = load_config("libero_tiny", {"output_dir": str(run)})
    resume.save(cfg, 1, build_trainer(cfg), {"step": 1, "version": 1, "samples": 0, "episodes": 0})
    out = tmp_path / "ev"
    args = (str(run), "--episodes=1", "--episode-length=8", "--videos=1", f"--out={out}")
    res = run_module("pirl_core.eval", *args, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    (episode,) = info["per_episode"]
    assert info["pirl"]["suite"] == "libero_10" and info["pirl"]["episode_length"] == 8
    assert info["pirl"]["checkpoint_step"] == 1 and info["pirl"]["sampling"] == "ode"
    (task,) = info["per_task"]
    assert task["task_group"] == "libero_10" and task["task_id"] == 0 and task["n_episodes"] == 1
    assert info["overall"]["n_episodes"] == 1 and 0.0 <= info["overall"]["pc_success"] <= 100.0
    assert task["instruction"][:30] in res.stdout and "overall: mean success" in res.stdout
    (video,) = info["overall"]["video_paths"]
    outcome = "success" if episode["success"] else "failure"
    assert Path(video).name == f"task00_init000_ep000_{outcome}.mp4"
    frames = iio.imread(video)
    # initial obs + one per step; both cameras side by side at the size LIBERO renders for the policy
    size = render_size_for(cfg.env.camera_size)
    assert frames.shape == (episode["length"] + 1, size, 2 * size, 3)
