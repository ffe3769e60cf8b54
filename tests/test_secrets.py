"""Issue 20, finding 2: the auth token is never persisted or printed.

A toy run with the inline token (``--learner.auth_token=S``), TensorBoard and W&B offline on: every
file the run writes (checkpoints, telemetry, TensorBoard events, the W&B run) and everything it
prints is grepped for the secret. The resume gives the token again in its file form (the
checkpoint does not hold it) and is grepped the same way. Then the smaller paths: a bad value for
the secret field, the console's pane and log line, a config rebuilt from a checkpoint.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pirl_core.config import config_from_dict, load_config
from pirl_core.errors import ExitCode
from pirl_core.redact import REDACTED, redact_argv, redact_config
from tests.e2e_helpers import TINY_TOY, run_flags, run_module

SECRET = "S3cr3t-tok3n-9f2c"
FILE_SECRET = "f1le-s3cret-77ab"


def _launch(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_module("pirl_core.launch", *argv, cwd=cwd)


def _files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return hits


@pytest.mark.slow
def test_a_run_writes_and_prints_the_token_nowhere(tmp_path: Path) -> None:
    run = tmp_path / "run"
    flags = run_flags(
        run, *TINY_TOY, "--checkpoint.every=1", "--telemetry.tensorboard=true", "--telemetry.wandb=offline"
    )
    first = _launch(tmp_path, *flags, "--learner.updates=2", f"--learner.auth_token={SECRET}")
    printed = first.stdout + first.stderr
    assert first.returncode == 0, printed[-3000:]
    assert SECRET not in printed
    assert f"--learner.auth_token={REDACTED}" in first.stdout  # the echoed command lines
    assert list(run.glob("wandb/offline-run-*")) and list(run.glob("tensorboard/learner/*"))
    assert not _files_holding(tmp_path, (SECRET,))
    saved = json.loads(
        (run / "checkpoints" / "000002" / "pretrained_model" / "train_config.json").read_text()
    )
    assert saved["learner"]["auth_token"] == REDACTED  # that a token was used is kept, not the token

    # Resume: the checkpoint has no token to offer; the run is given one again (the file form).
    token_file = tmp_path / "secrets" / "token"
    token_file.parent.mkdir()
    token_file.write_text(FILE_SECRET + "\n")
    backends_off = [
        "--telemetry.tensorboard=false",
        "--telemetry.wandb=off",
    ]  # checked above; W&B starts slowly
    resumed = _launch(
        tmp_path,
        *flags,
        *backends_off,
        "--resume",
        "--learner.updates=3",
        f"--learner.auth_token_file={token_file}",
    )
    printed = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, printed[-3000:]
    assert SECRET not in printed and FILE_SECRET not in printed
    assert not _files_holding(run, (SECRET, FILE_SECRET))


def test_error_messages_and_echoed_commands_hide_the_token(tmp_path: Path) -> None:
    # a value the field refuses: the line names the field, not the value
    proc = run_module("pirl_core.learner", "--profile", "toy", "--learner.auth_token=123456789", timeout=120)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.strip() == f"error: learner.auth_token: got '{REDACTED}', expected a string"

    from pirl_console.commands import ChildSpec

    argv = (
        "python",
        "-m",
        "pirl_core.actor",
        f"--learner.auth_token={SECRET}",
        "--learner.auth_token",
        SECRET,
    )
    assert SECRET not in ChildSpec("actor-0", "actor", argv).display()
    assert redact_argv(argv)[3:] == [f"--learner.auth_token={REDACTED}", "--learner.auth_token", REDACTED]


def test_saved_configs_hold_no_token_and_a_rebuilt_one_asks_again(tmp_path: Path) -> None:
    cfg = load_config("toy", [f"output_dir={tmp_path}", f"learner.auth_token={SECRET}"])
    saved = redact_config(cfg)
    assert SECRET not in json.dumps(saved) and cfg.learner.auth_token == SECRET  # the live one is intact
    assert config_from_dict(saved).learner.auth_token == ""
    unset = redact_config(load_config("toy", [f"output_dir={tmp_path}"]))
    assert unset["learner"]["auth_token"] == ""
