"""Resume validator: the checkpoint's run identity against the current run, field by field.

Every RunConfig field is classified here, explicitly (tests/test_checkpoint_identity.py fails when a
field is added to the config without a class):

* ``fatal`` — the checkpoint's tensors or their meaning depend on it (architecture sizes, what an
  action or an observation is, which recipe produced the optimizer state). Resuming with a different
  value would either crash hours later on a shape mismatch or silently train something else, so the
  resume is refused (exit 3) before anything is written.
* ``changed`` — tunables (learning rates, loss coefficients, cadence, counts, addresses). Allowed;
  listed so that nobody changes one by accident.

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
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

from pirl_core.config import RunConfig
from pirl_core.errors import ResumeMismatchError
from pirl_core.redact import redact_config, secret_fields

Severity = Literal["fatal", "changed"]
FATAL: Severity = "fatal"
CHANGED: Severity = "changed"

NEW_DIR = "start a new output dir"

FIELD_CLASSES: dict[str, Severity] = {
    # run
    "profile": CHANGED,  # a name; what it resolved to is compared field by field below
    "seed": CHANGED,  # RNG state comes from the checkpoint; pushed: actors derive rollout streams from it
    "output_dir": CHANGED,  # --resume-from may fork a checkpoint into a new output dir
    # env: what the task and the observation/action spaces are
    "env.type": FATAL,
    "env.suite": FATAL,
    "env.task_ids": FATAL,
    "env.episode_length": CHANGED,  # horizon; no tensor depends on it
    # observation shapes on LIBERO; the toy env renders nothing, so there it is ignored (see
    # FATAL_ONLY_IF below) instead of refusing a resume over a number no tensor depends on
    "env.camera_size": FATAL,
    "env.n_envs": CHANGED,  # throughput only
    "env.control_mode": FATAL,  # absolute vs relative: what an action means
    "env.hard_reset": CHANGED,  # reset speed vs exactness of the initial render; same task
    "env.workers": CHANGED,  # throughput only: rollouts do not depend on the worker count
    "env.render_every_step": CHANGED,  # speed only: the frames the policy reads are bitwise equal
    # which init states train / validate / test: data selection, no tensor; pushed to actors
    "env.train_init_states": CHANGED,
    # policy: architecture and the spaces it maps between
    "policy.type": FATAL,
    "policy.size": FATAL,
    "policy.pretrained_path": FATAL,  # the base model the weights descend from
    "policy.tokenizer": FATAL,  # token ids must mean the same words
    "policy.chunk_size": FATAL,
    "policy.action_steps": FATAL,  # executed and scored steps: the MDP's action and the log-prob
    "policy.hidden_dim": FATAL,
    "policy.device": CHANGED,  # a CPU checkpoint resumes on a GPU and back
    "policy.dtype": CHANGED,  # compute precision only: weights and optimizer state stay float32
    "policy.gradient_checkpointing": CHANGED,  # memory vs time; same gradients
    # recipe: structure (fatal) vs behaviour-policy settings (pushed) vs loss/optimiser tunables.
    "recipe.method": FATAL,  # flow_noise has a noise head and its optimizer, flow_sde does not
    "recipe.algorithm": FATAL,  # ppo has a critic and its optimizer, grpo does not
    "recipe.denoise_steps": FATAL,  # the chain is the action: its length defines the policy and tensor shapes
    # Behaviour policy and the meaning of stored log-probs. These change what an actor samples
    # and how its log-probs are reduced, but no tensor shape: the learner pushes them with every
    # parameter version (PUSHED_FIELDS) and the actor applies them before sampling, so the
    # actor always samples exactly what the learner scores. Hence tunable on resume.
    "recipe.sigma_min": CHANGED,
    "recipe.sigma_max": CHANGED,
    "recipe.sde_noise_level": CHANGED,
    "recipe.include_prior": CHANGED,
    "recipe.logprob_action_reduction": CHANGED,
    "recipe.logprob_step_reduction": CHANGED,
    "recipe.ratio_mode": CHANGED,  # how the learner forms ratios from the same stored chains
    "recipe.clip": CHANGED,
    "recipe.clip_per_denoise_step": CHANGED,
    "recipe.value_clip": CHANGED,
    "recipe.gamma": CHANGED,
    "recipe.lam": CHANGED,
    "recipe.update_epochs": CHANGED,
    "recipe.minibatches": CHANGED,
    "recipe.entropy_coef": CHANGED,
    "recipe.grad_clip": CHANGED,
    "recipe.normalize_advantages": CHANGED,
    "recipe.lr": CHANGED,
    "recipe.value_lr": CHANGED,
    "recipe.noise_lr": CHANGED,
    "recipe.critic": FATAL,  # value-head input width and meaning
    # Whether the critic's gradients reach the shared trunk: a training choice on the learner
    # only (no tensor shape, no optimizer group, nothing the actor samples), so a tunable.
    "recipe.critic_detach": CHANGED,
    "recipe.grpo_group_size": CHANGED,  # pushed: which initial states an actor runs (episode plan)
    "recipe.grpo_filter": CHANGED,
    "recipe.grpo_filter_range": CHANGED,
    "recipe.critic_warmup_updates": CHANGED,  # keyed on the update count: continues on resume
    "recipe.sft_loss_weight": CHANGED,  # a loss term; no tensor or optimizer group of its own
    "recipe.sft_dataset": CHANGED,
    "recipe.sft_batch_size": CHANGED,
    "recipe.loss_aggregation": CHANGED,
    "recipe.advantage_mode": CHANGED,  # a control experiment on the same model and optimizer
    "recipe.ratio_tolerance": CHANGED,  # a check on the update, not part of it
    "recipe.micro_batch_size": CHANGED,  # same step, split differently
    "recipe.recompute_logprobs": CHANGED,
    "recipe.logprob_tolerance": CHANGED,
    "recipe.train_vlm": FATAL,  # which parameters the policy optimizer holds
    "recipe.target_kl": CHANGED,
    "recipe.lr_warmup_updates": CHANGED,
    "recipe.drift_probe_states": CHANGED,  # telemetry; the probe set itself is kept in drift_probe.pt
    "recipe.max_action_drift_mm": CHANGED,
    # learner / actor / checkpoint / telemetry: cadence, counts, addresses and transport security
    "learner.host": CHANGED,
    "learner.port": CHANGED,
    "learner.updates": CHANGED,
    "learner.episodes_per_update": CHANGED,  # pushed: each actor's share follows the learner's
    "learner.max_staleness": CHANGED,
    "learner.actor_timeout_s": CHANGED,
    "learner.auth_token": CHANGED,
    "learner.auth_token_file": CHANGED,
    # which run the actors must belong to (handshake); a resume in the same output dir keeps it
    "learner.run_id": CHANGED,
    "learner.tls_cert": CHANGED,
    "learner.tls_key": CHANGED,
    "learner.tls_ca": CHANGED,
    "learner.max_payload_mb": CHANGED,
    "actor.n_actors": CHANGED,  # pushed: each actor's share follows the learner's
    # world size and strategy: how the same update is computed, not what is trained (resume 1 <-> N)
    "learner.nproc": CHANGED,
    "learner.strategy": CHANGED,
    "learner.collective_timeout_s": CHANGED,
    "actor.connect_timeout_s": CHANGED,
    "actor.progress_every_s": CHANGED,  # how often an actor reports progress; no state depends on it
    "checkpoint.every": CHANGED,
    "checkpoint.keep_last": CHANGED,
    "telemetry.log_every": CHANGED,
    "telemetry.wandb": CHANGED,
    "telemetry.wandb_project": CHANGED,
    "telemetry.wandb_entity": CHANGED,
    "telemetry.wandb_run_name": CHANGED,
    "telemetry.wandb_tags": CHANGED,
    "telemetry.tensorboard": CHANGED,
    # eval: when and how much to evaluate; which init states training may use follows from
    # eval.every/episodes_per_task, but no tensor or optimizer state depends on them
    "eval.every": CHANGED,
    "eval.episodes_per_task": CHANGED,
    "eval.val_init_states": CHANGED,  # pushed, like env.train_init_states
    "eval.test_init_states": CHANGED,
}

FATAL_ONLY_IF: dict[str, tuple[str, Any]] = {
    # field -> (other field, value): the field is fatal only while the other field has that value
    # (in the checkpoint or now); otherwise it is a tunable. The toy env has no camera.
    "env.camera_size": ("env.type", "libero"),
}

# Fields the learner sends with every parameter push (``behaviour`` in the parameter header) and
# the actor adopts before it samples: the behaviour policy (σ bounds, SDE noise, prior term,
# log-prob reductions) and the episode plan (seed, share of episodes, GRPO groups). None of them
# changes a tensor shape, so each is a tunable on resume (FIELD_CLASSES above): a resumed
# learner's new value reaches the actors that are still running with the next push.
PUSHED_FIELDS: tuple[str, ...] = (
    "seed",
    "recipe.sigma_min",
    "recipe.sigma_max",
    "recipe.sde_noise_level",
    "recipe.include_prior",
    "recipe.logprob_action_reduction",
    "recipe.logprob_step_reduction",
    "recipe.grpo_group_size",
    "learner.episodes_per_update",
    "actor.n_actors",
    "env.train_init_states",
    "eval.val_init_states",
    "eval.test_init_states",
)


def severity(name: str, saved_flat: dict[str, Any], current_flat: dict[str, Any]) -> Severity:
    """The field's class for this pair of configs (unclassified fields count as fatal)."""
    base = FIELD_CLASSES.get(name, FATAL)
    condition = FATAL_ONLY_IF.get(name)
    if base == FATAL and condition is not None:
        other, value = condition
        if saved_flat.get(other) != value and current_flat.get(other) != value:
            return CHANGED
    return base


def actor_identity(cfg: RunConfig) -> dict[str, Any]:
    """What an actor and its learner must agree on before any parameter is sent: the fields that
    are fatal on resume (model shapes, data format, what an action and an observation are).
    One classification serves both checks, so they cannot drift apart."""
    flat = flatten(_normal(cfg.to_dict()))
    return {name: flat[name] for name in flat if severity(name, flat, flat) == FATAL}


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


ABSENT = "(absent)"
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


def _needs_quotes(text: str) -> bool:
    """Overrides parse as TOML and fall back to the raw text (config.parse_override): a string
    may stay bare exactly when TOML would not read it as something else (``4``, ``true``, ``[0]``)."""
    if text == "" or text != text.strip():
        return True
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def value_text(value: Any) -> str:
    """A value as it is typed in a dotted override (TOML)."""
    if value is ABSENT:
        return ABSENT
    if isinstance(value, str):
        return json.dumps(value) if _needs_quotes(value) else value
    return json.dumps(value, separators=(",", ":"))


def flag(name: str, value: Any) -> str:
    """The command-line flag that sets ``name`` back to ``value``, shell-quoted where needed."""
    if name == "profile":
        return f"--profile {shlex.quote(str(value))}"
    return shlex.quote(f"--{name}={value_text(value)}")


@dataclass
class Row:
    field: str
    checkpoint: Any  # the saved (expected) value
    current: Any
    severity: Severity
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "checkpoint": self.checkpoint,
            "current": self.current,
            "severity": self.severity,
            "fix": self.fix,
        }


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
