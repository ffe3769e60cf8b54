"""Issue 20, finding 3: a full, read-only or forbidden filesystem is one line and exit 8.

Each write site gets an injected ``OSError`` (ENOSPC, EROFS, EACCES): the checkpoint writer at every
stage (through its crash-test hook, ``fsutil.pause_point``, and safetensors' own error type), the
``last`` switch, telemetry, the evaluation results and the mismatch report. Each must name the path
and the cause, leave no partial directory, keep ``last`` where it was, and a resume must work
once the fault is gone. The end-to-end test fills a real tmpfs (a private mount namespace via
``unshare``) while the learner is parked before its second checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pirl_core.checkpoints import fsutil, layout, resume, store
from pirl_core.errors import ExitCode, StorageError
from pirl_core.storage import write_text_atomic
from pirl_core.telemetry import Telemetry, read_records, telemetry_path
from tests.checkpoint_helpers import counters, saved_run
from tests.e2e_helpers import ROOT, child_env

STAGES = [
    "start",
    "pretrained_model",
    "rl_heads",
    "train_config",
    "optimizer:policy",
    "rng_state",
    "training_step",
]
FAULTS = {
    errno.ENOSPC: "No space left on device",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
}


@pytest.fixture(scope="module")
def one_saved(tmp_path_factory: pytest.TempPathFactory):
    """A toy run with checkpoint 1 saved; each test copies it."""
    base = tmp_path_factory.mktemp("faults")
    cfg, trainer = saved_run(base, steps=(1,))
    return cfg, trainer


def _copy(one_saved, tmp_path: Path):
    import dataclasses

    cfg, trainer = one_saved
    shutil.copytree(cfg.output_dir, tmp_path / "run", symlinks=True)
    return dataclasses.replace(cfg, output_dir=str(tmp_path / "run")), trainer


def _fail_at(monkeypatch, event: str, code: int, filename: str | None = None) -> None:
    real = fsutil.pause_point

    def pause(step: int, name: str) -> None:
        if name == event:
            raise OSError(code, os.strerror(code), filename)
        real(step, name)

    monkeypatch.setattr(fsutil, "pause_point", pause)


def _entries(run: Path) -> list[str]:
    return sorted(p.name for p in layout.checkpoints_root(run).iterdir())


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", sorted(FAULTS))
def test_checkpoint_fault_at_each_stage(
    one_saved, tmp_path: Path, monkeypatch, stage: str, code: int
) -> None:
    cfg, trainer = _copy(one_saved, tmp_path)
    run = cfg.output_path
    target = str(layout.checkpoints_root(run) / f".tmp-000002-{os.getpid()}" / "pretrained_model")
    _fail_at(monkeypatch, stage, code, target)
    with pytest.raises(StorageError) as info:
        resume.save(cfg, 2, trainer, counters(2))
    err = info.value
    assert err.exit_code == ExitCode.STORAGE == 8
    line = err.line()
    assert "\n" not in line and line.startswith("error: checkpoint step 2 not written to ")
    assert target in line and f"{FAULTS[code]} [{errno.errorcode[code]}]" in line
    assert f"checkpoints/last still points to {layout.step_dir(run, 1).resolve()}" in line
    assert "needs about" in line and "--resume" in line
    assert _entries(run) == ["000001", "last"], "no partial checkpoint directory, no temp link"
    assert layout.last_pointer(run) == layout.step_dir(run, 1).resolve()

    monkeypatch.undo()  # the fault is gone: the same save succeeds and a resume plan finds it
    resume.save(cfg, 2, trainer, counters(2))
    assert _entries(run) == ["000001", "000002", "last"]
    plan = resume.prepare_run(cfg, resume=True)
    assert plan is not None and plan.step == 2


def test_safetensors_disk_full_is_recognised(one_saved, tmp_path: Path, monkeypatch) -> None:
    """safetensors does not raise OSError: its own error carries the OS error code."""
    from safetensors import SafetensorError

    cfg, trainer = _copy(one_saved, tmp_path)

    def full(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(store, "save_file", full)
    with pytest.raises(StorageError, match=r"No space left on device \[ENOSPC\]"):
        resume.save(cfg, 2, trainer, counters(2))
    assert _entries(cfg.output_path) == ["000001", "last"]


def test_last_switch_fault_leaves_no_temp_link(one_saved, tmp_path: Path, monkeypatch) -> None:
    cfg, trainer = _copy(one_saved, tmp_path)
    _fail_at(monkeypatch, "last:link", errno.ENOSPC)
    with pytest.raises(StorageError):
        resume.save(cfg, 2, trainer, counters(2))
    run = cfg.output_path
    # the new checkpoint is complete (renamed into place); `last` was not switched, and a resume
    # takes the newer complete one
    assert _entries(run) == ["000001", "000002", "last"]
    assert layout.last_pointer(run) == layout.step_dir(run, 1).resolve()
    monkeypatch.undo()
    assert resume.prepare_run(cfg, resume=True).step == 2


def test_telemetry_fault_is_one_error_then_silent(tmp_path: Path, capsys) -> None:
    tel = Telemetry(tmp_path, "learner")
    tel.event("run", echo=False)

    class Full:
        closed = False

        def write(self, text: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None: ...

        def close(self) -> None:
            self.closed = True

    real, tel._file = tel._file, Full()
    with pytest.raises(StorageError) as info:
        tel.metrics(1, loss=0.5)
    assert info.value.line() == (
        f"error: cannot write learner telemetry {telemetry_path(tmp_path, 'learner')}: No space left on "
        "device [ENOSPC]; earlier records and checkpoints are intact; free space or fix permissions, then --resume"
    )
    tel.error("the error the process exits with", 1)  # does not replace that error with its own
    tel.close()
    real.close()
    assert [r["event"] for r in read_records(telemetry_path(tmp_path, "learner"))] == ["run"]


def test_telemetry_that_cannot_open_names_its_file(tmp_path: Path, monkeypatch) -> None:
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(
        StorageError, match=r"actor-0 telemetry .*actor-0\.jsonl: Permission denied \[EACCES\]"
    ):
        Telemetry(tmp_path, "actor-0")


def test_eval_results_and_reports_write_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "eval_info.json"
    target.write_text("{}")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        StorageError, match=r"cannot write the evaluation results .*eval_info\.json: No space"
    ):
        write_text_atomic(target, json.dumps({"success": 1.0}), "the evaluation results")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval_info.json"] and target.read_text() == "{}"


def test_any_entry_point_turns_a_disk_fault_into_one_line(tmp_path: Path) -> None:
    """Whatever write hit the fault (here a demo dataset's), run_main prints one line, exit 8."""
    script = (
        "import errno, sys\n"
        "from pirl_core.cli import run_main\n"
        "def main():\n"
        "    raise OSError(errno.EROFS, 'Read-only file system', '/data/demos/episode_000.parquet')\n"
        "run_main(main)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == ExitCode.STORAGE
    assert proc.stderr.strip().splitlines() == [
        "error: cannot write to /data/demos/episode_000.parquet: Read-only file system [EROFS]; the "
        "filesystem is read-only: remount it read-write or choose another --output_dir"
    ]


# --------------------------------------------------------------------------- a real full disk

SCENARIO = ROOT / "tests" / "disk_full_scenario.py"


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=1m tmpfs /tmp",
        ],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` and a tmpfs mount (user namespaces)")
def test_a_full_disk_mid_run_then_resume(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, str(SCENARIO), str(tmp_path)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    full = result["full"]
    assert full["code"] == ExitCode.STORAGE, full["output"][-3000:]
    # the learner's one line (its actor, whose telemetry shares the disk, may say the same first)
    errors = [ln for ln in full["output"].splitlines() if "learner |" in ln and "error:" in ln]
    assert len(errors) == 1 and "No space left on device [ENOSPC]" in errors[0], full["output"][-3000:]
    assert "checkpoint step 2 not written" in errors[0] and "checkpoints/last still points to" in errors[0]
    # every other error line is the same cause, or an actor told that its learner stopped on it
    assert all(
        "[ENOSPC]" in ln or "learner stopped with an error" in ln
        for ln in full["output"].splitlines()
        if "error:" in ln
    ), full["output"][-3000:]
    assert "Traceback" not in full["output"]
    assert full["entries"] == ["000001", "last"] and full["last"] == "000001"
    resumed = result["resumed"]
    assert resumed["code"] == 0, resumed["output"][-3000:]
    assert resumed["entries"] == ["000001", "000002", "000003", "last"] and resumed["last"] == "000003"
