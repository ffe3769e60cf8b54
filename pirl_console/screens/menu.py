"""Profile menu: pick a profile, adjust the common fields, see the exact commands, start.

Nothing starts until the real config loader accepts the request; each of its messages is
shown under the field it concerns. ``smoke`` is preselected and the table has focus, so one
key (enter, or ``s``) starts the default run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Static

from pirl_console.checkpoint_source import ValidationResult
from pirl_console.commands import CommandBuilder
from pirl_console.messages import ResumeChecked, RunRequested
from pirl_console.profiles import profile_rows
from pirl_console.run_request import RunRequest, Validation, validate_request, with_run_dir
from pirl_console.screens.checkpoints import CheckpointScreen, ResumeChoice
from pirl_console.screens.mismatch import MismatchScreen
from pirl_console.widgets.overrides_form import FIELDS, FormValues, OverridesForm
from pirl_console.widgets.profile_table import ProfileTable
from pirl_core.config import DEFAULT_PROFILE
from pirl_core.launch import newest_run_dir


def request_from_form(profile: str, profiles_dir: Path, values: FormValues) -> tuple[RunRequest, set[str]]:
    """The request the form describes, and which override keys came from the free-form field."""
    request = RunRequest(profile=profile, profiles_dir=profiles_dir)
    request = request.with_overrides(dict(values.fields))
    extra_keys = set()
    for item in values.extra:
        key, value = item.split("=", 1)
        request = request.with_override(key.strip(), value)
        extra_keys.add(key.strip())
    resume_from = values.resume_from or None
    return replace(
        request, resume=values.resume, resume_from=resume_from if values.resume else None
    ), extra_keys


class MenuScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("c", "checkpoints", "Checkpoints"),
        Binding("v", "validate_resume", "Check resume"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, profiles_dir: Path, initial: RunRequest | None = None) -> None:
        super().__init__(classes="menu-screen")
        self.profiles_dir = profiles_dir
        self.initial = initial
        self.profile = initial.profile if initial is not None else DEFAULT_PROFILE
        self.request = initial or RunRequest(profile=self.profile, profiles_dir=profiles_dir)
        self.validation = Validation(None, {"*": "not validated yet"})
        self._extra_keys: set[str] = set()
        self.last_values: FormValues | None = None  # what the shown verdict was computed from

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            "Pick a profile (↑/↓), adjust overrides if needed, then press enter or s to start.",
            id="menu-intro",
        )
        yield ProfileTable(id="profile-table")
        with Horizontal(id="menu-lower"):
            with Vertical(id="menu-form-box"):
                yield OverridesForm(id="overrides")
            with Vertical(id="menu-preview-box"):
                yield Static(id="menu-status")
                yield Static(id="menu-commands")
                yield Button("Start run (s)", id="menu-start", variant="success")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "profiles"
        self.query_one("#menu-form-box").border_title = "overrides (blank: the profile's value)"
        self.query_one("#menu-preview-box").border_title = "run"
        table = self.query_one(ProfileTable)
        rows = profile_rows(self.profiles_dir)
        names = [r.name for r in rows]
        if self.profile not in names and names:
            self.profile = names[0]
        table.load(rows, selected=self.profile)
        self._select_profile(self.profile, initial=self.initial)
        table.focus()

    # ------------------------------------------------------------------ profile / form
    def _select_profile(self, name: str, initial: RunRequest | None = None) -> None:
        self.profile = name
        row = self.query_one(ProfileTable).rows_by_name.get(name)
        form = self.query_one(OverridesForm)
        form.set_profile(row.config if row is not None else None)
        if initial is not None and initial.profile == name:
            form.set_values(dict(initial.overrides), initial.resume, initial.resume_from)
        self._revalidate(form.values())

    @on(DataTable.RowHighlighted, "#profile-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = self.query_one(ProfileTable).selected_name
        if name is not None and name != self.profile:
            self._select_profile(name)

    @on(DataTable.RowSelected, "#profile-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_start()

    @on(OverridesForm.Changed)
    def _form_changed(self, event: OverridesForm.Changed) -> None:
        self._revalidate(event.values)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    @on(Button.Pressed, "#menu-start")
    def _start_pressed(self, event: Button.Pressed) -> None:
        self.action_start()

    def _revalidate(self, values: FormValues) -> None:
        self.last_values = values
        typed, self._extra_keys = request_from_form(self.profile, self.profiles_dir, values)
        self.request = with_run_dir(typed)
        self._show_auto_output_dir(typed, self.request)
        validation = validate_request(self.request)
        errors = dict(validation.errors)
        if values.extra_error:
            errors["extra"] = values.extra_error
            validation = Validation(None, errors)
        self.validation = validation
        self.query_one(OverridesForm).show_errors(errors, self._extra_keys)
        self._show_preview()

    def _show_auto_output_dir(self, typed: RunRequest, request: RunRequest) -> None:
        """Blank output dir: say which directory the run will use (a new one, or the resumed one)."""
        if typed.override("output_dir") is not None:
            return
        box = self.query_one(f"#{FIELDS['output_dir'][0]}", Input)
        auto = request.override("output_dir")
        row = self.query_one(ProfileTable).rows_by_name.get(self.profile)
        base = row.config.output_dir if row is not None and row.config is not None else ""
        if auto is None:
            box.placeholder = f"{base}  (profile)"
        elif request.resume:
            box.placeholder = f"{auto.strip(chr(34))}  (newest run with checkpoints)"
        else:
            box.placeholder = f"{auto.strip(chr(34))}  (new run dir)"

    def _show_preview(self) -> None:
        status = Text()
        commands = Text()
        if self.validation.ok:
            status.append(" valid ", style="bold black on #3cb371")
            status.append(f"  profile {self.profile}: press enter or s to start", style="bold")
            config = self.validation.config
            assert config is not None
            builder: CommandBuilder = self.app.commands  # type: ignore[attr-defined]
            commands.append("commands the console will run:\n", style="dim")
            for spec in builder.specs(self.request.cli_args(config)):
                commands.append(spec.display() + "\n")
            commands.append(f"\noutput: {config.output_dir}", style="dim")
        else:
            n = len(self.validation.errors)
            status.append(" invalid ", style="bold white on #c03030")
            status.append(
                f"  fix {n} problem{'s' if n != 1 else ''} to start (shown under the fields)", style="bold"
            )
        self.query_one("#menu-status", Static).update(status)
        self.query_one("#menu-commands", Static).update(commands)
        self.query_one("#menu-start", Button).disabled = not self.validation.ok

    # ------------------------------------------------------------------ actions
    def action_start(self) -> None:
        self._revalidate(self.query_one(OverridesForm).values())  # fresh run-dir timestamp
        if not self.validation.ok or self.validation.config is None:
            problems = "; ".join(self.validation.errors.values())
            self.notify(f"cannot start: {problems}", severity="error", timeout=6)
            self._focus_first_error()
            return
        self.post_message(RunRequested(self.request))

    def _focus_first_error(self) -> None:
        for key, (wid, _label) in FIELDS.items():
            if key in self.validation.errors:
                self.query_one(f"#{wid}", Input).focus()
                return

    def _output_dir(self) -> Path:
        """What to browse: the typed output dir, else the newest checkpointed run of the profile."""
        typed = self.query_one(OverridesForm).values().fields.get("output_dir")
        if typed:
            return Path(typed.strip('"'))
        row = self.query_one(ProfileTable).rows_by_name.get(self.profile)
        base = Path(row.config.output_dir) if row is not None and row.config is not None else Path("outputs")
        return newest_run_dir(base) or base

    def action_checkpoints(self) -> None:
        screen = CheckpointScreen(self._output_dir(), self.request, self.app.checkpoint_source)  # type: ignore[attr-defined]
        self.app.push_screen(screen, self._resume_chosen)

    def _resume_chosen(self, choice: ResumeChoice | None) -> None:
        if choice is None:
            return
        self.apply_request(choice.request)

    def apply_request(self, request: RunRequest) -> None:
        """Show a request in the form (profile row, overrides, resume) and validate it."""
        if request.profile != self.profile:
            table = self.query_one(ProfileTable)
            if request.profile in table.rows_by_name:
                table.move_cursor(row=table.get_row_index(request.profile))
            self.profile = request.profile
            self._select_profile(request.profile)
        self.query_one(OverridesForm).set_values(dict(request.overrides), request.resume, request.resume_from)

    def action_validate_resume(self) -> None:
        config = self.validation.config
        if config is None:
            self.notify("fix the profile first", severity="warning")
            return
        if not self.request.resume:
            self.notify(
                "resume is off: switch it on (or pick a checkpoint with c) to check it", severity="warning"
            )
            return
        self._check_resume(self.request.checkpoint_path(config))

    @work(thread=True, exclusive=True, group="menu-resume", exit_on_error=False)
    def _check_resume(self, path: Path) -> None:
        try:
            result = self.app.checkpoint_source.validate(path, self.request)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            result = ValidationResult(path, None, [], unreadable=f"validation failed: {exc}")
        self.post_message(ResumeChecked(result))

    @on(ResumeChecked)
    def _resume_checked(self, message: ResumeChecked) -> None:
        result = message.result
        if not result.rows and result.ok:
            self.notify(f"{result.checkpoint}: identical run identity, resume is safe", timeout=5)
            return
        self.app.push_screen(MismatchScreen(result, self.request), self._mismatch_applied)

    def _mismatch_applied(self, request: RunRequest | None) -> None:
        if request is not None:
            self.apply_request(request)
