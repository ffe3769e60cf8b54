"""Editable overrides for the common fields, each with its own inline error line.

Why blank means "the profile's value": the placeholder shows what the profile says, and only
fields the researcher typed in become ``--key=value`` flags, so the command line stays as
short as the one they would type by hand. The form does not judge values itself; the menu
screen runs the real validator and hands each message back to the field it belongs to.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Switch

from pirl_console.run_request import GENERAL_FIELD, RESUME_FIELD, RESUME_FROM_FIELD, normalise_list_text
from pirl_core.config import SUITES_BY_ENV, RunConfig

# dotted key -> (widget id, label)
FIELDS: dict[str, tuple[str, str]] = {
    "env.suite": ("ov-suite", "suite"),
    "env.task_ids": ("ov-task-ids", "task ids"),
    "learner.updates": ("ov-updates", "updates"),
    "output_dir": ("ov-output-dir", "output dir"),
}
EXTRA_FIELD = "extra"


@dataclass(frozen=True)
class FormValues:
    fields: dict[str, str]  # dotted key -> raw text ("" = profile value)
    extra: list[str]  # "key=value" items from the free-form field
    extra_error: str | None
    resume: bool
    resume_from: str


class OverridesForm(Vertical):
    class Changed(Message):
        def __init__(self, values: FormValues) -> None:
            super().__init__()
            self.values = values

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="overrides-form")

    def compose(self) -> ComposeResult:
        for key, (wid, label) in FIELDS.items():
            with Vertical(classes="form-field", id=f"{wid}-field"):
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    yield Input(id=wid, classes="form-input", name=key, compact=True)
                yield Label("", classes="field-error", id=f"{wid}-error", markup=False)
        with Vertical(classes="form-field", id="ov-resume-field"):
            with Horizontal(classes="form-row"):
                yield Label("resume", classes="form-label")
                yield Switch(False, id="ov-resume")
                yield Input(
                    id="ov-resume-from",
                    classes="form-input",
                    placeholder="checkpoint: <output dir>/checkpoints/last",
                    compact=True,
                )
            yield Label("", classes="field-error", id="ov-resume-error", markup=False)
        with Vertical(classes="form-field", id="ov-extra-field"):
            with Horizontal(classes="form-row"):
                yield Label("more", classes="form-label")
                yield Input(
                    id="ov-extra",
                    classes="form-input",
                    placeholder="other overrides, e.g. recipe.lr=1e-5 actor.n_actors=2",
                    compact=True,
                )
            yield Label("", classes="field-error", id="ov-extra-error", markup=False)
        yield Label("", classes="field-error", id="ov-general-error", markup=False)

    # ------------------------------------------------------------------ profile
    def set_profile(self, config: RunConfig | None) -> None:
        """New profile chosen: clear typed values, show its values as placeholders."""
        with self.prevent(Input.Changed, Switch.Changed):
            for key, (wid, _label) in FIELDS.items():
                box = self.query_one(f"#{wid}", Input)
                box.value = ""
                box.placeholder = _profile_value(config, key)
            self.query_one("#ov-resume", Switch).value = False
            self.query_one("#ov-resume-from", Input).value = ""
            self.query_one("#ov-extra", Input).value = ""
        suites = sorted(SUITES_BY_ENV.get(config.env.type, {})) if config is not None else []
        self.query_one("#ov-suite", Input).suggester = SuggestFromList(suites, case_sensitive=False)

    def set_values(self, overrides: dict[str, str], resume: bool, resume_from: str | None) -> None:
        """Fill the form from a request (e.g. after the mismatch table applied saved values)."""
        extra = []
        with self.prevent(Input.Changed, Switch.Changed):
            for key, (wid, _label) in FIELDS.items():
                self.query_one(f"#{wid}", Input).value = overrides.get(key, "")
            for key, value in overrides.items():
                if key not in FIELDS:
                    extra.append(shlex.quote(f"{key}={value}"))
            self.query_one("#ov-extra", Input).value = " ".join(extra)
            self.query_one("#ov-resume", Switch).value = resume
            self.query_one("#ov-resume-from", Input).value = resume_from or ""
        self.post_message(self.Changed(self.values()))

    # ------------------------------------------------------------------ values
    def values(self) -> FormValues:
        fields = {}
        for key, (wid, _label) in FIELDS.items():
            text = self.query_one(f"#{wid}", Input).value.strip()
            fields[key] = normalise_list_text(text) if key == "env.task_ids" else text
        extra: list[str] = []
        extra_error = None
        raw = self.query_one("#ov-extra", Input).value
        try:
            for item in shlex.split(raw):
                item = item.removeprefix("--")
                if "=" not in item:
                    extra_error = f"{item!r}: expected KEY=VALUE, e.g. recipe.lr=1e-5"
                    break
                extra.append(item)
        except ValueError as exc:
            extra_error = f"cannot split into KEY=VALUE items: {exc}"
        return FormValues(
            fields=fields,
            extra=extra,
            extra_error=extra_error,
            resume=self.query_one("#ov-resume", Switch).value,
            resume_from=self.query_one("#ov-resume-from", Input).value.strip(),
        )

    @on(Input.Changed)
    @on(Switch.Changed)
    def _changed(self, event: Input.Changed | Switch.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self.values()))

    # ------------------------------------------------------------------ errors
    def show_errors(self, errors: dict[str, str], extra_keys: set[str]) -> None:
        """Put each validator message under the field it belongs to; clear the rest."""
        targets: dict[str, list[str]] = {}
        for key, message in errors.items():
            if key in FIELDS:
                target = f"{FIELDS[key][0]}-error"
            elif key in (RESUME_FIELD, RESUME_FROM_FIELD):
                target = "ov-resume-error"
            elif key in extra_keys or key == EXTRA_FIELD:
                target = "ov-extra-error"
            else:
                target = "ov-general-error"
            targets.setdefault(target, []).append(message if key != GENERAL_FIELD else message)
        for label in self.query(".field-error").results(Label):
            messages = targets.get(label.id or "", [])
            label.update("\n".join(messages))
            label.set_class(bool(messages), "-visible")
        for wid, _label in FIELDS.values():
            self.query_one(f"#{wid}", Input).set_class(f"{wid}-error" in targets, "-invalid")
        self.query_one("#ov-resume-from", Input).set_class("ov-resume-error" in targets, "-invalid")
        self.query_one("#ov-extra", Input).set_class("ov-extra-error" in targets, "-invalid")


def _profile_value(config: RunConfig | None, key: str) -> str:
    if config is None:
        return ""
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) + "  (profile)"
    return f"{value}  (profile)"
