"""Run configuration: typed dataclasses, loaded from a TOML profile plus dotted overrides.

Why one module: every process (learner, actor, console, checkpoint validator) must agree on
what a run *is*. Profiles are parsed strictly here — an unknown key, a wrong type, a NaN/inf
or an out-of-range value raises :class:`ConfigError` naming the dotted field, the value found and
what is allowed — so that a typo never silently falls back to a default.

Each field is declared once, with :func:`setting`: its default, a one-line documentation (what
``--help`` and the console's override form show), its resume class (:data:`FATAL`,
:data:`TUNABLE` or :data:`PUSHED`, read by ``pirl_core/checkpoints/identity.py``) and the rule its
value alone must meet (``rule=at_least(1)``). A section's ``validate()`` holds the rules that
relate two of its fields; rules that relate two sections live in :func:`validate_across`.
:func:`field_specs` lists every field with its declaration.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import ipaddress
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

from pirl_core.errors import ConfigError
from pirl_core.quoting import value_text
from pirl_core.source import PROFILES_DIR

DEFAULT_PROFILE = "smoke"

LIBERO_SUITES: dict[str, int] = {
    # suite -> number of tasks; max episode steps live in pirl_core.envs.libero
    "libero_spatial": 10,
    "libero_object": 10,
    "libero_goal": 10,
    "libero_10": 10,
    "libero_90": 90,
}
TOY_SUITES: dict[str, int] = {"point_reach": 4, "point_reach_shaped": 4}
SUITES_BY_ENV: dict[str, dict[str, int]] = {"libero": LIBERO_SUITES, "toy": TOY_SUITES}
MAX_NOISE_STD = 10.0
CONFIG_SIZES: tuple[str, ...] = ("tiny", "small", "full")  # policy.size values built from config

# --------------------------------------------------------------------------- declaring a field

# Resume classes (pirl_core/checkpoints/identity.py turns them into FIELD_CLASSES / PUSHED_FIELDS):
# FATAL — the checkpoint's tensors or their meaning depend on it: a resume with another value is
#   refused (exit 3), and it is the actor's identity in the learner handshake.
# TUNABLE — allowed to change on resume (listed so that nobody changes one by accident).
# PUSHED — a tunable the learner sends with every parameter push and the actor adopts before it
#   samples (behaviour policy, episode plan): no tensor shape depends on it.
ResumeClass = Literal["fatal", "tunable", "pushed"]
FATAL: ResumeClass = "fatal"
TUNABLE: ResumeClass = "tunable"
PUSHED: ResumeClass = "pushed"
RESUME_CLASSES: tuple[ResumeClass, ...] = (FATAL, TUNABLE, PUSHED)

DOC = "doc"  # dataclass field metadata keys
RESUME = "resume"
RULE = "rule"  # a Rule: the field's own value check (rules across fields: the section's validate())
FATAL_IF = "fatal_if"  # (other dotted field, value): FATAL only while that field has that value
SECRET = "secret"  # the field holds a credential
REDACTED = (
    "<redacted>"  # what a set secret shows as wherever a value leaves the process (pirl_core/redact.py)
)


@dataclass(frozen=True)
class Rule:
    """A check of one field's value alone; ``expected`` is the ConfigError's "expected" text."""

    ok: Callable[[Any], bool]
    expected: str


def _num(x: float) -> str:
    return f"{x:g}"


def at_least(low: float, note: str = "") -> Rule:
    """``>= low`` (``note``: what the bound value means, e.g. "0 = off")."""
    return Rule(lambda v: v >= low, f">= {_num(low)}" + (f" ({note})" if note else ""))


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"> {_num(low)}")


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """``low <= v <= high``; an open end excludes its bound (``in (0, 1)``)."""

    def ok(v: Any) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Rule(ok, f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}")


# AdamW moves each parameter by about lr per step: beyond 1 no setting is meaningful.
LEARNING_RATE = within(0, 1)


def setting(
    default: Any,
    doc: str,
    resume: ResumeClass,
    *,
    rule: Rule | None = None,
    fatal_if: tuple[str, Any] | None = None,
    secret: bool = False,
) -> Any:
    """A config field's one declaration: default, one-line doc, resume class, and the rule its
    value alone must meet (list defaults are copied per instance). ``fatal_if=(other, value)``:
    FATAL only while ``other`` has ``value`` in the checkpoint or now, a tunable otherwise."""
    metadata: dict[str, Any] = {DOC: doc, RESUME: resume}
    if rule is not None:
        metadata[RULE] = rule
    if fatal_if is not None:
        metadata[FATAL_IF] = fatal_if
    if secret:
        metadata[SECRET] = True
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def secret_field(doc: str, resume: ResumeClass = TUNABLE) -> Any:
    """A config field whose value is a credential: the one place a secret is marked. Saved
    configs, telemetry, W&B, echoed command lines and error messages redact it (pirl_core/redact.py)."""
    return setting("", doc, resume, secret=True)


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise config_error(name, value, expected)


def check_rules(obj: Any, prefix: str = "") -> None:
    """The declared rule of each of ``obj``'s own fields (sections are not recursed)."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get(RULE)
        if rule is not None:
            value = getattr(obj, f.name)
            _require(rule.ok(value), f"{prefix}{f.name}", value, rule.expected)


# --------------------------------------------------------------------------- sections


class Section:
    """A config section: each field's own rule is declared with it (``setting(rule=...)``);
    ``validate`` holds the rules that relate two fields of the section."""

    def validate(self) -> None:
        """No rules across this section's fields."""


@dataclass
class EnvConfig(Section):
    type: Literal["libero", "toy"] = setting("libero", "environment family", FATAL)
    suite: str = setting(
        "libero_10", "task suite of the env family (e.g. libero_spatial, point_reach)", FATAL
    )
    task_ids: list[int] = setting([0], "task indices within the suite that RL trains on", FATAL)
    # horizon; no tensor depends on it
    episode_length: int = setting(520, "max env steps per episode", TUNABLE, rule=above(0))
    # Observation shapes on LIBERO; the toy env renders nothing, so there it is a tunable instead
    # of refusing a resume over a number no tensor depends on.
    camera_size: int = setting(
        64, "camera image side in pixels (LIBERO)", FATAL, fatal_if=("env.type", "libero"), rule=at_least(16)
    )
    n_envs: int = setting(1, "sub-environments per actor (throughput only)", TUNABLE, rule=at_least(1))
    control_mode: Literal["absolute", "relative"] = setting(
        "absolute", "what an action means: absolute or relative end-effector targets", FATAL
    )
    # LIBERO reloads the MuJoCo model on every reset by default (seconds on a CPU). False keeps
    # the compiled model and only restores the initial state: ~10x faster resets, observations
    # equal up to a few pixel levels.
    hard_reset: bool = setting(True, "reload the MuJoCo model on every reset (false: ~10x faster)", TUNABLE)
    # pirl_core/envs/workers.py; rollouts do not depend on the worker count
    workers: int = setting(
        0,
        "processes stepping the sub-envs: 0 = the actor's cores (capped by n_envs), 1 = in-process",
        TUNABLE,
        rule=at_least(0, "0 = the cores the actor may use, 1 = in-process"),
    )
    # False: a chunk step renders the cameras only for the observation the policy reads (after the
    # chunk's last step, or where the episode ended); the frames read are bitwise the same. True
    # renders every step (debugging, the throughput benchmark's baseline).
    render_every_step: bool = setting(
        False, "render every env step, not only those the policy reads", TUNABLE
    )
    # pirl_core/init_states.py, "The split"; data selection, no tensor
    train_init_states: str = setting(
        "", "per-task init states RL trains on, e.g. '0-29' ('' = all not held out by eval)", PUSHED
    )

    def validate(self) -> None:
        """The env section's own rules (ConfigError naming the first field that breaks one)."""
        suites = SUITES_BY_ENV[self.type]
        _require(self.suite in suites, "env.suite", self.suite, f"one of {sorted(suites)}")
        n_tasks = suites[self.suite]
        _require(len(self.task_ids) > 0, "env.task_ids", self.task_ids, "a non-empty list")
        for tid in self.task_ids:
            _require(0 <= tid < n_tasks, "env.task_ids", self.task_ids, f"task ids in [0, {n_tasks - 1}]")


@dataclass
class PolicyConfig(Section):
    type: Literal["xvla", "mlp", "pi0", "pi05"] = setting("xvla", "policy family", FATAL)
    # "tiny": built from config, random init, offline. "small": the same, a few M parameters (the
    # size pirl's SFT trains on demonstrations). "full": LeRobot's default X-VLA architecture
    # (~0.88 B) built the same way (benchmarks, GPU checks). "pretrained": loaded from pretrained_path.
    size: Literal["tiny", "small", "full", "pretrained"] = setting(
        "tiny", "tiny/small/full: built from config, random init; pretrained: from pretrained_path", FATAL
    )
    pretrained_path: str = setting(
        "", "hub repo id or local directory of the base model (policy.size = pretrained)", FATAL
    )
    tokenizer: str = setting(
        "", "tokenizer (token ids must mean the same words); '' = built from the suite's instructions", FATAL
    )
    chunk_size: int = setting(8, "actions per predicted chunk", FATAL, rule=at_least(1))
    action_steps: int = setting(
        4, "chunk steps executed in the env per inference (<= chunk_size); only these are scored", FATAL
    )
    hidden_dim: int = setting(64, "width of tiny's action transformer and of the MLP policy", FATAL)
    device: str = setting("cpu", "torch device (a CPU checkpoint resumes on a GPU and back)", TUNABLE)
    # Log-densities, advantages, losses and optimizer state stay float32 (weights too).
    dtype: Literal["float32", "bfloat16"] = setting(
        "float32", "compute precision of sampling and of the learner's forward/backward (autocast)", TUNABLE
    )
    # X-VLA: the action transformer (the VLM too when it trains); the MLP policy ignores it.
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass (memory vs time; same gradients)", TUNABLE
    )

    def validate(self) -> None:
        """The policy section's own rules."""
        _require(
            1 <= self.action_steps <= self.chunk_size,
            "policy.action_steps",
            self.action_steps,
            f"in [1, policy.chunk_size={self.chunk_size}]",
        )
        _require(
            self.size in CONFIG_SIZES or bool(self.pretrained_path),
            "policy.pretrained_path",
            self.pretrained_path,
            "a repo id or local directory when policy.size = 'pretrained'",
        )


@dataclass
class RecipeConfig(Section):
    # flow_noise has a noise head and its optimizer, flow_sde does not
    method: Literal["flow_noise", "flow_sde"] = setting(
        "flow_noise", "how exploration noise enters the flow chain: learned (flow_noise) or SDE", FATAL
    )
    # ppo has a critic and its optimizer, grpo does not
    algorithm: Literal["ppo", "grpo"] = setting("ppo", "RL algorithm", FATAL)
    # the chain is the action: its length defines the policy and tensor shapes
    denoise_steps: int = setting(4, "denoising steps of the flow chain", FATAL, rule=at_least(1))
    # The behaviour policy and the meaning of stored log-probs (PUSHED below): they change what an
    # actor samples and how its log-probs are reduced, but no tensor shape; the learner pushes them
    # with every parameter version, so the actor always samples exactly what the learner scores.
    sigma_min: float = setting(0.08, "Flow-Noise: lower bound of the learned noise std", PUSHED)
    sigma_max: float = setting(0.16, "Flow-Noise: upper bound of the learned noise std", PUSHED)
    sde_noise_level: float = setting(
        0.5,
        "Flow-SDE: sigma_t = sde_noise_level * sqrt(t / (1 - t))",
        PUSHED,
        rule=within(0, MAX_NOISE_STD, low_open=True),
    )
    include_prior: bool = setting(False, "add the initial-noise prior's log-density to the log-prob", PUSHED)
    logprob_action_reduction: Literal["sum", "mean"] = setting(
        "sum", "log-prob reduction over chunk steps x action dims", PUSHED
    )
    logprob_step_reduction: Literal["sum", "mean"] = setting(
        "sum", "log-prob reduction over scored denoising steps", PUSHED
    )
    # Trust-region granularity (README, "Trust region"). "chunk": one PPO ratio per transition,
    # its log-prob reduced over the executed chunk steps x action dims by
    # logprob_action_reduction (sum: RLinf's chunk_level, e.g. Flow-SDE's one stochastic step
    # summed over 5 x 7 elements; mean: per-element geometric mean, DPPO/ReinFlow, which needs a
    # ~0.01 clip). "element": one clipped ratio per executed chunk step x action dim (each
    # element's terms reduced over denoising steps by logprob_step_reduction), the surrogate
    # averaged over elements (RLinf's token_level). Element mode re-scores the behaviour
    # log-probs on the learner, so it needs learner.max_staleness = 0. A tunable: how the learner
    # forms ratios from the same stored chains.
    ratio_mode: Literal["chunk", "element"] = setting(
        "chunk", "PPO ratio per transition (chunk) or per chunk step x action dim (element)", TUNABLE
    )
    clip: float = setting(0.2, "PPO ratio clip", TUNABLE, rule=within(0, 1, low_open=True, high_open=True))
    # Index 0 = the first (noisiest, t = 1) step ... K-1 = the last. Flow-SDE only: a transition's
    # ratio belongs to its one stochastic step, whose index picks the clip.
    clip_per_denoise_step: list[float] = setting(
        [],
        "Flow-SDE: PPO clip per denoising step, e.g. [0.001, 0.003, 0.006, 0.01] ([] = recipe.clip)",
        TUNABLE,
    )
    value_clip: float = setting(0.2, "critic value clip", TUNABLE, rule=above(0))
    gamma: float = setting(0.99, "discount factor", TUNABLE, rule=within(0, 1))
    lam: float = setting(0.95, "GAE lambda", TUNABLE, rule=within(0, 1))
    update_epochs: int = setting(4, "epochs over each batch per update", TUNABLE, rule=at_least(1))
    minibatches: int = setting(2, "minibatches per epoch", TUNABLE, rule=at_least(1))
    entropy_coef: float = setting(
        0.0, "entropy bonus coefficient", TUNABLE, rule=at_least(0, "an entropy bonus")
    )
    grad_clip: float = setting(2.0, "gradient norm clip", TUNABLE, rule=above(0))
    normalize_advantages: bool = setting(True, "normalise advantages per batch", TUNABLE)
    lr: float = setting(5e-6, "policy learning rate (AdamW)", TUNABLE, rule=LEARNING_RATE)
    value_lr: float = setting(1e-4, "critic learning rate", TUNABLE, rule=LEARNING_RATE)
    noise_lr: float = setting(1e-4, "Flow-Noise noise-head learning rate", TUNABLE, rule=LEARNING_RATE)
    critic: Literal["after_vlm", "action_head"] = setting(
        "after_vlm", "where the value head reads its input (its width and meaning)", FATAL
    )
    # No tensor shape, no optimizer group, nothing the actor samples: a learner-only choice.
    critic_detach: bool = setting(True, "stop the critic's gradients at the shared trunk", TUNABLE)
    # pushed: which initial states an actor runs (the episode plan)
    grpo_group_size: int = setting(
        2, "GRPO: episodes per group (same initial state)", PUSHED, rule=at_least(2)
    )
    grpo_filter: bool = setting(
        False, "GRPO: keep only groups whose mean success is in grpo_filter_range", TUNABLE
    )
    # RLinf LIBERO: [0.1, 0.9]; for groups of <= 10 episodes that drops exactly all-fail and
    # all-success groups.
    grpo_filter_range: list[float] = setting(
        [0.1, 0.9], "GRPO filter: [low, high] mean group success kept", TUNABLE
    )
    # "transition": a long (usually failed) episode weighs more than a short successful one and
    # GRPO's per-group zero-mean advantages no longer average to zero. "episode": as verl's
    # "seq-mean-token-mean".
    loss_aggregation: Literal["transition", "episode"] = setting(
        "transition", "policy-loss average: every chunk once (transition) or every episode once", TUNABLE
    )
    # "success_only": the filtered-BC control — advantage 1 on every transition of a successful
    # episode, 0 elsewhere, through the same PPO loss (no normalisation; the critic still fits GAE
    # returns). If this does not raise success, the fault is in the log-likelihood or its gradient,
    # not in the step size. A control experiment on the same model and optimizer.
    advantage_mode: Literal["normal", "success_only"] = setting(
        "normal", "normal: GAE / group-normalised returns; success_only: the filtered-BC control", TUNABLE
    )
    # Before any step the exact value is 0; float32 re-scoring of the same data in other batch
    # shapes stays below 1e-4 (tests/test_learning.py; measured 0 to ~2e-7), while a contract
    # mismatch is far above (actor sigma_max 0.5 vs learner 0.8 on toy: 0.35). 1e-3 leaves headroom
    # for float32 on other hardware and kernels; reduced precision (bf16) needs about 1e-2.
    ratio_tolerance: float = setting(
        1e-3,
        "largest max |ratio - 1| allowed on an on-policy update's first minibatch",
        TUNABLE,
        rule=above(0),
    )
    # memory follows this size, the step does not change
    micro_batch_size: int = setting(
        0, "gradient accumulation inside each minibatch (0 = off)", TUNABLE, rule=at_least(0, "0 = off")
    )
    # "auto": on when actor and learner numerics can differ (dtype != float32 or a non-CPU device).
    recompute_logprobs: Literal["auto"] | bool = setting(
        "auto",
        "re-score the behaviour log-probs on the learner before each update (auto/true/false)",
        TUNABLE,
    )
    # Catches actor/learner contract bugs that recompute would otherwise hide; exceeding it exits 5.
    logprob_tolerance: float = setting(
        1.0,
        "bound on max |rollout log-prob - learner log-prob| (0 = unchecked)",
        TUNABLE,
        rule=Rule(lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (0 = unchecked)"),
    )
    # which parameters the policy optimizer holds
    train_vlm: bool = setting(True, "train the VLM (false: frozen, not optimised, not pushed)", FATAL)
    target_kl: float = setting(
        0.0,
        "PPO early stop once a minibatch's approx_kl exceeds 1.5 * target_kl (0 = off)",
        TUNABLE,
        rule=Rule(lambda v: math.isfinite(v) and v >= 0, ">= 0 (0 = off)"),
    )
    lr_warmup_updates: int = setting(
        0,
        "linear learning-rate warm-up over the first N updates (0 = off)",
        TUNABLE,
        rule=at_least(0, "0 = off"),
    )
    # pirl_core/recipe/drift.py: probes evenly spaced over the first update's batch, against the
    # update's start and the run's start; the probe set itself is kept in drift_probe.pt.
    drift_probe_states: int = setting(
        16,
        "fixed probe observations for the action_drift telemetry (0 = off)",
        TUNABLE,
        rule=at_least(0, "0 = off"),
    )
    # learner update count, so exact across resume; DPPO/ReinFlow: 2
    critic_warmup_updates: int = setting(
        0, "PPO: the first N updates train the critic only (0 = off)", TUNABLE, rule=at_least(0, "0 = off")
    )
    # pirl_core/recipe/cotrain.py: a loss term, no tensor or optimizer group of its own. RLinf: 0.1
    # (0.2 in a co-training config).
    sft_loss_weight: float = setting(
        0.0,
        "SFT co-training: weight of LeRobot's X-VLA SFT loss per minibatch (0 = off)",
        TUNABLE,
        rule=at_least(0, "0 = off"),
    )
    sft_dataset: str = setting(
        "", "SFT co-training: demonstration LeRobotDataset (python -m pirl_core.demos)", TUNABLE
    )
    sft_batch_size: int = setting(
        16, "SFT co-training: demonstration frames per minibatch", TUNABLE, rule=at_least(1)
    )
    # checked after each minibatch step, against the update's start
    max_action_drift_mm: float = setting(
        0.0,
        "stop an update's epochs once the probe actions moved more than this many mm (0 = off)",
        TUNABLE,
        rule=at_least(0, "0 = off"),
    )

    def validate(self) -> None:
        """The recipe section's own rules."""
        # Actions are normalised to about [-1, 1]: a noise std beyond MAX_NOISE_STD only drowns them.
        _require(
            self.sigma_max <= MAX_NOISE_STD,
            "recipe.sigma_max",
            self.sigma_max,
            f"in [sigma_min, {MAX_NOISE_STD:g}]",
        )
        _require(
            0 < self.sigma_min <= self.sigma_max,
            "recipe.sigma_min",
            self.sigma_min,
            f"in (0, sigma_max={self.sigma_max}]",
        )
        clips = self.clip_per_denoise_step
        if clips:
            _require(
                self.method == "flow_sde",
                "recipe.clip_per_denoise_step",
                clips,
                "[] unless recipe.method = 'flow_sde' (only a Flow-SDE transition has one denoising step)",
            )
            _require(
                len(clips) == self.denoise_steps,
                "recipe.clip_per_denoise_step",
                clips,
                f"one clip per denoising step: a list of recipe.denoise_steps = {self.denoise_steps} numbers",
            )
            _require(all(0 < c < 1 for c in clips), "recipe.clip_per_denoise_step", clips, "clips in (0, 1)")
        lo_hi = self.grpo_filter_range
        _require(
            len(lo_hi) == 2 and 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0,
            "recipe.grpo_filter_range",
            lo_hi,
            "[low, high] with 0 <= low <= high <= 1 (mean group success kept)",
        )
        _require(
            self.critic_warmup_updates == 0 or self.algorithm == "ppo",
            "recipe.critic_warmup_updates",
            self.critic_warmup_updates,
            "0 with recipe.algorithm = 'grpo' (GRPO has no critic to warm up)",
        )
        if self.max_action_drift_mm > 0:
            _require(
                self.drift_probe_states > 0,
                "recipe.drift_probe_states",
                self.drift_probe_states,
                "> 0 when recipe.max_action_drift_mm is set (the bound is measured on the probe states)",
            )


@dataclass
class LearnerConfig(Section):
    host: str = setting("127.0.0.1", "address the learner binds (not loopback: auth_token required)", TUNABLE)
    # 0: the learner binds any free port and reports it in its "ready" telemetry event (tests)
    port: int = setting(50151, "port the learner binds (0 = any free port)", TUNABLE, rule=within(0, 65535))
    updates: int = setting(2, "policy updates the run performs", TUNABLE, rule=at_least(1))
    # pushed: each actor's share follows the learner's
    episodes_per_update: int = setting(
        2, "episodes gathered from all actors per update", PUSHED, rule=at_least(1)
    )
    max_staleness: int = setting(
        0, "oldest policy version a batch may come from (0 = strictly on-policy)", TUNABLE, rule=at_least(0)
    )
    actor_timeout_s: float = setting(
        600.0,
        "an expected actor silent this long (s) for the current version stops the run (exit 5)",
        TUNABLE,
    )
    # Required when host is not loopback. Marked secret: pirl_core/redact.py keeps its value out of
    # everything a run writes or prints; compared set-or-not on resume.
    auth_token: str = secret_field("shared secret every RPC must carry (prefer auth_token_file)")
    auth_token_file: str = setting(
        "", "file holding the shared secret (wins over auth_token; keeps it off command lines)", TUNABLE
    )
    # Derived from the resolved output_dir (pirl_core/runid.py) when empty, so learner and actors
    # started with the same --output_dir agree without typing anything; set it on both sides when
    # their paths differ. A resume in the same output dir keeps it.
    run_id: str = setting(
        "", "which run an actor belongs to (the handshake refuses others); '' = from output_dir", TUNABLE
    )
    tls_cert: str = setting("", "TLS server certificate (PEM); '' = no TLS", TUNABLE)
    tls_key: str = setting("", "TLS server key (PEM)", TUNABLE)
    tls_ca: str = setting("", "CA the actors trust ('' = tls_cert itself)", TUNABLE)
    # checked while it streams in
    max_payload_mb: float = setting(1024.0, "largest rollout payload the learner accepts (MB)", TUNABLE)
    # World size and strategy: how the same update is computed, not what is trained (resume 1 <-> N).
    nproc: int = setting(
        1,
        "learner processes (ranks); > 1 starts it under torchrun",
        TUNABLE,
        rule=at_least(1, "learner processes"),
    )
    strategy: Literal["ddp", "fsdp"] = setting(
        "ddp", "how ranks share state: ddp full replicas, fsdp sharded parameters/gradients/AdamW", TUNABLE
    )
    collective_timeout_s: float = setting(
        300.0,
        "a rank waiting this long (s) for a peer in an update stops (exit 7)",
        TUNABLE,
        rule=Rule(lambda v: math.isfinite(v) and v > 0, "a finite number of seconds > 0"),
    )

    def validate(self) -> None:
        """The learner section's own rules (transport and security included)."""
        _validate_transport(self)


@dataclass
class ActorConfig(Section):
    # pushed: each actor's share follows the learner's
    n_actors: int = setting(1, "actor processes", PUSHED, rule=at_least(1))
    connect_timeout_s: float = setting(
        300.0, "how long an actor waits for its learner (s)", TUNABLE, rule=above(0)
    )
    # A telemetry event for the console and a heartbeat for the learner (pirl_core/progress.py);
    # no state depends on it.
    progress_every_s: float = setting(
        3.0,
        "report collection progress at most every N s (well below learner.actor_timeout_s)",
        TUNABLE,
        rule=Rule(
            lambda v: math.isfinite(v) and v > 0,
            "a finite number of seconds > 0 (well below learner.actor_timeout_s)",
        ),
    )


@dataclass
class CheckpointConfig(Section):
    every: int = setting(1, "save a checkpoint every N updates (and at the end)", TUNABLE, rule=at_least(1))
    keep_last: int = setting(
        0,
        "keep the newest N checkpoints (0 = all; never the one `last` points to)",
        TUNABLE,
        rule=at_least(0),
    )


@dataclass
class TelemetryConfig(Section):
    log_every: int = setting(1, "log metrics every N updates", TUNABLE, rule=at_least(1))
    # Logging backends, all fed from the JSONL records (pirl_core/sinks). W&B follows LeRobot's
    # conventions.
    wandb: Literal["off", "offline", "online"] = setting(
        "off", "Weights & Biases: off, offline (<output_dir>/wandb for `wandb sync`) or online", TUNABLE
    )
    wandb_project: str = setting("pirl", "W&B project", TUNABLE)
    wandb_entity: str = setting("", "W&B entity ('' = the account's default)", TUNABLE)
    wandb_run_name: str = setting(
        "", "W&B run name ('' = <env.type>_<policy.type>_<output dir name>)", TUNABLE
    )
    wandb_tags: list[str] = setting([], "W&B tags (1 to 64 characters each)", TUNABLE)
    tensorboard: bool = setting(
        False, "also write TensorBoard event files under <output_dir>/tensorboard", TUNABLE
    )

    def validate(self) -> None:
        """The telemetry section's own rules."""
        _require(
            self.wandb == "off" or bool(self.wandb_project.strip()),
            "telemetry.wandb_project",
            self.wandb_project,
            "a non-empty W&B project name when telemetry.wandb is on",
        )
        for tag in self.wandb_tags:  # W&B rejects tags longer than 64 characters
            _require(
                0 < len(tag) <= 64, "telemetry.wandb_tags", self.wandb_tags, "tags of 1 to 64 characters"
            )


@dataclass
class EvalConfig(Section):
    # Periodic evaluation during training (pirl_core/eval): actor 0 runs deterministic (ODE)
    # episodes on held-out init states before collecting that version. Must be a multiple of
    # checkpoint.every: `checkpoints/best` can only point at a checkpoint that exists.
    every: int = setting(
        0, "evaluate every N updates on held-out init states (0 = off)", TUNABLE, rule=at_least(0, "0 = off")
    )
    # The last N of each task's fixed init states (training then cycles over the others;
    # pirl_core/init_states.py).
    episodes_per_task: int = setting(
        5,
        "held-out init states per task when val_init_states is unset (the last N)",
        TUNABLE,
        rule=at_least(1),
    )
    # The honest split (all three disjoint, per-task indices like "30-39" or "30-34,38"):
    # validation states serve periodic evaluation and checkpoints/best (what a run selects on);
    # test states serve only the final claim (benchmarks/libero_lift.py), which nothing selects on.
    # Data selection, no tensor: pushed to the actors like env.train_init_states.
    val_init_states: str = setting(
        "", "per-task validation init states, e.g. '30-39' (periodic eval, checkpoints/best)", PUSHED
    )
    test_init_states: str = setting(
        "", "per-task test init states, e.g. '40-49' (the final claim only; nothing selects on them)", PUSHED
    )


@dataclass
class RunConfig:
    # a name; what it resolved to is compared field by field
    profile: str = setting(DEFAULT_PROFILE, "profile name under profiles/ or a .toml path", TUNABLE)
    # RNG state comes from the checkpoint; pushed: actors derive their rollout streams from it
    seed: int = setting(0, "run seed (actors derive their rollout streams from it)", PUSHED)
    # --resume-from may fork a checkpoint into a new output dir
    output_dir: str = setting(
        "outputs/smoke",
        "where checkpoints, telemetry and logs go",
        TUNABLE,
        rule=Rule(bool, "a non-empty path"),
    )
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    def validate(self) -> None:
        """Each field's declared rule and each section's own rules, then the rules across sections,
        then the top-level fields."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                check_rules(section, f"{f.name}.")
                section.validate()
        validate_across(self)
        check_rules(self)
        taken = Path(self.output_dir)
        _require(
            not (taken.exists() and not taken.is_dir()),
            "output_dir",
            self.output_dir,
            "a directory (or a path that does not exist yet); it names an existing file",
        )


# --------------------------------------------------------------------------- the declarations


@dataclass(frozen=True)
class FieldSpec:
    """One config field as declared: what --help, the console form and the resume validator read."""

    name: str  # dotted, e.g. "env.suite"
    type: Any  # the annotation (a type, Literal[...] or a union)
    default: Any
    doc: str
    resume: ResumeClass
    rule: str = ""  # the declared rule's "expected" text ("" = none of its own)
    fatal_if: tuple[str, Any] | None = None
    secret: bool = False

    def usage(self) -> str:
        """``--name=type`` as typed on a command line."""
        return f"--{self.name}={type_text(self.type)}"

    def facts(self) -> str:
        """``default X; rule; resume: class`` — how --help and the console's form describe it."""
        resume = self.resume
        if self.fatal_if is not None:  # e.g. env.camera_size: fatal on LIBERO only
            other, value = self.fatal_if
            resume = f"{self.resume} while {other}={value_text(value)}, else tunable"
        rule = f"{self.rule}; " if self.rule else ""
        return f"default {value_text(self.default)}; {rule}resume: {resume}"


def field_specs(cls: type = RunConfig, prefix: str = "") -> list[FieldSpec]:
    """Every leaf field of ``cls`` with its declaration, in declaration order (sections recursed)."""
    specs: list[FieldSpec] = []
    hints = _field_types(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs.extend(field_specs(hint, f"{prefix}{f.name}."))
            continue
        meta = f.metadata
        specs.append(
            FieldSpec(
                name=f"{prefix}{f.name}",
                type=hint,
                default=getattr(defaults, f.name),
                doc=meta.get(DOC, ""),
                resume=meta.get(RESUME, ""),
                rule=meta[RULE].expected if RULE in meta else "",
                fatal_if=meta.get(FATAL_IF),
                secret=bool(meta.get(SECRET)),
            )
        )
    return specs


def type_text(hint: Any) -> str:
    """A field's type as a user types it: ``int``, ``list[int]``, ``ddp|fsdp``, ``auto|bool``."""
    origin = get_origin(hint)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return "|".join(type_text(a) for a in get_args(hint))
    if origin is list:
        return f"list[{type_text(get_args(hint)[0])}]"
    return getattr(hint, "__name__", str(hint))


# --------------------------------------------------------------------------- validation

SPLIT_FIELDS = ("env.train_init_states", "eval.val_init_states", "eval.test_init_states")


def parse_init_states(spec: str, name: str) -> list[int]:
    """``"0-29"`` / ``"30-34,38"`` -> sorted per-task init-state indices ("" -> []); a malformed
    spec raises ConfigError naming ``name``."""
    states: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            a, b = int(low), int(high) if sep else int(low)
        except ValueError:
            a, b = -1, -2
        if a < 0 or b < a:
            raise config_error(
                name, spec, "per-task init-state indices like '0-29' or '30-34,38' (ranges inclusive)"
            )
        states.update(range(a, b + 1))
    return sorted(states)


def split_states(cfg: RunConfig) -> dict[str, list[int]]:
    """The three split fields, parsed: {field name: per-task indices} (empty when unset)."""
    specs = (cfg.env.train_init_states, cfg.eval.val_init_states, cfg.eval.test_init_states)
    return {name: parse_init_states(spec, name) for name, spec in zip(SPLIT_FIELDS, specs, strict=True)}


def validate_across(cfg: RunConfig) -> None:
    """Rules that relate fields of two sections (each section's own rules: its ``validate()``)."""
    r = cfg.recipe
    _require(
        r.ratio_mode == "chunk" or cfg.learner.max_staleness == 0,
        "recipe.ratio_mode",
        r.ratio_mode,
        f"'chunk' when learner.max_staleness = {cfg.learner.max_staleness} > 0 (element ratios "
        "re-score the behaviour log-probs on the learner, which is exact only on-policy)",
    )
    if r.sft_loss_weight > 0:
        _require(
            cfg.policy.type != "mlp",
            "recipe.sft_loss_weight",
            r.sft_loss_weight,
            "0 for policy.type = 'mlp' (the co-training loss is a LeRobot policy's own SFT loss)",
        )
        _require(
            (Path(r.sft_dataset) / "meta" / "info.json").is_file(),
            "recipe.sft_dataset",
            r.sft_dataset,
            "a LeRobot demonstration dataset directory holding meta/info.json (python -m pirl_core.demos) "
            "when recipe.sft_loss_weight > 0",
        )
        _require(
            cfg.learner.nproc == 1,
            "recipe.sft_loss_weight",
            r.sft_loss_weight,
            f"0 with learner.nproc = {cfg.learner.nproc} (co-training runs in one learner process)",
        )
    if r.max_action_drift_mm > 0:
        _require(
            cfg.learner.nproc == 1,
            "recipe.max_action_drift_mm",
            r.max_action_drift_mm,
            f"0 with learner.nproc = {cfg.learner.nproc} (drift is measured in one learner process)",
        )
    _require(
        r.train_vlm or cfg.policy.type != "mlp",
        "recipe.train_vlm",
        r.train_vlm,
        "true for policy.type = 'mlp' (it has no VLM to freeze)",
    )
    if r.algorithm == "grpo":
        # Each actor runs whole groups of its own initial states (rollout_plan.episode_plan); any
        # remainder would leave the learner waiting for episodes no actor plans to run.
        whole = r.grpo_group_size * cfg.actor.n_actors
        _require(
            cfg.learner.episodes_per_update % whole == 0,
            "learner.episodes_per_update",
            cfg.learner.episodes_per_update,
            f"a multiple of recipe.grpo_group_size * actor.n_actors = {r.grpo_group_size} * "
            f"{cfg.actor.n_actors} = {whole} (GRPO: every actor runs whole groups)",
        )
    e = cfg.eval
    _require(
        e.every == 0 or e.every % cfg.checkpoint.every == 0,
        "eval.every",
        e.every,
        f"0 or a multiple of checkpoint.every = {cfg.checkpoint.every} (checkpoints/best points at a saved "
        "checkpoint of the evaluated version)",
    )
    split = split_states(cfg)  # malformed specs raise here, naming the field
    specs = dict(
        zip(SPLIT_FIELDS, (cfg.env.train_init_states, e.val_init_states, e.test_init_states), strict=True)
    )
    for i, a in enumerate(SPLIT_FIELDS):
        for b in SPLIT_FIELDS[i + 1 :]:
            common = sorted(set(split[a]) & set(split[b]))
            _require(
                not common, a, specs[a], f"init states disjoint from {b}={specs[b]!r} (both hold {common})"
            )
    if any(split.values()) and e.every > 0:
        _require(
            bool(split["eval.val_init_states"]),
            "eval.val_init_states",
            cfg.eval.val_init_states,
            "validation states (e.g. '30-39') when the init states are split and eval.every > 0: periodic "
            "evaluation and checkpoints/best select on them, never on train or test states",
        )


def validate(cfg: RunConfig) -> RunConfig:
    """The single place where a config is judged (``RunConfig.validate``); raises ConfigError."""
    cfg.validate()
    return cfg


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_transport(lc: LearnerConfig) -> None:
    """Transport and security settings (learner and actor read the same section)."""
    for name in ("actor_timeout_s", "max_payload_mb"):
        value = getattr(lc, name)
        if not (isinstance(value, float) and math.isfinite(value) and value > 0):
            raise config_error(f"learner.{name}", value, "a finite number > 0")
    if lc.auth_token_file and not Path(lc.auth_token_file).is_file():
        raise config_error("learner.auth_token_file", lc.auth_token_file, "a readable file holding the token")
    if not is_loopback(lc.host) and not (lc.auth_token or lc.auth_token_file):
        raise config_error(
            "learner.auth_token",
            lc.auth_token,
            f"a shared secret because learner.host={lc.host!r} is not loopback",
            hint="pass --learner.auth_token_file=PATH (or --learner.auth_token=SECRET) to the learner "
            "and every actor, or bind --learner.host=127.0.0.1",
        )
    if lc.tls_key and not lc.tls_cert:
        raise config_error("learner.tls_cert", "", "the certificate that goes with learner.tls_key")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(lc, name)
        if path and not Path(path).is_file():
            raise config_error(f"learner.{name}", path, "an existing PEM file")


# --------------------------------------------------------------------------- loading


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.toml"))


def resolve_profile_path(name_or_path: str, profiles_dir: Path = PROFILES_DIR) -> Path:
    """A profile is a name under profiles/ or a path to a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if candidate.is_file():
            return candidate
        raise config_error("--profile", name_or_path, "an existing .toml file", hint="check the path")
    path = profiles_dir / f"{name_or_path}.toml"
    if path.is_file():
        return path
    raise config_error(
        "--profile", name_or_path, f"one of {available_profiles(profiles_dir)} or a path to a .toml file"
    )


def load_config(
    profile: str = DEFAULT_PROFILE,
    overrides: list[str] | dict[str, Any] | None = None,
    profiles_dir: Path = PROFILES_DIR,
) -> RunConfig:
    """Profile file, then dotted overrides, then validation. Raises ConfigError (exit 2)."""
    path = resolve_profile_path(profile, profiles_dir)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise config_error("--profile", str(path), "valid TOML", hint=str(exc)) from exc
    cfg = _build(RunConfig, data, prefix="")
    cfg.profile = path.stem if path.parent.resolve() == profiles_dir.resolve() else str(path)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides or []]
    for key, value in items:
        apply_override(cfg, key, value)
    return validate(cfg)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved with ``to_dict`` (e.g. train_config.json); strict like profiles.
    A redacted secret comes back unset: the saved file never holds it (pirl_core/redact.py), so
    whoever resumes supplies the secret again."""
    data = copy.deepcopy(dict(data))
    for name in secret_fields():
        *path, leaf = name.split(".")
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) == REDACTED:
            node[leaf] = ""
    profile = data.pop("profile", DEFAULT_PROFILE)
    cfg = _build(RunConfig, data, prefix="")
    cfg.profile = profile
    return validate(cfg)


@functools.cache
def secret_fields() -> frozenset[str]:
    """Dotted names of every field declared secret (``learner.auth_token``): the one mark that
    redaction (pirl_core/redact.py) and this module's own errors derive from."""
    return frozenset(spec.name for spec in field_specs() if spec.secret)


def config_error(field: str, value: object, expected: str, *, hint: str = "") -> ConfigError:
    """A ConfigError whose value is hidden when ``field`` is secret: an error message is printed
    and logged, so a token given in the wrong form must not appear in it."""
    if value and field.removeprefix("--") in secret_fields():
        value = REDACTED
    return ConfigError(field, value, expected, hint=hint)


def parse_override(text: str) -> tuple[str, Any]:
    """``env.suite=libero_spatial`` -> ("env.suite", "libero_spatial"); values parse as TOML."""
    text = text.removeprefix("--")
    if "=" not in text:
        raise config_error("override", text, "KEY=VALUE, e.g. --env.suite=libero_spatial")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings need no quotes on the command line
    return key.strip(), value


def apply_override(cfg: RunConfig, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target: Any = cfg
    for part in parts[:-1]:
        sub = getattr(target, part, None) if part in _field_types(type(target)) else None
        if not dataclasses.is_dataclass(sub):
            raise config_error(
                dotted, value, f"a known key; valid sections: {sorted(_field_types(RunConfig))}"
            )
        target = sub
    leaf = parts[-1]
    types_ = _field_types(type(target))
    if leaf not in types_:
        section = ".".join(parts[:-1])
        raise config_error(dotted, value, f"a known key in [{section or 'top level'}]: {sorted(types_)}")
    setattr(target, leaf, _coerce(types_[leaf], value, dotted))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise config_error(prefix or "profile", data, "a table")
    types_ = _field_types(cls)
    for key in data:
        if key not in types_:
            name = f"{prefix}{key}"
            raise config_error(
                name, data[key], f"a known key in [{prefix.rstrip('.') or 'top level'}]: {sorted(types_)}"
            )
    kwargs = {}
    for key, value in data.items():
        hint = types_[key]
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, prefix=f"{name}.")
        else:
            kwargs[key] = _coerce(hint, value, name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise config_error(name, value, f"one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _coerce(option, value, name)
            except ConfigError:
                continue
        raise config_error(name, value, f"a value of type {hint}")
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise config_error(name, value, f"a list of {item.__name__}")
        return [_coerce(item, v, name) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise config_error(name, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise config_error(name, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise config_error(name, value, "a number")
        try:  # TOML and the command line both accept nan, inf and integers beyond any float
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise config_error(name, value, "a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise config_error(name, value, "a string")
        return value
    if hint is type(None):
        if value is not None:
            raise config_error(name, value, "nothing")
        return None
    raise TypeError(f"unsupported config field type {hint!r} for {name}")  # programming error
