"""The run controller without any UI: real stand-in children (``tools/screenshots/fake_child.py``) on a
bare asyncio loop; what it tells the view is the list of messages it posted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.message import Message

from pirl_console.messages import ChildChanged, MismatchFound, Notice
from pirl_console.run_controller import RunController
from pirl_console.supervisor import ChildState
from pirl_core.errors import ExitCode
from tests.console_helpers import ROOT, descendants, fast_settings, toy_request
from tools.screenshots.fake_child import FakeCommands


@pytest.fixture(autouse=True)
def _no_children_left_behind():
    yield
    left = descendants()
    assert not left, f"child processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


def controller(
    tmp_path: Path, learner: list[str], actor: list[str] | None = None, *, resume: bool = False
) -> tuple[RunController, list[Message]]:
    posted: list[Message] = []
    request = replace(toy_request(tmp_path), resume=resume)
    commands = FakeCommands(learner_flags=learner, actor_flags=actor or ["--updates", "1"], cwd=str(ROOT))
    run = RunController(
        request, request.config(), commands=commands, settings=fast_settings(), post=posted.append
    )
    return run, posted


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def notices(posted: list[Message]) -> list[Notice]:
    return [m for m in posted if isinstance(m, Notice)]


async def test_actors_start_only_once_the_learner_is_ready(tmp_path: Path) -> None:
    run, posted = controller(tmp_path, ["--ready-after", "1.0", "--updates", "2"], ["--updates", "1"])
    learner, actor = run.learner, run.actors[0]
    assert await run.start_all() is True
    while learner.state is ChildState.STARTING:  # not ready yet: no actor may have started
        assert actor.state is ChildState.IDLE and actor.starts == 0
        await asyncio.sleep(0.02)
    await until(lambda: actor.started_at is not None, "actor started")
    assert learner.ready_at is not None and actor.started_at >= learner.ready_at
    await until(lambda: not run.any_alive(), "both exited")
    assert (learner.exit_code, actor.exit_code) == (ExitCode.OK, ExitCode.OK)
    changed = [m.name for m in posted if isinstance(m, ChildChanged)]
    assert changed[0] == "learner" and "actor-0" in changed
    assert [n.title for n in notices(posted)] == ["run complete"]


async def test_stop_all_stops_everything_and_drops_queued_actor_starts(tmp_path: Path) -> None:
    run, posted = controller(tmp_path, ["--updates", "1", "--hold"], ["--updates", "1", "--hold"])
    await run.start_all()
    # running Python code (its SIGINT handler in place), not just spawned
    await until(lambda: any("connected" in line for line in run.actors[0].last_lines), "actor connected")
    generation = run.generation
    await run.stop_all()
    assert not run.any_alive() and run.generation == generation + 1
    assert run.learner.exit_code == ExitCode.INTERRUPTED and run.actors[0].exit_code == ExitCode.INTERRUPTED
    assert not [n for n in notices(posted) if n.severity == "error"], "a requested stop is not a failure"

    # an actor start queued before a stop must not run after it
    starts = run.actors[0].starts
    run._start_actors()
    await run.stop_all()
    await asyncio.sleep(0.2)
    assert run.actors[0].starts == starts and not run.any_alive()


async def test_exit_3_yields_the_learners_json_report(tmp_path: Path) -> None:
    run, posted = controller(tmp_path, ["--fail-early", "--exit-code", "3"], resume=True)
    assert "--mismatch-json" in run.learner.spec.argv
    await run.start_all()
    await until(lambda: any(isinstance(m, MismatchFound) for m in posted), "mismatch report")
    (found,) = [m for m in posted if isinstance(m, MismatchFound)]
    assert found.reason == "error: fake learner refuses to start (exit 3)"
    assert [(r.field, r.saved, r.current, r.saved_text) for r in found.result.fatal] == [
        ("recipe.denoise_steps", 4, 8, "4"),
        ("model.feature_dim", 32, 64, None),
    ]
    assert run.last_mismatch is found and run.actors[0].state is ChildState.IDLE


async def test_exit_3_without_a_report_says_so(tmp_path: Path) -> None:
    run, posted = controller(tmp_path, ["--fail-early", "--exit-code", "3"], resume=False)
    await run.start_all()
    await until(lambda: any(isinstance(m, MismatchFound) for m in posted), "mismatch notice")
    (found,) = [m for m in posted if isinstance(m, MismatchFound)]
    assert found.result.rows == [] and "wrote no readable report" in (found.result.unreadable or "")


async def test_restart_one_child(tmp_path: Path) -> None:
    run, _ = controller(tmp_path, ["--updates", "1", "--hold"], ["--updates", "1", "--hold"])
    await run.start_all()
    actor = run.actors[0]
    await until(lambda: actor.alive, "actor started")
    first = actor.pid
    await run.restart("actor-0")
    assert actor.alive and actor.pid != first and actor.restarts == 1
    assert run.learner.restarts == 0 and run.learner.alive
    await run.stop_all()


async def test_notable_telemetry_becomes_notices_by_event_name(tmp_path: Path) -> None:
    """`actor_lost` (or any event that is not routine lifecycle) and `kind: error` records reach
    the researcher without per-event code; routine events do not."""
    run, posted = controller(
        tmp_path, ["--event", "actor_lost:actor_id=1,waited_s=60", "--event", "brand_new:x=y", "--hold"]
    )
    await run.start_all()
    await until(lambda: run.learner.alive and run.learner.ready_at is not None, "learner ready")
    for _ in range(200):
        run.apply_telemetry(run.read_telemetry())
        if len(run.telemetry.notices) >= 2:
            break
        await asyncio.sleep(0.05)
    run.apply_telemetry(
        [{"source": "actor-0", "kind": "error", "message": "no learner answered", "exit_code": 5, "ts": 1.0}]
    )
    texts = [(n.severity, n.text) for n in notices(posted)]
    assert ("warning", "learner: actor_lost actor_id=1.0 waited_s=60.0") in texts
    assert ("warning", "learner: brand_new x=y") in texts
    assert ("error", "actor-0: error: no learner answered exit_code=5") in texts
    assert not [t for t in texts if "ready" in t[1] or "connected" in t[1]]
    assert [r.get("event", "error") for r in run.telemetry.notices] == ["actor_lost", "brand_new", "error"]
    await run.stop_all()
