"""The console's non-UI parts: requests and their command lines, output handling of the
supervisor, telemetry tails and aggregation, the output view's cap and find."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from pirl_console.checkpoint_source import MismatchRow, read_mismatch_report
from pirl_console.commands import LEARNER_READY_MARKER, ChildSpec, HeadlessCommands, child_env
from pirl_console.run_request import (
    RunRequest,
    mismatch_report_path,
    normalise_list_text,
    validate_request,
    with_run_dir,
)
from pirl_console.screens.mismatch import apply_rows
from pirl_console.supervisor import ChildProcess, ChildState, exit_meaning, strip_ansi
from pirl_console.telemetry_feed import JsonlTail, RunTelemetry, TelemetryWatcher
from pirl_console.widgets.output_log import OutputLog
from pirl_core.config import parse_override
from pirl_core.errors import ExitCode
from pirl_core.launch import child_commands
from pirl_core.quoting import value_text
from tests.console_helpers import ROOT


def test_request_command_lines_are_the_headless_ones() -> None:
    """The console's children are `pirl_core.launch.child_commands` of the request's parsed
    arguments: the very command lines `make smoke` runs."""
    request = RunRequest("smoke", overrides=(("env.suite", "libero_spatial"), ("learner.updates", "5")))
    request = request.with_override("learner.updates", "7").with_override("env.suite", None)
    assert request.overrides == (("learner.updates", "7"),)
    config = request.config()
    commands = HeadlessCommands(python="/py", cwd="/somewhere")
    learner, actor = commands.specs(request.cli_args(config))
    assert learner.argv == ("/py", "-m", "pirl_core.learner", "--profile", "smoke", "--learner.updates=7")
    assert learner.ready_marker == LEARNER_READY_MARKER and actor.ready_marker is None
    assert actor.display() == "/py -m pirl_core.actor --profile smoke --actor-id 0 --learner.updates=7"
    assert learner.argv[3:] == child_commands(request.cli_args(config), "/py")[0].argv[3:]

    forked = RunRequest("smoke", resume=True, resume_from="/x/checkpoints/000004", overrides=(("seed", "1"),))
    learner, actor = commands.specs(forked.cli_args(forked.config()))
    report = str(mismatch_report_path(forked.config()))
    assert learner.argv[3:] == (
        "--profile",
        "smoke",
        "--resume-from",
        "/x/checkpoints/000004",
        "--seed=1",
        "--mismatch-json",
        report,
    )
    assert actor.argv[3:] == ("--profile", "smoke", "--actor-id", "0", "--seed=1")
    env = child_env({"PATH": "/bin", "MUJOCO_GL": "osmesa"})
    assert env["PYTHONUNBUFFERED"] == "1" and env["MUJOCO_GL"] == "osmesa"
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT)


def test_override_text_round_trips_through_the_cli_parser() -> None:
    for value in ("libero_10", "a b", "true", [0, 3], 5, 0.25, True, "outputs/x-1"):
        assert parse_override(f"k={value_text(value)}")[1] == value
    assert normalise_list_text("0, 1 2") == "[0, 1, 2]" and normalise_list_text("[4]") == "[4]"


def test_validation_names_the_field() -> None:
    bad = validate_request(RunRequest("smoke", overrides=(("env.suite", "x"), ("learner.updates", "-1"))))
    assert set(bad.errors) == {"env.suite", "learner.updates"} and bad.config is None
    unknown = validate_request(RunRequest("smoke", overrides=(("env.nope", "1"),)))
    assert "a known key in [env]" in unknown.errors["env.nope"]
    assert validate_request(RunRequest("no_such_profile")).errors["*"].startswith("--profile")


def test_run_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's run-dir rule is the launcher's (`pirl_core.launch.choose_run_dir`)."""
    monkeypatch.chdir(tmp_path)
    request = RunRequest("toy", overrides=(("learner.updates", "3"),))
    # new run: its own timestamped dir under the profile's output dir
    assert with_run_dir(request, now=0).override("output_dir") == value_text(
        f"outputs/toy/{time.strftime('%Y%m%d-%H%M%S', time.localtime(0))}"
    )
    explicit = request.with_override("output_dir", str(tmp_path / "out"))
    assert with_run_dir(explicit) is explicit
    # resume: the most recently checkpointed run; none: the request is left for validation to refuse
    resume = replace(request, resume=True)
    assert with_run_dir(resume) is resume and "resume" in validate_request(resume).errors
    base = tmp_path / "outputs" / "toy"
    for i, name in enumerate(("20250101-000000", "20250102-000000")):
        (base / name / "checkpoints" / "000001").mkdir(parents=True)
        os.utime(base / name / "checkpoints" / "000001", (0, 1000 + i))
    (base / "20250103-000000").mkdir()  # no checkpoints: never chosen
    assert with_run_dir(resume).override("output_dir") == "outputs/toy/20250102-000000"


def test_apply_rows_uses_the_saved_values() -> None:
    request = RunRequest("toy", overrides=(("recipe.denoise_steps", "8"),), resume=True)
    rows = [
        MismatchRow("recipe.denoise_steps", 4, 8, "fatal", "--recipe.denoise_steps=4", saved_text="4"),
        MismatchRow("env.task_ids", [0, 1], [2], "fatal", "", saved_text=None),
        MismatchRow("model.feature_dim", 32, 64, "fatal", "start a new output dir"),
        MismatchRow("output_dir", "a", "b", "changed", "allowed"),
    ]
    applied, skipped = apply_rows(request, rows)
    assert applied.override("recipe.denoise_steps") == "4"
    assert applied.override("env.task_ids") == "[0,1]"
    assert applied.override("output_dir") is None and skipped == ["model.feature_dim"]


def test_ansi_and_exit_meanings() -> None:
    assert strip_ansi("\x1b[1;32mok\x1b[0m \x1b]0;title\x07done") == "ok done"
    assert exit_meaning(ExitCode.RESUME_MISMATCH) == "resume mismatch"
    assert exit_meaning(-9) == "killed by SIGKILL" and exit_meaning(77) == "error"


async def test_child_output_lines_partial_writes_and_carriage_returns(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "sys.stdout.write('par'); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.write('tial\\nbar 10%\\rbar 100%\\n\\x1b[31mred\\x1b[0m\\n')\n"
        "sys.stdout.write('x' * 200000 + '\\n')\n"
        f"print('{LEARNER_READY_MARKER} now')\n"
        "sys.stdout.write('no newline at the end')\n"
        "sys.exit(4)\n"
    )
    states = []
    spec = ChildSpec(
        "learner", "learner", (sys.executable, "-c", script), child_env(), str(tmp_path), LEARNER_READY_MARKER
    )
    child = ChildProcess(
        spec, log_path=tmp_path / "logs" / "learner.log", on_change=lambda c: states.append(c.state)
    )
    await child.start()
    assert await child.wait() == 4
    lines = child.drain()
    assert lines[:3] == ["partial", "bar 100%", "red"]
    assert len(lines[3]) == 200000  # longer than asyncio's 64 KiB readline limit
    assert lines[4:] == [f"{LEARNER_READY_MARKER} now", "no newline at the end"]
    assert states == [ChildState.STARTING, ChildState.READY, ChildState.EXITED]
    log = (tmp_path / "logs" / "learner.log").read_bytes()
    assert b"\x1b[31mred" in log and b"=== exited 4 (checkpoint unreadable) ===" in log


async def test_spawn_failure_is_a_failed_state(tmp_path: Path) -> None:
    spec = ChildSpec("actor-0", "actor", (str(tmp_path / "missing-binary"),), {}, str(tmp_path))
    child = ChildProcess(spec)
    await child.start()
    assert child.state is ChildState.FAILED and not child.alive
    assert "could not start" in (child.error or "") and child.drain()


def test_jsonl_tail_skips_partial_lines_and_old_runs(tmp_path: Path) -> None:
    tel_dir = tmp_path / "telemetry"
    tel_dir.mkdir()
    old = tel_dir / "learner.jsonl"
    old.write_text(json.dumps({"kind": "metrics", "source": "learner", "step": 9}) + "\n")
    watcher = TelemetryWatcher(tmp_path, skip_existing=True)
    with old.open("a") as fh:
        fh.write(json.dumps({"kind": "metrics", "source": "learner", "step": 1, "ts": 10.0}) + "\n")
        fh.write('{"kind": "metr')
    assert [r["step"] for r in watcher.poll()] == [1]
    with old.open("a") as fh:
        fh.write('ics", "source": "learner", "step": 2, "ts": 11.0}\n')
    (tel_dir / "actor-0.jsonl").write_text(
        json.dumps({"kind": "event", "event": "connected", "ts": 11}) + "\n"
    )
    records = watcher.poll()
    assert [(r["source"], r.get("step")) for r in records] == [("actor-0", None), ("learner", 2)]
    tail = JsonlTail(old)
    assert len(tail.read_new()) == 3
    old.write_text("")  # truncated: start over
    assert tail.read_new() == []


def test_run_telemetry_progress_eta_and_staleness() -> None:
    tel = RunTelemetry()
    tel.apply([{"source": "learner", "kind": "event", "event": "ready", "ts": 100.0, "step": 0}])
    assert tel.eta_s() is None
    tel.apply(
        [{"source": "learner", "kind": "metrics", "ts": 110.0, "step": 1, "update": 1, "updates_total": 5}]
    )
    assert tel.eta_s() == 40.0  # 1 update in 10 s since ready, 4 to go
    tel.apply(
        [
            {"source": "learner", "kind": "metrics", "ts": 115.0, "step": 2, "update": 2, "updates_total": 5,
             "success_rate": 0.5, "approx_kl": "nan"},
            {"source": "actor-0", "kind": "metrics", "ts": 116.0, "env_steps_per_s": 100.0, "inference_ms": 30},
            {"source": "actor-1", "kind": "metrics", "ts": 90.0, "env_steps_per_s": 50.0, "inference_ms": 50},
        ]
    )  # fmt: skip
    assert tel.progress() == (2, 5) and tel.eta_s() == 15.0
    assert tel.actor_sum("env_steps_per_s") == 150.0 and tel.actor_mean("inference_ms") == 40.0
    assert list(tel.history["success_rate"]) == [0.5] and list(tel.history["approx_kl"]) == []
    assert tel.staleness(now=120.0) == {"learner": 5.0, "actor-0": 4.0, "actor-1": 30.0}
    tel.apply([{"source": "learner", "kind": "event", "event": "done", "ts": 121.0, "wall_s": 21.0}])
    assert tel.done is not None


class _LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputLog(max_lines=50)


async def test_output_log_caps_and_finds() -> None:
    app = _LogApp()
    async with app.run_test(size=(60, 12)) as pilot:
        log = app.query_one(OutputLog)
        log.append([f"line {i}" for i in range(120)])
        assert log.line_count == 50 and log.evicted == 70 and log.lines[0] == "line 70"
        await pilot.pause()
        assert log.is_vertical_scroll_end and log.scroll_y > 0, "follow shows the newest lines"
        assert log.set_search("LINE 9") == 10  # lines 90-99, case-insensitive
        first = log.find_next()
        assert first is not None and log.lines[first - log.evicted].lower().startswith("line 9")
        assert log.follow is False
        top = log.scroll_y
        log.append([f"more {i}" for i in range(10)])
        assert log.evicted == 80 and log.line_count == 50
        assert log.scroll_y == max(0, top - 10), "a paused view stays on the same text"
        second = log.find_next()
        assert second is not None and second > first
        assert log.match_position()[0] == 2
        log.follow = True
        await pilot.pause()
        assert log.is_vertical_scroll_end


def test_the_learners_json_report_becomes_the_mismatch_rows(tmp_path: Path) -> None:
    """Exit 3: the console reads the learner's `--mismatch-json` report (no table scraping), with
    typed saved values — also those the printed table truncates, and model rows no flag can set."""
    from pirl_core.checkpoints.identity import IdentityReport, Row

    long_path = "/data/" + "x" * 60
    report = IdentityReport(
        "ckpt",
        3,
        [
            Row("model.feature_dim", 32, 64, "fatal", "start a new output dir"),
            Row("env.task_ids", [0, 1], [2], "fatal", "--env.task_ids=[0,1] (or start a new output dir)"),
            Row("policy.pretrained_path", long_path, "other", "fatal", "…"),
            Row("recipe.lr", 0.001, 0.003, "changed", "allowed"),
        ],
    )
    path = tmp_path / "logs" / "resume-mismatch.json"
    path.parent.mkdir()
    path.write_text(json.dumps(report.to_dict()))
    result = read_mismatch_report(path)
    assert result is not None and result.step == 3 and result.summary == report.summary()
    assert [(r.field, r.severity, r.saved_text) for r in result.rows] == [
        ("model.feature_dim", "fatal", None),
        ("env.task_ids", "fatal", "[0,1]"),
        ("policy.pretrained_path", "fatal", long_path),
        ("recipe.lr", "changed", "0.001"),
    ]
    applied, skipped = apply_rows(RunRequest("toy"), result.rows)
    assert parse_override(f"k={applied.override('env.task_ids')}")[1] == [0, 1]
    assert applied.override("policy.pretrained_path") == long_path and skipped == ["model.feature_dim"]
    path.write_text('{"rows": [')  # torn or missing: no rows invented
    assert read_mismatch_report(path) is None and read_mismatch_report(tmp_path / "nope.json") is None


class _PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        from pirl_console.widgets.telemetry_panel import TelemetryPanel

        yield TelemetryPanel(stale_after_s=30)


async def test_telemetry_panel_flags_quiet_sources_and_bad_ratio() -> None:
    from pirl_console.widgets.telemetry_panel import TelemetryPanel
    from tests.console_helpers import as_text

    tel = RunTelemetry()
    tel.apply(
        [
            {
                "source": "learner",
                "kind": "metrics",
                "ts": 100.0,
                "update": 3,
                "updates_total": 10,
                "ratio_check": 0.2,
            },
            {"source": "actor-0", "kind": "metrics", "ts": 160.0, "env_steps_per_s": 321.0},
        ]
    )
    app = _PanelApp()
    async with app.run_test(size=(60, 40)):
        panel = app.query_one(TelemetryPanel)
        panel.show(tel, now=170.0, alive={"learner": True, "actor-0": True})
        sources = as_text(panel._sources(tel, 170.0, {"learner": True, "actor-0": True}))
        assert "learner  no metrics for 1:10" in sources and "actor-0  last record 0:10 ago" in sources
        # a learner that has exited is not "stale"
        assert "no metrics" not in as_text(panel._sources(tel, 170.0, {"learner": False, "actor-0": True}))
        numbers = as_text(panel._numbers(tel))
        assert "321" in numbers and "0.2" in numbers
        assert "update 3/10" in as_text(panel._progress(tel))
        # notable telemetry (any non-routine event, any error record) is listed by name and fields
        tel.apply(
            [
                {"source": "learner", "kind": "event", "event": "connected", "ts": 171.0},
                {"source": "learner", "kind": "event", "event": "actor_lost", "ts": 172.0, "actor_ids": [1],
                 "waited_s": 60},
                {"source": "actor-1", "kind": "error", "ts": 173.0, "message": "refused", "exit_code": 5},
            ]
        )  # fmt: skip
        sources = as_text(panel._sources(tel, 175.0, {"learner": True}))
        assert "! learner: actor_lost actor_ids=[1] waited_s=60" in sources
        assert "! actor-1: error: refused exit_code=5" in sources and "connected" not in sources


def test_module_entry_point_exits_2_on_a_bad_profile() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "pirl_console", "--profile", "smoke", "--env.suite=nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: env.suite: got 'nowhere', expected one of")
