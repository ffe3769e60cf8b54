"""``python -m pirl_core.checkpoints list|validate``: real subprocesses, text and --json, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pirl_core.checkpoints import layout
from pirl_core.telemetry import Telemetry
from tests.checkpoint_helpers import SMALL_TOY, saved_run, tree_digest
from tests.e2e_helpers import run_module


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("pirl_core.checkpoints", *args, timeout=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli")
    cfg, _ = saved_run(base, steps=(1, 2))
    with Telemetry(cfg.output_dir, "learner", stdout=open(os.devnull, "w")) as tel:  # noqa: SIM115
        tel.metrics(1, success_rate=0.25, return_mean=1.5, policy_loss=-0.1)
        tel.metrics(2, success_rate=0.5, return_mean=2.5, policy_loss=-0.2)
    dead_pid = 2**22 + 777
    (layout.checkpoints_root(cfg.output_dir) / f".tmp-000003-{dead_pid}").mkdir()
    return cfg.output_path


def _flags() -> list[str]:
    return [f"--{k}={v}" for k, v in SMALL_TOY.items()]


def test_list_json(run: Path) -> None:
    digest = tree_digest(run)
    proc = cli("list", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = data["checkpoints"]
    assert [(r["step"], r["complete"], r["last"], r["leftover"]) for r in rows] == [
        (1, True, False, False),
        (2, True, True, False),
        (3, False, False, True),
    ]
    assert rows[1]["version"] == 2 and rows[1]["counters"]["samples"] == 48
    assert rows[1]["metrics"]["success_rate"] == 0.5 and rows[0]["metrics"]["return_mean"] == 1.5
    assert rows[1]["size_bytes"] > 0 and rows[1]["saved_at"] > 0
    assert "leftover of a killed writer" in rows[2]["problem"]
    assert tree_digest(run) == digest, "listing writes nothing"


def test_list_text(run: Path) -> None:
    proc = cli("list", str(run))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["step", "saved", "size", "complete", "last", "version", "metrics"]
    row2 = next(ln for ln in lines if ln.startswith("2 "))
    assert "<- last" in row2 and "success_rate=0.5" in row2 and "yes" in row2
    assert any(ln.startswith("3 ") and "no: leftover" in ln for ln in lines)


def test_validate_ok_changed_fatal_unreadable_usage(run: Path) -> None:
    ok = cli("validate", str(run), "--profile", "toy", *_flags(), f"--output_dir={run}", "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["rows"] == [] and data["step"] == 2 and data["exit_code"] == 0

    changed = cli(
        "validate", str(run / "checkpoints" / "last"), *_flags(), f"--output_dir={run}", "--recipe.lr=0.5"
    )
    assert changed.returncode == 0, changed.stderr  # profile defaults to the checkpoint's ("toy")
    assert "compatible; changed tunables: recipe.lr" in changed.stdout
    assert "--recipe.lr=0.003 keeps the checkpoint's value" in changed.stdout

    fatal = cli(
        "validate", str(run / "checkpoints" / "000001"), *_flags(), "--recipe.denoise_steps=6", "--json"
    )
    assert fatal.returncode == 3, fatal.stderr
    data = json.loads(fatal.stdout)
    assert data["ok"] is False and data["exit_code"] == 3 and data["step"] == 1
    (row,) = [r for r in data["rows"] if r["severity"] == "fatal"]
    assert (row["field"], row["checkpoint"], row["current"]) == ("recipe.denoise_steps", 4, 6)

    text = cli("validate", str(run), *_flags(), "--recipe.denoise_steps=6")
    assert text.returncode == 3
    assert text.stdout.splitlines()[0].startswith("cannot resume from")
    assert "recipe.denoise_steps  4" in text.stdout

    usage = cli("validate", str(run), "--recipe.no_such_field=1")
    assert usage.returncode == 2 and "recipe.no_such_field" in usage.stderr
    assert cli("validate").returncode == 2
    assert cli("list", str(run / "nope")).returncode == 2


def test_validate_unreadable_exits_4_with_json(tmp_path: Path) -> None:
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    newest = layout.step_dir(cfg.output_dir, 2)
    (newest / "training_state" / "rng_state.safetensors").write_bytes(b"\0" * 3)
    proc = cli("validate", str(newest), "--json")
    assert proc.returncode == 4
    data = json.loads(proc.stdout)
    assert data["exit_code"] == 4 and "rng_state.safetensors has 3 bytes" in data["error"]
    assert f"--resume-from {layout.step_dir(cfg.output_dir, 1)}" in data["error"]
    listing = json.loads(cli("list", str(cfg.output_dir), "--json").stdout)["checkpoints"]
    assert [(r["step"], r["complete"]) for r in listing] == [(1, True), (2, False)]


def test_list_flags_a_dangling_last(tmp_path: Path) -> None:
    """Issue 8 finding 7: ``last`` pointing to a deleted checkpoint was listed as if all were well."""
    cfg, _ = saved_run(tmp_path, steps=(1, 2))
    fine = json.loads(cli("list", str(cfg.output_dir), "--json").stdout)
    assert fine["last"] == {"target": "000002", "dangling": False}
    shutil.rmtree(layout.step_dir(cfg.output_dir, 2))  # e.g. deleted by hand
    proc = cli("list", str(cfg.output_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["last"] == {"target": "000002", "dangling": True}
    assert [r["last"] for r in data["checkpoints"]] == [False]
    text = cli("list", str(cfg.output_dir)).stdout
    assert "points to 000002, which does not exist" in text and "--resume-from" in text
    shutil.rmtree(layout.step_dir(cfg.output_dir, 1))  # no checkpoint left at all: still flagged
    assert "which does not exist" in cli("list", str(cfg.output_dir)).stdout
