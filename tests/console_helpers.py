"""Shared helpers for the console tests.

The console under test is the real app; only the children are stand-ins
(``tools/screenshots/fake_child.py``: real processes that print, write real telemetry records and
exit with chosen codes), except where a test says it runs the real learner.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from textual.pilot import Pilot

from pirl_console.app import PirlConsole
from pirl_console.run_request import RunRequest
from pirl_console.screens.charts import ChartScreen
from pirl_console.screens.run import RunScreen
from pirl_console.settings import ConsoleSettings
from pirl_console.supervisor import live_group_members
from tests.e2e_helpers import ROOT
from tools.screenshots.fake_child import FakeCommands

SIZE = (140, 44)


def fast_settings(**changes: object) -> ConsoleSettings:
    settings = ConsoleSettings(
        scrollback=500,
        flush_s=0.05,
        hidden_flush_s=0.3,
        stats_s=0.3,
        telemetry_s=0.1,
        stop_timeouts=(3.0, 2.0),
    )
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


def toy_request(output_dir: Path, *overrides: tuple[str, str]) -> RunRequest:
    return RunRequest("toy", overrides=(("output_dir", str(output_dir)), *overrides))


def fake_app(
    output_dir: Path,
    learner: list[str],
    actor: list[str] | None = None,
    *overrides: tuple[str, str],
    settings: ConsoleSettings | None = None,
    autostart: bool = True,
) -> PirlConsole:
    """The console on the run screen (menu skipped), children replaced by fake_child."""
    commands = FakeCommands(learner_flags=learner, actor_flags=actor or ["--updates", "1"], cwd=str(ROOT))
    return PirlConsole(
        request=toy_request(output_dir, *overrides),
        skip_menu=True,
        autostart=autostart,
        commands=commands,
        settings=settings or fast_settings(),
    )


async def wait_for(
    pilot: Pilot, predicate: Callable[[], bool], timeout: float = 20.0, what: str = ""
) -> None:
    """Bounded pause loop: the UI keeps running while we wait."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        await pilot.pause(0.05)


async def open_charts(app: PirlConsole, pilot: Pilot) -> ChartScreen:
    """``p``: the chart view, returned once its success-rate chart is drawn."""
    await pilot.press("p")
    screen = app.screen
    assert isinstance(screen, ChartScreen), f"p opened {screen!r}"
    await wait_for(pilot, lambda: "success rate" in screen.charts, what="charts drawn")
    return screen


def run_screen(app: PirlConsole) -> RunScreen:
    screen = app.run_screen()
    assert screen is not None, f"no run screen in {app.screen_stack}"
    return screen


def descendants() -> list[psutil.Process]:
    """Live (non-zombie) processes below this test process, except multiprocessing's resource
    tracker: the first env-worker test in this pytest process starts it and it lives, by design,
    as long as the process (it is no child of the console's)."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and not _is_resource_tracker(proc):
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def _is_resource_tracker(proc: psutil.Process) -> bool:
    return any("multiprocessing.resource_tracker" in part for part in proc.cmdline())


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the group."""
    return bool(live_group_members(pgid))


def as_text(renderable: object, width: int = 120) -> str:
    """Plain text of a Rich renderable, as a terminal of ``width`` columns would show it."""
    from rich.console import Console

    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()
