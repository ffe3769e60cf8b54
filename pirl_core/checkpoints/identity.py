"""Resume validator: the checkpoint's run identity against the current run, field by field.

Every RunConfig field carries its class in its one declaration (``config.setting(..., resume=...)``;
tests/test_config_fields.py fails when a field lacks one); the tables here are derived from it:

* ``fatal`` — the checkpoint's tensors or their meaning depend on it (architecture sizes, what an
  action or an observation is, which recipe produced the optimizer state). Resuming with a different
  value would either crash hours later on a shape mismatch or silently train something else, so the
  resume is refused (exit 3) before anything is written.
* ``changed`` — tunables (learning rates, loss coefficients, cadence, counts, addresses), declared
  ``tunable`` or ``pushed``. Allowed; listed so that nobody changes one by accident.

The same table is the learner/actor contract: the fatal fields are the actor's identity, compared
when an actor connects (:func:`actor_identity`; a mismatched actor is refused), and
``PUSHED_FIELDS`` (behaviour-policy settings, all tunables) travel with every parameter push.

The built model's ``identity()`` (ActorCritic: the adapter's sizes, action mode, observation shapes,
tokenizer, plus which heads exist) is compared too, at restore, before any tensor is loaded; every
key is fatal and reported as ``model.<key>``. The config check runs without building a model, so
``prepare_run`` and ``python -m pirl_core.checkpoints validate`` refuse in milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pirl_core import config
from pirl_core.config import RunConfig, field_specs
from pirl_core.errors import ResumeMismatchError
from pirl_core.quoting import ABSENT, flag, value_text
from pirl_core.redact import redact_config, secret_fields

Severity = Literal["fatal", "changed"]
FATAL: Severity = "fatal"
CHANGED: Severity = "changed"

NEW_DIR = "start a new output dir"


def _derived_tables() -> tuple[dict[str, Severity], dict[str, tuple[str, Any]], tuple[str, ...]]:
    """FIELD_CLASSES, FATAL_ONLY_IF and PUSHED_FIELDS from each field's declaration in config.py
    (``setting(..., resume=...)``): fatal stays fatal, tunable and pushed are both ``changed``."""
    specs = field_specs()
    classes: dict[str, Severity] = {s.name: FATAL if s.resume == config.FATAL else CHANGED for s in specs}
    fatal_only_if = {s.name: s.fatal_if for s in specs if s.fatal_if is not None}
    pushed = tuple(s.name for s in specs if s.resume == config.PUSHED)
    return classes, fatal_only_if, pushed


# field -> fatal or changed, in declaration order (the order of every report's rows).
# FATAL_ONLY_IF: field -> (other field, value): the field is fatal only while the other field has
# that value (in the checkpoint or now); otherwise it is a tunable (the toy env has no camera).
# PUSHED_FIELDS: what the learner sends with every parameter push (``behaviour`` in the parameter
# header) and the actor adopts before it samples: the behaviour policy (σ bounds, SDE noise, prior
# term, log-prob reductions) and the episode plan (seed, share of episodes, GRPO groups, init-state
# split). None changes a tensor shape, so each is a tunable on resume: a resumed learner's new
# value reaches the actors that are still running with the next push.
FIELD_CLASSES, FATAL_ONLY_IF, PUSHED_FIELDS = _derived_tables()


def severity(name: str, saved_flat: dict[str, Any], current_flat: dict[str, Any]) -> Severity:
    """The field's class for this pair of configs (unclassified fields count as fatal)."""
    base = FIELD_CLASSES.get(name, FATAL)
    condition = FATAL_ONLY_IF.get(name)
    if base == FATAL and condition is not None:
        other, value = condition
        if saved_flat.get(other) != value and current_flat.get(other) != value:
            return CHANGED
    return base


def fatal_fields(flat: dict[str, Any]) -> set[str]:
    """The fields of one flattened config a resume from it must match (what the validator refuses
    on), with the conditions of FATAL_ONLY_IF read from that config itself."""
    return {name for name in flat if severity(name, flat, flat) == FATAL}


def actor_identity(cfg: RunConfig) -> dict[str, Any]:
    """What an actor and its learner must agree on before any parameter is sent: the fields that
    are fatal on resume (model shapes, data format, what an action and an observation are).
    One classification serves both checks, so they cannot drift apart."""
    flat = flatten(_normal(cfg.to_dict()))
    return {name: flat[name] for name in fatal_fields(flat)}


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def compare_identity(learner: dict[str, Any], actor: dict[str, Any]) -> list[str]:
    """``field: learner X, actor Y`` for each differing handshake field (learner's set decides)."""
    learner_n, actor_n = _normal(learner), _normal(actor)
    names = sorted(set(learner_n) | set(actor_n), key=_field_order)
    return [
        f"{name}: learner {value_text(learner_n.get(name, ABSENT))}, actor {value_text(actor_n.get(name, ABSENT))}"
        for name in names
        if learner_n.get(name, ABSENT) != actor_n.get(name, ABSENT)
    ]


def behaviour(cfg: RunConfig) -> dict[str, Any]:
    """The pushed fields' current values (see PUSHED_FIELDS)."""
    flat = flatten(_normal(cfg.to_dict()))
    return {name: flat[name] for name in PUSHED_FIELDS}


HIDDEN = "(hidden)"
SECRET_FIELDS = secret_fields()  # marked on the config dataclass (config.secret_field)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_fields(cfg: RunConfig | None = None) -> list[str]:
    """Dotted names of every RunConfig field (the set FIELD_CLASSES must cover)."""
    return list(flatten((cfg or RunConfig()).to_dict()))


def _normal(value: Any) -> Any:
    """JSON round trip: tuples become lists, so saved (JSON) and live values compare equal."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class Row:
    field: str
    checkpoint: Any  # the saved (expected) value
    current: Any
    severity: Severity
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fix(name: str, saved: Any, severity: Severity, configurable: bool) -> str:
    if severity == FATAL:
        if configurable and saved is not ABSENT:
            return f"{flag(name, saved)} (or {NEW_DIR})"
        return NEW_DIR
    if configurable and saved is not ABSENT:
        return f"allowed; {flag(name, saved)} keeps the checkpoint's value"
    return "allowed"


def compare_configs(saved: dict[str, Any], current: RunConfig | dict[str, Any]) -> list[Row]:
    """Rows for every config field whose value differs (unclassified fields count as fatal)."""
    # Secrets are compared as saved (redacted): set or not, never their value (pirl_core/redact.py)
    saved_flat = flatten(_normal(redact_config(saved)))
    current_flat = flatten(_normal(redact_config(current)))
    rows = []
    for name in sorted(set(saved_flat) | set(current_flat), key=_field_order):
        old = saved_flat.get(name, ABSENT)
        new = current_flat.get(name, ABSENT)
        if old == new:
            continue
        cls = severity(name, saved_flat, current_flat)
        if name in SECRET_FIELDS:  # never echo a secret into a table, JSON or a suggested flag
            rows.append(Row(name, HIDDEN, HIDDEN, cls, "allowed"))
            continue
        rows.append(Row(name, old, new, cls, _fix(name, old, cls, configurable=name in current_flat)))
    return rows


def compare_model(saved: dict[str, Any], current: dict[str, Any]) -> list[Row]:
    """Rows for the built model's identity (``ActorCritic.identity()``: adapter sizes, action mode,
    observation shapes, tokenizer, heads): all fatal, named ``model.<key>``."""
    saved_n, current_n = _normal(saved), _normal(current)
    rows = []
    for key in sorted(set(saved_n) | set(current_n)):
        old, new = saved_n.get(key, ABSENT), current_n.get(key, ABSENT)
        if old != new:
            rows.append(Row(f"model.{key}", old, new, FATAL, NEW_DIR))
    return rows


_ORDER = {name: i for i, name in enumerate(FIELD_CLASSES)}


def _field_order(name: str) -> tuple[int, str]:
    return (_ORDER.get(name, len(_ORDER)), name)


@dataclass
class IdentityReport:
    """Outcome of a validation: the checkpoint it was run against and the differing rows."""

    checkpoint: str
    step: int
    rows: list[Row] = dataclasses.field(default_factory=list)

    @property
    def fatal(self) -> list[Row]:
        return [r for r in self.rows if r.severity == FATAL]

    @property
    def changed(self) -> list[Row]:
        return [r for r in self.rows if r.severity == CHANGED]

    @property
    def ok(self) -> bool:
        return not self.fatal

    def extend(self, rows: list[Row]) -> IdentityReport:
        self.rows.extend(rows)
        return self

    def summary(self) -> str:
        if not self.rows:
            return f"checkpoint {self.checkpoint} (step {self.step}) matches the current run"
        if self.ok:
            names = ", ".join(r.field for r in self.changed)
            return f"checkpoint {self.checkpoint} (step {self.step}) is compatible; changed tunables: {names}"
        names = ", ".join(r.field for r in self.fatal)
        return (
            f"cannot resume from {self.checkpoint} (step {self.step}): {len(self.fatal)} identity "
            f"field(s) differ ({names}); pass the flags in the table or {NEW_DIR}"
        )

    def format_table(self) -> str:
        """Plain-text table for a terminal: fatal rows first, then changed tunables."""
        header = ("field", "checkpoint (expected)", "current", "severity", "how to fix")
        body = [
            (r.field, _cell(r.checkpoint), _cell(r.current), r.severity, r.fix)
            for r in sorted(self.rows, key=lambda r: r.severity != FATAL)
        ]
        if not body:
            return "no differences"
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]

        def fmt(line: tuple[str, ...]) -> str:
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
            return "  ".join([*cells, line[-1]]).rstrip()

        rule = "  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1])
        return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "ok": self.ok,
            "summary": self.summary(),
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_MAX_CELL = 40


def _cell(value: Any) -> str:
    text = value_text(value)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


class IdentityMismatch(ResumeMismatchError):
    """Exit 3, carrying the full report (``.report``) for the console's JSON view."""

    def __init__(self, report: IdentityReport) -> None:
        super().__init__(report.summary(), detail=report.format_table())
        self.report = report


def raise_if_fatal(report: IdentityReport) -> IdentityReport:
    if not report.ok:
        raise IdentityMismatch(report)
    return report
