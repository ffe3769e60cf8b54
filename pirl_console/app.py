"""The pirl console application: screens, shared services, and a quit that stops children.

Services are injected (command builder, checkpoint source, settings) so the same app runs
the real learner/actor in production and stand-in scripts in tests and screenshots.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding

from pirl_console.checkpoint_source import CheckpointSource, CoreCheckpointSource
from pirl_console.commands import CommandBuilder, HeadlessCommands
from pirl_console.messages import RunRequested
from pirl_console.run_request import RunRequest
from pirl_console.screens.confirm import ConfirmScreen
from pirl_console.screens.menu import MenuScreen
from pirl_console.screens.run import RunScreen
from pirl_console.settings import ConsoleSettings
from pirl_core.config import PROFILES_DIR, RunConfig
from pirl_core.errors import ConfigError


class PirlConsole(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "pirl console"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
        Binding("p", "charts", "Charts"),
    ]

    def __init__(
        self,
        *,
        request: RunRequest | None = None,
        skip_menu: bool = False,
        autostart: bool = True,
        profiles_dir: Path = PROFILES_DIR,
        commands: CommandBuilder | None = None,
        checkpoint_source: CheckpointSource | None = None,
        settings: ConsoleSettings | None = None,
    ) -> None:
        super().__init__()
        self.initial_request = request
        self.skip_menu = skip_menu and request is not None
        self.autostart = autostart
        self.profiles_dir = Path(profiles_dir)
        self.commands: CommandBuilder = commands or HeadlessCommands()
        self.checkpoint_source: CheckpointSource = checkpoint_source or CoreCheckpointSource()
        self.settings = settings or ConsoleSettings()
        self._quitting = False

    def on_mount(self) -> None:
        self.push_screen(MenuScreen(self.profiles_dir, self.initial_request))
        if self.skip_menu and self.initial_request is not None:
            try:
                config = self.initial_request.config()
            except ConfigError as err:  # __main__ validated already; stay on the menu
                self.notify(err.message, severity="error")
                return
            self.start_run(self.initial_request, config, autostart=self.autostart)

    # ------------------------------------------------------------------ runs
    def run_screen(self) -> RunScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen
        return None

    def start_run(self, request: RunRequest, config: RunConfig, autostart: bool = True) -> RunScreen:
        screen = RunScreen(
            request,
            config,
            commands=self.commands,
            checkpoints=self.checkpoint_source,
            settings=self.settings,
            autostart=autostart,
        )
        self.push_screen(screen)
        return screen

    @on(RunRequested)
    def _run_requested(self, message: RunRequested) -> None:
        """From the menu: open a run screen. From a run screen (a resume choice, applied saved
        values): run the request in its place."""
        old = self.run_screen()
        if old is not None:
            self.replace_run(old, message.request)
            return
        try:
            config = message.request.config()
        except ConfigError as err:
            self.notify(f"cannot start: {err.message}", severity="error", timeout=10)
            return
        self.start_run(message.request, config)

    def replace_run(self, old: RunScreen, request: RunRequest) -> None:
        """Run ``request`` instead of ``old``'s (after a resume choice or applied saved values)."""
        try:
            config = request.config()
        except ConfigError as err:
            self.notify(f"cannot start: {err.message}", severity="error", timeout=10)
            return
        for screen in self.screen_stack:
            if isinstance(screen, MenuScreen):
                screen.apply_request(request)
        while self.screen is not old and len(self.screen_stack) > 1:
            self.pop_screen()
        if old.apply_request(request, config):
            old.action_start_all()
            return
        self.pop_screen()
        self.start_run(request, config)

    # ------------------------------------------------------------------ charts
    def action_charts(self) -> None:
        from pirl_console.screens.charts import ChartScreen, chart_runs_for

        if isinstance(self.screen, ChartScreen):
            return
        runs = chart_runs_for(self.screen)
        if not runs:
            self.notify("nothing to chart here: open a run or the checkpoint browser", severity="warning")
            return
        self.push_screen(ChartScreen(runs))

    # ------------------------------------------------------------------ quit
    async def action_quit(self) -> None:
        run = self.run_screen()
        if run is None or not run.any_alive():
            self.exit(0)
            return
        if self._quitting:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._quitting = True
                self.notify("stopping the run before quitting…", timeout=5)
                self.run_worker(self._stop_and_exit(run), group="quit", exit_on_error=False)

        self.push_screen(
            ConfirmScreen("The run is still going. Stop the learner and actors, then quit?", "Stop & quit"),
            answered,
        )

    async def _stop_and_exit(self, run: RunScreen) -> None:
        try:
            await run.stop_all()
        finally:
            self.exit(0)
