"""What the researcher asked to run: a profile, dotted overrides and the resume choice.

Why a separate value object: the profile menu edits it, the run screen turns it into the
exact headless command lines, and the resume-mismatch table rewrites its overrides. Keeping
it free of any widget means all three agree on one representation, and validation is the
real config loader (``pirl_core.config.load_config``) — the console never re-implements
the rules, it only decides which form field a :class:`ConfigError` belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pirl_core.checkpoints.layout import has_checkpoints
from pirl_core.cli import CliArgs
from pirl_core.config import DEFAULT_PROFILE, PROFILES_DIR, RunConfig, load_config
from pirl_core.errors import ConfigError
from pirl_core.launch import choose_run_dir
from pirl_core.quoting import value_text

# Form fields that are not profile keys but still need an inline message.
RESUME_FIELD = "resume"
RESUME_FROM_FIELD = "resume_from"
GENERAL_FIELD = "*"


@dataclass(frozen=True)
class RunRequest:
    """Profile + ordered dotted overrides (raw text, as typed after ``--key=``) + resume."""

    profile: str = DEFAULT_PROFILE
    overrides: tuple[tuple[str, str], ...] = ()
    resume: bool = False
    resume_from: str | None = None
    profiles_dir: Path = field(default=PROFILES_DIR, compare=False)

    # ------------------------------------------------------------------ editing
    def override(self, key: str) -> str | None:
        for k, v in self.overrides:
            if k == key:
                return v
        return None

    def with_override(self, key: str, value: str | None) -> RunRequest:
        """Set (or, with ``None``/blank text, drop) one override, keeping the others' order."""
        text = None if value is None or not value.strip() else value.strip()
        items: list[tuple[str, str]] = []
        placed = False
        for k, v in self.overrides:
            if k != key:
                items.append((k, v))
            elif text is not None and not placed:
                items.append((key, text))
                placed = True
        if text is not None and not placed:
            items.append((key, text))
        return replace(self, overrides=tuple(items))

    def with_overrides(self, values: dict[str, str | None]) -> RunRequest:
        request = self
        for key, value in values.items():
            request = request.with_override(key, value)
        return request

    # ------------------------------------------------------------------ command lines
    def profile_arg(self) -> str:
        """The name when it lives in the standard profiles dir, else the .toml path, so the
        child resolves exactly the profile the console validated."""
        if Path(self.profiles_dir).resolve() == PROFILES_DIR.resolve() or self.profile.endswith(".toml"):
            return self.profile
        return str(Path(self.profiles_dir) / f"{self.profile}.toml")

    def cli_args(self, config: RunConfig) -> CliArgs:
        """The parsed command line this request stands for; ``pirl_core.launch.child_commands``
        turns it into the learner's and the actors' argv (the same function ``make smoke`` uses).
        A resume also asks the learner for its exit-3 report as JSON, next to the console's logs."""
        return CliArgs(
            config=replace(config, profile=self.profile_arg()),
            overrides=[f"{key}={value}" for key, value in self.overrides],
            resume=self.resume,
            resume_from=self.resume_from,
            mismatch_json=str(mismatch_report_path(config)) if self.resume else None,
        )

    # ------------------------------------------------------------------ validation
    def config(self) -> RunConfig:
        """The validated config; raises ConfigError exactly as the headless entry points would."""
        return load_config(self.profile, [f"{k}={v}" for k, v in self.overrides], self.profiles_dir)

    def checkpoint_path(self, config: RunConfig) -> Path:
        """The checkpoint a resume would read (explicit path, else ``<output_dir>/checkpoints/last``)."""
        if self.resume_from:
            return Path(self.resume_from)
        return config.output_path / "checkpoints" / "last"


@dataclass
class Validation:
    """Outcome of judging a request: the config when valid, else messages keyed by form field
    (a dotted config key, ``resume``, ``resume_from`` or ``*`` for anything else)."""

    config: RunConfig | None
    errors: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def validate_request(request: RunRequest) -> Validation:
    """Judge every override on its own first (so each bad field gets its own inline message),
    then all together (cross-field rules), then the console-side resume preconditions."""
    try:
        load_config(request.profile, [], request.profiles_dir)
    except ConfigError as err:
        return Validation(None, {GENERAL_FIELD: err.message})
    errors: dict[str, str] = {}
    for key, value in request.overrides:
        try:
            load_config(request.profile, [f"{key}={value}"], request.profiles_dir)
        except ConfigError as err:
            errors[key] = err.message
    if errors:
        return Validation(None, errors)
    try:
        config = request.config()
    except ConfigError as err:
        return Validation(None, {_owner(err, request): err.message})
    if not request.resume and has_checkpoints(config.output_path):
        # The learner refuses this (exit 2): say so before anything starts.
        return Validation(
            None,
            {
                "output_dir": f"{config.output_dir} already holds checkpoints: turn resume on to continue "
                "that run, or choose another output dir"
            },
        )
    if request.resume:
        target = request.checkpoint_path(config)
        if not target.exists():
            where = RESUME_FROM_FIELD if request.resume_from else RESUME_FIELD
            hint = (
                "pick an existing checkpoint directory"
                if request.resume_from
                else "start without resume first, or pick a checkpoint to resume from"
            )
            errors[where] = f"no checkpoint at {target} ({hint})"
            return Validation(None, errors)
    return Validation(config, {})


def _owner(err: ConfigError, request: RunRequest) -> str:
    """Which form field shows a cross-field error: the key the loader names, when the form has it."""
    return err.field if err.field in dict(request.overrides) else GENERAL_FIELD


def normalise_list_text(text: str) -> str:
    """``0,1 2`` -> ``[0, 1, 2]``: task ids are easier to type without brackets."""
    stripped = text.strip()
    if not stripped or stripped.startswith("["):
        return stripped
    parts = [p for p in stripped.replace(",", " ").split() if p]
    return "[" + ", ".join(parts) + "]"


# --------------------------------------------------------------------------- run directories


def mismatch_report_path(config: RunConfig) -> Path:
    """Where the learner writes its exit-3 report (``--mismatch-json``) for the console to read."""
    return config.output_path / "logs" / "resume-mismatch.json"


def with_run_dir(request: RunRequest, now: float | None = None) -> RunRequest:
    """Where the run writes when the researcher did not say: ``pirl_core.launch.choose_run_dir``,
    the rule ``make smoke`` follows (a new run gets its own timestamped dir, a resume continues the
    newest checkpointed run), written into the request as an ``output_dir`` override."""
    try:
        run_dir = choose_run_dir(request.cli_args(request.config()), now)
    except ConfigError:
        return request  # validation reports it, under the field it concerns
    if run_dir is None:
        return request
    return request.with_override("output_dir", value_text(str(run_dir)))
