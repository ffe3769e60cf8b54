"""Run screen over real (stand-in) child processes: start order, stop escalation, restart,
exit codes, logs, telemetry, find, high-rate output, quit leaving nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pirl_console.screens.confirm import ConfirmScreen
from pirl_console.supervisor import ChildState
from pirl_console.widgets.pane_header import badge
from tests.console_helpers import (
    SIZE,
    descendants,
    fake_app,
    fast_settings,
    group_alive,
    run_screen,
    wait_for,
)


@pytest.fixture(autouse=True)
def _no_children_left_behind():
    yield
    left = descendants()
    assert not left, f"child processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


async def test_start_all_runs_learner_then_actors_after_ready(tmp_path: Path) -> None:
    app = fake_app(
        tmp_path,
        ["--ready-after", "3.0", "--updates", "3", "--interval", "0.3"],
        ["--updates", "2", "--interval", "0.2"],
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        learner, actor = screen.learner, screen.actors[0]
        await wait_for(pilot, lambda: learner.state is ChildState.STARTING, what="learner started")
        await pilot.pause(0.3)
        # the learner is ready >= 3 s after spawn: still well before that, actors must be idle
        assert actor.state is ChildState.IDLE, "actors wait for the learner's ready signal"
        await wait_for(pilot, lambda: actor.started_at is not None, what="actor started")
        assert learner.ready_at is not None and actor.started_at >= learner.ready_at
        await wait_for(
            pilot,
            lambda: learner.state is ChildState.EXITED and actor.state is ChildState.EXITED,
            what="both exited",
        )

        def caught_up() -> bool:  # telemetry is polled and output flushed on timers
            lines = list(screen.pane("learner").log_view.lines)
            done = screen.telemetry.progress() == (3, 3) and screen.telemetry.done is not None
            return done and bool(lines) and lines[-1].startswith("[learner] done")

        await wait_for(pilot, caught_up, what="telemetry and output caught up")
        assert (learner.exit_code, actor.exit_code) == (0, 0)
        assert badge(learner) == ("exited 0 · done", "done")

        lines = list(screen.pane("learner").log_view.lines)
        assert any("[learner] ready" in line for line in lines)
        assert lines[-1].startswith("[learner] done updates=3")
        assert screen.telemetry.progress() == (3, 3)
        assert screen.telemetry.done is not None
        assert screen.telemetry.metric("success_rate") is not None

        # Exactly the commands shown; each child's output also in <output_dir>/logs/<name>.log.
        assert screen.pane("learner").command == learner.spec.display()
        log = (tmp_path / "logs" / "learner.log").read_text()
        assert "[learner] done updates=3" in log and "=== exited 0 (done) ===" in log
        assert "connected" in (tmp_path / "logs" / "actor-0.log").read_text()


async def test_stop_escalates_to_the_process_group(tmp_path: Path) -> None:
    """A learner that ignores SIGINT and leaves a grandchild: SIGTERM ends the group."""
    app = fake_app(
        tmp_path,
        ["--ignore-sigint", "--grandchild", "--updates", "1", "--hold"],
        ["--updates", "1", "--hold"],
        settings=fast_settings(stop_timeouts=(0.5, 2.0)),
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        learner, actor = screen.learner, screen.actors[0]
        await wait_for(pilot, lambda: actor.state is ChildState.RUNNING, what="actor running")
        pgid = learner.pid
        assert pgid is not None and len(descendants()) >= 3  # learner, its sleep, actor
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen.any_alive(), what="all stopped")
        assert actor.exit_code == 130, "the actor honours SIGINT: clean exit 130"
        assert learner.exit_code == -15, "SIGINT ignored, SIGTERM after the timeout"
        assert badge(learner)[1] == "stopped"
        assert not group_alive(pgid), "the grandchild went with its group"
        await pilot.press("q")  # nothing runs: quits without asking
        await pilot.pause(0.2)
    assert app.return_value == 0


async def test_restart_one_pane(tmp_path: Path) -> None:
    app = fake_app(tmp_path, ["--updates", "1", "--hold"], ["--updates", "1", "--hold"])
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        actor = screen.actors[0]
        await wait_for(pilot, lambda: actor.state is ChildState.RUNNING, what="actor running")
        first_pid = actor.pid
        await pilot.press("2")  # focus the actor pane
        assert screen._focused_pane().child_name == "actor-0"
        await pilot.press("r")
        await wait_for(pilot, lambda: actor.restarts == 1 and actor.alive and actor.pid != first_pid)
        assert screen.learner.restarts == 0 and screen.learner.alive
        header = str(screen.pane("actor-0").query_one(".pane-header").render())
        assert "restarts 1" in header
        await screen.stop_all()


async def test_learner_failure_shows_code_and_keeps_actors_idle(tmp_path: Path) -> None:
    app = fake_app(tmp_path, ["--fail-early", "--exit-code", "5"])
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen.learner.state is ChildState.EXITED, what="learner exit")
        await pilot.pause(0.3)
        assert badge(screen.learner) == ("failed 5 · transport failure", "failed")
        assert screen.actors[0].state is ChildState.IDLE
        lines = list(screen.pane("learner").log_view.lines)
        assert any(line.startswith("error: fake learner refuses to start (exit 5)") for line in lines)


async def test_quit_asks_while_running_and_stops_everything(tmp_path: Path) -> None:
    app = fake_app(tmp_path, ["--updates", "1", "--hold", "--grandchild"], ["--updates", "1", "--hold"])
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen.actors[0].state is ChildState.RUNNING, what="actor running")
        pids = [c.pid for c in screen.children_by_name.values()]
        await pilot.press("q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.1)
        assert screen.any_alive(), "declining keeps the run going"
        await pilot.press("q")
        await pilot.pause(0.1)
        await pilot.press("y")
        await wait_for(pilot, lambda: app._exit_renderables is not None or not screen.any_alive())
    assert app.return_value == 0
    for pid in pids:
        assert pid is not None and not group_alive(pid)


async def test_find_and_follow(tmp_path: Path) -> None:
    app = fake_app(tmp_path, ["--updates", "6", "--interval", "0.01"])
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        await wait_for(pilot, lambda: screen.learner.state is ChildState.EXITED, what="learner exit")
        await pilot.pause(0.3)
        pane = screen.pane("learner")
        log = pane.log_view
        await pilot.press("1", "slash")
        assert pane.has_class("finding")
        await pilot.press(*"update=4")
        match = log.current_match
        assert match is not None and "update=4" in log.lines[match - log.evicted]
        assert log.follow is False, "finding pauses follow"
        assert log.match_position() == (1, 1)
        await pilot.press("escape")
        assert not pane.has_class("finding") and log.search == ""
        await pilot.press("f")
        assert log.follow is True
        await pilot.press("f")
        assert log.follow is False


async def test_high_rate_output_stays_capped_and_keys_answer(tmp_path: Path) -> None:
    """Two children print 5000 lines/s each; the UI keeps answering keys, scrollback stays capped,
    and the log files keep every line."""
    settings = fast_settings(scrollback=300)
    flood = ["--updates", "0", "--flood", "0", "--flood-rate", "5000"]
    app = fake_app(tmp_path, flood, flood, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        learner, actor = screen.learner, screen.actors[0]
        await wait_for(pilot, lambda: actor.total_lines > 2000, timeout=60, what="actor flooding")
        body = screen.query_one("#run-body")
        before = learner.total_lines
        await pilot.press("z")
        assert body.has_class("zoomed")
        await pilot.press("z")
        assert not body.has_class("zoomed")
        await pilot.press("2", "f")
        assert screen._focused_pane().child_name == "actor-0"
        assert screen.pane("actor-0").log_view.follow is False
        assert learner.total_lines > before + 1000, "children kept printing during the key presses"
        await wait_for(pilot, lambda: min(learner.total_lines, actor.total_lines) > 10000, timeout=60)
        await pilot.pause(0.4)  # a hidden-pane tick
        assert screen.pane("learner").log_view.is_vertical_scroll_end, "following shows the newest lines"
        for name in ("learner", "actor-0"):
            view = screen.pane(name).log_view
            assert 0 < view.line_count <= 300
            assert view.received > 300
            assert all("\x1b" not in line for line in view.lines), "ANSI escapes are stripped"
        await screen.stop_all()
        for name, child in (("learner", learner), ("actor-0", actor)):
            raw = (tmp_path / "logs" / f"{name}.log").read_bytes()
            # every line the child printed, plus the console's start and exit lines
            assert child.total_lines + 1 <= raw.count(b"\n") <= child.total_lines + 2, name
            assert raw.count(b"flood line") > 10000
