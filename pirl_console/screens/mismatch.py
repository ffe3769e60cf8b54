"""The resume-mismatch table, with "apply the saved values and retry".

Shown when a learner exits 3 (resume mismatch) or when a checkpoint is validated against the
current profile. Applying writes the checkpoint's values into the request's overrides (the
same ``--key=value`` flags the fix column names) and hands the new request back to whoever
opened the table: the run screen restarts the run with it, the menu fills its form.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from pirl_console.checkpoint_source import MismatchRow, ValidationResult
from pirl_console.run_request import RunRequest, validate_request
from pirl_console.widgets.mismatch_table import MismatchTable
from pirl_core.quoting import value_text

# Saved values that are never copied back: they name the run, not what it computes.
NOT_APPLIED = {"profile", "output_dir"}
ABSENT = "(absent)"


def apply_rows(request: RunRequest, rows: list[MismatchRow]) -> tuple[RunRequest, list[str]]:
    """The request with each row's saved value as an override; returns the fields it could not set."""
    skipped = []
    for row in rows:
        if row.field in NOT_APPLIED:
            continue
        text = row.saved_text
        if text is None and row.saved != ABSENT and not row.field.startswith("model."):
            text = value_text(row.saved)
        if text is None:
            skipped.append(row.field)
            continue
        request = request.with_override(row.field, text)
    return request, skipped


class MismatchScreen(Screen[RunRequest | None]):
    BINDINGS = [
        Binding("a", "apply(False)", "Apply saved values & retry"),
        Binding("A", "apply(True)", "Apply all (incl. tunables)"),
        Binding("escape", "dismiss_none", "Back"),
    ]

    def __init__(self, result: ValidationResult, request: RunRequest, reason: str = "") -> None:
        super().__init__(classes="mismatch-screen")
        self.result = result
        self.request = request
        self.reason = reason

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="mismatch-body"):
            yield Static(self._summary(), id="mismatch-summary")
            yield MismatchTable(id="mismatch-table")
            yield Static(self._hint(), id="mismatch-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "resume check"
        self.query_one(MismatchTable).load(self.result.rows)
        self.query_one(MismatchTable).focus()

    def _summary(self) -> Text:
        text = Text()
        if self.reason:
            text.append(self.reason + "\n", style="bold #e05050")
        step = f" (step {self.result.step})" if self.result.step is not None else ""
        text.append("checkpoint ", style="dim")
        text.append(f"{self.result.checkpoint}{step}\n", style="bold")
        n_fatal = len(self.result.fatal)
        n_changed = len(self.result.rows) - n_fatal
        if self.result.unreadable:
            text.append(self.result.unreadable, style="bold #e05050")
        elif n_fatal:
            text.append(f"{n_fatal} field(s) must match to resume", style="bold #e05050")
            text.append(f"; {n_changed} tunable(s) changed (allowed)" if n_changed else "")
        else:
            text.append("compatible: nothing blocks the resume", style="bold #3cb371")
            text.append(f"; {n_changed} tunable(s) changed" if n_changed else "")
        return text

    @staticmethod
    def _hint() -> Text:
        return Text(
            "a: copy the checkpoint's values of the fatal fields into the overrides and retry · "
            "A: copy every differing value · esc: back",
            style="dim",
        )

    def action_apply(self, include_tunables: bool) -> None:
        rows = self.result.rows if include_tunables else self.result.fatal
        if not rows:
            self.notify("nothing to apply: no field blocks the resume", severity="warning")
            return
        request, skipped = apply_rows(self.request, rows)
        if not self.request.resume:  # validated from the browser: resume from that checkpoint
            request = replace(request, resume=True, resume_from=str(self.result.checkpoint))
        validation = validate_request(request)
        if not validation.ok:
            problems = "; ".join(validation.errors.values())
            self.notify(f"the saved values do not validate: {problems}", severity="error", timeout=10)
            return
        if skipped:
            self.notify(
                f"cannot be set by a flag, fix by hand or start a new output dir: {', '.join(skipped)}",
                severity="warning",
                timeout=10,
            )
        self.dismiss(request)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
