"""In-round progress in the console: an actor's ``progress`` events become its pane's progress bar
with the round's ETA, and the learner's ``waiting`` notice warns only about silent actors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pirl_console.telemetry_feed import RunTelemetry, round_progress
from pirl_console.widgets.round_progress import RoundProgress, progress_text
from pirl_core.progress import VersionProgress
from tests.console_helpers import SIZE, as_text, descendants, fake_app, run_screen, wait_for

PROGRESS = {"source": "actor-0", "kind": "event", "event": "progress", "step": 3, "ts": 100.0}
PROGRESS.update(VersionProgress(3, 3, 8, 1560, 31.2, 0.4, 46.8).fields())


def _waiting(**fields: object) -> dict[str, object]:
    base = {"source": "learner", "kind": "event", "event": "waiting", "ts": 90.0, "missing_actors": [0]}
    return {**base, **fields}


@pytest.fixture(autouse=True)
def _no_children_left_behind():
    yield
    left = descendants()
    assert not left, f"child processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


def test_progress_events_become_the_panes_view_with_a_counting_down_eta() -> None:
    tel = RunTelemetry()
    tel.apply([PROGRESS])
    actor = tel.sources["actor-0"]
    # every few seconds: kept apart, so they neither flush the events worth keeping nor raise notices
    assert actor.progress == PROGRESS and not actor.events and not tel.notices
    view = round_progress(actor, now=110.0)
    assert view is not None and not view.collected
    assert (view.version, view.episodes_done, view.episodes_planned, view.env_steps) == (3, 3, 8, 1560)
    assert view.fraction == 0.4 and view.eta_s == pytest.approx(36.8)  # 46.8 s, written 10 s ago
    line = as_text(progress_text(view))
    assert "v3" in line and "40%" in line and "3/8 episodes" in line and "1560 env steps" in line
    assert "ETA 0:36" in line
    assert round_progress(actor, now=500.0).eta_s == 0.0  # overdue: 0, never negative
    # the version's metrics record (written after the last report) means it is collected and sent
    tel.apply([{"source": "actor-0", "kind": "metrics", "ts": 120.0, "version": 3, "env_steps": 4100}])
    done = round_progress(tel.sources["actor-0"], now=121.0)
    assert done.collected and done.fraction == 1.0 and done.episodes_done == 8 and done.env_steps == 4100
    assert "collected, next: v4" in as_text(progress_text(done))
    # a fast actor finishes versions between two reports: the bar names the newest one collected
    tel.apply([{"source": "actor-0", "kind": "metrics", "ts": 130.0, "version": 5, "env_steps": 3900}])
    assert round_progress(tel.sources["actor-0"], now=131.0).version == 5
    assert round_progress(tel.sources["actor-0"], now=121.0) is not None
    assert round_progress(None, now=0.0) is None


def test_waiting_notice_is_notable_only_when_it_names_a_silent_actor() -> None:
    busy = _waiting(busy_actors=[0], silent_actors=[], status="actor 0 busy: 3 of 8 episodes in")
    silent = _waiting(busy_actors=[], silent_actors=[0], status="actor 0 silent for 45 s")
    legacy = _waiting()  # a learner that does not tell busy from silent: taken at its word
    assert not RunTelemetry.notable(busy)
    assert RunTelemetry.notable(silent) and RunTelemetry.notable(legacy)
    assert not RunTelemetry.notable(PROGRESS)


async def test_actor_pane_shows_the_bar_and_only_a_silent_actor_raises_a_toast(tmp_path: Path) -> None:
    """The fake actor reports progress for the version it works on; the fake learner writes the
    waiting notice twice: actor 0 busy (no toast), then actor 0 silent (a warning toast)."""
    busy = "waiting:missing_actors=[0],busy_actors=[0],silent_actors=[],status=actor 0 busy"
    silent = "waiting:missing_actors=[0],busy_actors=[],silent_actors=[0],status=actor 0 silent for 45 s"
    app = fake_app(
        tmp_path,
        ["--updates", "0", "--hold", "--event", busy, "--event", silent],
        ["--updates", "1", "--progress", "--hold"],
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = run_screen(app)
        bar = screen.pane("actor-0").query_one(RoundProgress)
        await wait_for(
            pilot,
            lambda: bar.display and "v1" in as_text(bar.render()) and len(screen.telemetry.notices) >= 1,
            what="the actor's progress bar for version 1 and the learner's notices",
        )
        line = as_text(bar.render())
        assert "3/8 episodes" in line and "ETA" in line and "40%" in line
        assert not screen.pane("learner").query_one(RoundProgress).display  # the learner has no bar
        assert screen.actors[0].state.value == "running"  # reporting progress: it is collecting
        toasts = [n.message for n in app._notifications]
        waiting = [t for t in toasts if "waiting" in t]
        assert waiting == [next(t for t in toasts if "silent_actors=[0.0]" in t)], toasts
        assert [r["status"] for r in screen.telemetry.notices] == ["actor 0 silent for 45 s"]
        await screen.stop_all()
