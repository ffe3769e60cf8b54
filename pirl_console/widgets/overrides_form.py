"""Editable overrides for the common fields, each with its own inline error line.

Why blank means "the profile's value": the placeholder shows what the profile says, and only
fields the researcher typed in become ``--key=value`` flags, so the command line stays as
short as the one they would type by hand. The form does not judge values itself; the menu
screen runs the real validator and hands each message back to the field it belongs to.

Every config field is offered with its documentation from its one declaration in
``pirl_core/config.py`` (``config.field_specs``, what ``--help`` lists too): the common fields
carry it as a tooltip, and the free-form field completes any field name and shows the
documentation of the one being typed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester, SuggestFromList
from textual.widget import Widget
from textual.widgets import Input, Label, Switch

from pirl_console.run_request import GENERAL_FIELD, RESUME_FIELD, RESUME_FROM_FIELD, normalise_list_text
from pirl_core.config import SUITES_BY_ENV, FieldSpec, RunConfig, field_specs

# dotted key -> (widget id, label)
FIELDS: dict[str, tuple[str, str]] = {
    "env.suite": ("ov-suite", "suite"),
    "env.task_ids": ("ov-task-ids", "task ids"),
    "learner.updates": ("ov-updates", "updates"),
    "output_dir": ("ov-output-dir", "output dir"),
}
EXTRA_FIELD = "extra"
SPECS: dict[str, FieldSpec] = {spec.name: spec for spec in field_specs()}  # every documented field


def field_doc(key: str) -> str:
    """One line for a field, as --help gives it: ``--name=type (default X; ...): doc``; "" for an
    unknown key."""
    spec = SPECS.get(key)
    return f"{spec.usage()} ({spec.facts()}): {spec.doc}" if spec is not None else ""


def _typed_key(text: str) -> tuple[int, str]:
    """Where the last item of the free-form text starts and its key part (``--`` dropped)."""
    start = len(text) - len(text.split(" ")[-1])
    return start, text[start:].removeprefix("--").split("=", 1)[0]


class FieldSuggester(Suggester):
    """Completes the last item of the free-form field to a config field name (``key=``)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        start, key = _typed_key(value)
        if not key or "=" in value[start:]:
            return None
        prefix = value[start:]
        for name in SPECS:
            if name.startswith(key) and name != key:
                return value[:start] + prefix[: len(prefix) - len(key)] + name + "="
        return None


def _form_field(
    field_id: str, label: str, *widgets: Widget, error_id: str, below: Widget | None = None
) -> Vertical:
    """A labelled row of widgets with its own (hidden until needed) error line."""
    return Vertical(
        Horizontal(Label(label, classes="form-label"), *widgets, classes="form-row"),
        Label("", classes="field-error", id=error_id, markup=False),
        *([below] if below is not None else []),
        classes="form-field",
        id=field_id,
    )


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

    DEFAULT_CSS = """
    OverridesForm .field-doc {
        display: none;
        color: $text-muted;
        padding-left: 12;
        width: 1fr;
    }
    OverridesForm .field-doc.-visible {
        display: block;
    }
    """

    def compose(self) -> ComposeResult:
        for key, (wid, label) in FIELDS.items():
            box = Input(id=wid, classes="form-input", name=key, compact=True)
            box.tooltip = field_doc(key)
            yield _form_field(f"{wid}-field", label, box, error_id=f"{wid}-error")
        yield _form_field(
            "ov-resume-field",
            "resume",
            Switch(False, id="ov-resume"),
            Input(
                id="ov-resume-from",
                classes="form-input",
                placeholder="checkpoint: <output dir>/checkpoints/last",
                compact=True,
            ),
            error_id="ov-resume-error",
        )
        yield _form_field(
            "ov-extra-field",
            "more",
            Input(
                id="ov-extra",
                classes="form-input",
                placeholder="other overrides, e.g. recipe.lr=1e-5 actor.n_actors=2 (→ completes a field name)",
                compact=True,
                suggester=FieldSuggester(),
            ),
            error_id="ov-extra-error",
            below=Label("", classes="field-doc", id="ov-extra-doc", markup=False),
        )
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
        if isinstance(event, Input.Changed) and event.input.id == "ov-extra":
            self.show_field_doc(event.value)
        self.post_message(self.Changed(self.values()))

    def show_field_doc(self, text: str) -> None:
        """Under the free-form field: the documentation of the field whose name is being typed
        (the longest declared name the last item starts with), hidden when there is none."""
        _start, key = _typed_key(text)
        names = [key] if key in SPECS else [name for name in SPECS if key and name.startswith(key)]
        doc = field_doc(names[0]) if len(names) == 1 else ""
        label = self.query_one("#ov-extra-doc", Label)
        label.update(doc)
        label.set_class(bool(doc), "-visible")

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
