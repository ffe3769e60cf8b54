"""``python -m pirl_core.report``: PNG curves and a markdown summary from JSONL telemetry."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from PIL import Image

from pirl_core.report import main
from pirl_core.series import PANELS, load_run
from pirl_core.telemetry import Telemetry
from tests.e2e_helpers import run_module


def fake_run(root: Path, name: str, lr: float, updates: int = 6, with_eval: bool = False) -> Path:
    """A run directory as the learner and an actor write it (same Telemetry class, same schema)."""
    out = root / name
    with (
        Telemetry(out, "learner", stdout=io.StringIO()) as learner,
        Telemetry(out, "actor-0", stdout=io.StringIO()) as actor,
    ):
        learner.event("ready", 0)
        for step in range(1, updates + 1):
            actor.metrics(step - 1, success_rate=0.1 * step, env_steps_per_s=900.0 + step, collect_s=0.5)
            learner.metrics(
                step,
                success_rate=0.1 * step,
                return_mean=0.2 * step,
                policy_loss=-0.01 * step,
                value_loss=1.0 / step,
                approx_kl=0.01,
                clip_frac=0.1,
                ratio_check=0.0,
                samples=100 * step,
                samples_per_s=250.0,
                update_s=0.4,
                push_s=0.01,
            )
            if with_eval and step % 3 == 0:
                learner._write("eval", step, {"success_rate": 0.15 * step})
        learner.event("done", updates, wall_s=12.5)
    config = out / "checkpoints" / "last" / "pretrained_model"
    config.mkdir(parents=True)
    (config / "train_config.json").write_text(
        json.dumps(
            {
                "profile": "toy",
                "seed": 0,
                "output_dir": str(out),
                "recipe": {"lr": lr, "method": "flow_noise"},
            }
        )
    )
    return out


def test_report_overlays_runs_and_summarises(tmp_path: Path, capsys) -> None:
    a = fake_run(tmp_path, "noise", lr=3e-3, with_eval=True)
    b = fake_run(tmp_path, "noise-lr", lr=1e-3, updates=4)
    assert main([str(a), str(b), "--out", str(tmp_path / "rep")]) == 0
    png = tmp_path / "rep" / "curves.png"
    with Image.open(png) as image:
        image.load()
        width, height = image.size
        assert width >= 600 and height >= 600
        assert len(image.getcolors(maxcolors=1_000_000) or []) > 10  # curves, not a blank canvas
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| noise | 6 | 600 | 0.6 | 0.6 (6) |" in summary
    assert "| noise-lr | 4 |" in summary
    assert "0.9 (6)" in summary  # best eval success at update 6
    assert "| recipe.lr | 0.003 | 0.001 |" in summary and "12.5 s" in summary
    assert "recipe.method" not in summary.split("Config differences")[1]  # equal: not a difference
    assert f"wrote {png}" in capsys.readouterr().out


def test_series_keep_the_latest_record_of_a_repeated_step(tmp_path: Path) -> None:
    out = fake_run(tmp_path, "run", lr=1e-3, updates=4)
    with Telemetry(out, "learner", stdout=io.StringIO()) as learner:  # resumed from step 2
        learner.metrics(3, success_rate=0.99, policy_loss=0.5)
    run = load_run(out)
    assert run.series["learner/success_rate"][2] == (3, 0.99)
    assert [s for s, _ in run.series["learner/success_rate"]] == [1, 2, 3, 4]
    assert run.series["actors/env_steps_per_s"][0] == (0, 901.0)
    time_panel = next(p for p in PANELS if p.title.startswith("time"))
    assert time_panel.names(run.series) == ["learner/push_s", "learner/update_s", "actors/collect_s"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_module("pirl_core.report", *args, timeout=120)


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = run_cli(str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: OUTPUT_DIR: got '{tmp_path / 'nope'}', expected an existing run directory (the run's --output_dir)"
    ]
    (tmp_path / "empty").mkdir()
    empty = run_cli(str(tmp_path / "empty"), "--out", str(tmp_path / "rep"))
    assert empty.returncode == 2 and "telemetry/*.jsonl" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()  # nothing written
    assert run_cli().returncode == 2
