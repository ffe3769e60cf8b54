"""Run configuration: typed dataclasses, loaded from a TOML profile plus dotted overrides.

Why one module: every process (learner, actor, console, checkpoint validator) must agree on
what a run *is*. Profiles are parsed strictly here — an unknown key, a wrong type, a NaN/inf
or an out-of-range value raises :class:`ConfigError` naming the dotted field, the value found and
what is allowed — so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

from pirl_core.errors import ConfigError
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


@dataclass
class EnvConfig:
    type: Literal["libero", "toy"] = "libero"
    suite: str = "libero_10"
    task_ids: list[int] = field(default_factory=lambda: [0])
    episode_length: int = 520
    camera_size: int = 64
    n_envs: int = 1
    control_mode: Literal["absolute", "relative"] = "absolute"
    # LIBERO reloads the MuJoCo model on every reset by default (seconds on a CPU). False keeps
    # the compiled model and only restores the initial state: ~10x faster resets, observations
    # equal up to a few pixel levels.
    hard_reset: bool = True
    # Processes stepping the n_envs sub-envs (pirl_core/envs/workers.py). 0 = the cores the actor
    # may use (its CPU affinity), capped by n_envs; 1 = in-process.
    workers: int = 0
    # False: a chunk step renders the cameras only for the observation the policy reads (after the
    # chunk's last step, or where the episode ended); the frames read are bitwise the same. True
    # renders every step (debugging, the throughput benchmark's baseline).
    render_every_step: bool = False
    # Per-task init states RL trains on (and demos are recorded on), e.g. "0-29"; "" = every state
    # not in eval.val_init_states / eval.test_init_states (pirl_core/eval/plan.py, "The split").
    train_init_states: str = ""


@dataclass
class PolicyConfig:
    type: Literal["xvla", "mlp"] = "xvla"
    # "tiny": built from config, random init, offline. "small": the same, a few M parameters (the
    # size pirl's SFT trains on demonstrations). "full": LeRobot's default X-VLA architecture
    # (~0.88 B) built the same way (benchmarks, GPU checks). "pretrained": loaded from pretrained_path.
    # hidden_dim sets tiny's action-transformer width (and the MLP's); small and full fix their own.
    size: Literal["tiny", "small", "full", "pretrained"] = "tiny"
    pretrained_path: str = ""
    # Empty: the tokenizer the project builds from the suite's task instructions.
    tokenizer: str = ""
    chunk_size: int = 8
    # Chunk steps executed in the env per inference (<= chunk_size); only these are scored.
    action_steps: int = 4
    hidden_dim: int = 64
    device: str = "cpu"
    # Compute precision of the actor's sampling and the learner's forward/backward (autocast over
    # float32 weights); log-densities, advantages, losses and optimizer state stay float32.
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Recompute activations in the backward pass (X-VLA: action transformer; the VLM too when it
    # trains). The MLP policy has nothing worth checkpointing and ignores it.
    gradient_checkpointing: bool = False


@dataclass
class RecipeConfig:
    method: Literal["flow_noise", "flow_sde"] = "flow_noise"
    algorithm: Literal["ppo", "grpo"] = "ppo"
    denoise_steps: int = 4
    # Flow-Noise: learned std squashed into [sigma_min, sigma_max].
    sigma_min: float = 0.08
    sigma_max: float = 0.16
    # Flow-SDE: sigma_t = sde_noise_level * sqrt(t / (1 - t)).
    sde_noise_level: float = 0.5
    include_prior: bool = False
    # How per-element Gaussian log-densities become one log-prob per chunk.
    logprob_action_reduction: Literal["sum", "mean"] = "sum"  # over chunk steps x action dims
    logprob_step_reduction: Literal["sum", "mean"] = "sum"  # over scored denoising steps
    # Trust-region granularity (README, "Trust region"). "chunk": one PPO ratio per transition,
    # its log-prob reduced over the executed chunk steps x action dims by
    # logprob_action_reduction (sum: RLinf's chunk_level, e.g. Flow-SDE's one stochastic step
    # summed over 5 x 7 elements; mean: per-element geometric mean, DPPO/ReinFlow, which needs a
    # ~0.01 clip). "element": one clipped ratio per executed chunk step x action dim (each
    # element's terms reduced over denoising steps by logprob_step_reduction), the surrogate
    # averaged over elements (RLinf's token_level). Element mode re-scores the behaviour
    # log-probs on the learner, so it needs learner.max_staleness = 0.
    ratio_mode: Literal["chunk", "element"] = "chunk"
    clip: float = 0.2
    # DPPO-style clip per denoising step, index 0 = the first (noisiest, t = 1) step ... K-1 = the
    # last; [] = recipe.clip everywhere. Flow-SDE only: a transition's ratio belongs to its one
    # stochastic step, whose index picks the clip (e.g. [0.001, 0.003, 0.006, 0.01]).
    clip_per_denoise_step: list[float] = field(default_factory=list)
    value_clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    update_epochs: int = 4
    minibatches: int = 2
    entropy_coef: float = 0.0
    grad_clip: float = 2.0
    normalize_advantages: bool = True
    lr: float = 5e-6
    value_lr: float = 1e-4
    noise_lr: float = 1e-4
    critic: Literal["after_vlm", "action_head"] = "after_vlm"
    critic_detach: bool = True
    grpo_group_size: int = 2
    grpo_filter: bool = False
    # With grpo_filter: keep groups whose mean episode success lies in [low, high] (RLinf LIBERO:
    # [0.1, 0.9]; for groups of <= 10 episodes that drops exactly all-fail and all-success groups).
    grpo_filter_range: list[float] = field(default_factory=lambda: [0.1, 0.9])
    # How the policy loss averages over transitions. "transition": every chunk counts once, so a
    # long (usually failed) episode weighs more than a short successful one and GRPO's
    # per-group zero-mean advantages no longer average to zero. "episode": every kept episode
    # counts once (its transitions share 1 / its length), as verl's "seq-mean-token-mean".
    loss_aggregation: Literal["transition", "episode"] = "transition"
    # "normal": GAE (PPO) or group-normalised returns (GRPO). "success_only": the filtered-BC
    # control — advantage 1 on every transition of a successful episode, 0 elsewhere, through the
    # same PPO loss (no normalisation; the critic still fits GAE returns). If this does not raise
    # success, the fault is in the log-likelihood or its gradient, not in the step size.
    advantage_mode: Literal["normal", "success_only"] = "normal"
    # Largest max |ratio - 1| allowed on the first minibatch of an on-policy update. Before any
    # step the exact value is 0; float32 re-scoring of the same data in other batch shapes stays
    # below 1e-4 (tests/test_learning.py; measured 0 to ~2e-7), while a contract mismatch is far
    # above (actor sigma_max 0.5 vs learner 0.8 on toy: 0.35). 1e-3 leaves headroom for float32 on
    # other hardware and kernels; reduced precision (bf16) needs about 1e-2.
    ratio_tolerance: float = 1e-3
    # Gradient accumulation inside each minibatch: memory follows this size, the step does not
    # change. 0 = off (one forward/backward per minibatch).
    micro_batch_size: int = 0
    # The learner re-scores the behaviour log-probs with its own numerics before each update.
    # "auto": on when actor and learner numerics can differ (dtype != float32 or a non-CPU device).
    recompute_logprobs: Literal["auto"] | bool = "auto"
    # Bound on max |rollout log-prob - learner log-prob| per transition (0 = unchecked). Catches
    # actor/learner contract bugs that recompute would otherwise hide; exceeding it exits 5.
    logprob_tolerance: float = 1.0
    # False: the VLM is frozen (no gradients, not optimised, not pushed); the action head trains.
    train_vlm: bool = True
    # PPO early stop: end the update when a minibatch's approx_kl exceeds 1.5 * target_kl (SB3).
    # 0 = off.
    target_kl: float = 0.0
    # Linear learning-rate warm-up over the first N updates (all groups). 0 = off.
    lr_warmup_updates: int = 0
    # action_drift telemetry (pirl_core/recipe/drift.py): the deterministic action's move on this
    # many fixed probe observations (evenly spaced over the first update's batch), against the update's
    # start and the run's start, logged every update. 0 = off.
    drift_probe_states: int = 16
    # PPO: the first N updates (learner update count, so exact across resume) train the critic
    # only; the policy and noise head do not step (DPPO/ReinFlow: 2). 0 = off.
    critic_warmup_updates: int = 0
    # SFT co-training (pirl_core/sft/cotrain.py): every minibatch adds sft_loss_weight x LeRobot's
    # X-VLA SFT loss on sft_batch_size frames of the demonstration LeRobotDataset at sft_dataset
    # (what `python -m pirl_core.demos` writes). RLinf: 0.1 (0.2 in a co-training config). 0 = off.
    sft_loss_weight: float = 0.0
    sft_dataset: str = ""
    sft_batch_size: int = 16
    # Stop an update's epochs once the probe actions moved more than this many mm (xyz, against
    # the update's start; checked after each minibatch step). 0 = off.
    max_action_drift_mm: float = 0.0


SECRET = "secret"  # dataclass field metadata key: the field holds a credential


def secret_field(default: str = "") -> Any:
    """A config field whose value is a credential: the one place a secret is marked. Saved
    configs, telemetry, W&B, echoed command lines and error messages redact it (pirl_core/redact.py)."""
    return field(default=default, metadata={SECRET: True})


@dataclass
class LearnerConfig:
    host: str = "127.0.0.1"
    port: int = 50151
    updates: int = 2
    episodes_per_update: int = 2
    # 0 = strictly on-policy: batches produced by an older policy version are dropped.
    max_staleness: int = 0
    # An expected actor silent this long (seconds) for the current version stops the run (exit 5).
    actor_timeout_s: float = 600.0
    # Shared secret every RPC must carry; required when host is not loopback. The file form (which
    # wins when both are set) keeps the secret out of command lines. Marked secret (secret_field):
    # pirl_core/redact.py keeps its value out of everything a run writes or prints.
    auth_token: str = secret_field()
    auth_token_file: str = ""
    # Which run an actor belongs to (the handshake refuses an actor of another run). Empty: derived
    # from the resolved output_dir (pirl_core/runid.py), so learner and actors started with the same
    # --output_dir agree without typing anything; set it on both sides when their paths differ.
    run_id: str = ""
    # TLS: server certificate and key (PEM); actors trust tls_ca (default: tls_cert itself).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # Largest rollout payload the learner accepts (checked while it streams in).
    max_payload_mb: float = 1024.0
    # Learner processes (ranks): >1 makes launch/console start it under torchrun (pirl_core.distributed).
    nproc: int = 1
    # How ranks share gradients and optimizer state under torchrun (pirl_core.distributed): "ddp" full
    # replicas; "fsdp" shards parameters, gradients and AdamW state (FSDP2), gathered for pushes/checkpoints.
    strategy: Literal["ddp", "fsdp"] = "ddp"
    collective_timeout_s: float = 300.0  # a rank waiting this long for a peer in an update stops (exit 7)


@dataclass
class ActorConfig:
    n_actors: int = 1
    connect_timeout_s: float = 300.0
    # While collecting, report progress (episodes done/planned, env steps, ETA) at most every N
    # seconds of wall time: a telemetry event for the console and a heartbeat for the learner
    # (pirl_core/progress.py). Keep it well below learner.actor_timeout_s.
    progress_every_s: float = 3.0


@dataclass
class CheckpointConfig:
    every: int = 1
    # 0 keeps everything; otherwise the newest N (never the one `last` points to).
    keep_last: int = 0


@dataclass
class TelemetryConfig:
    log_every: int = 1
    # Logging backends, all fed from the JSONL records (pirl_core/sinks). W&B follows LeRobot's
    # conventions; "offline" writes <output_dir>/wandb for a later `wandb sync`.
    wandb: Literal["off", "offline", "online"] = "off"
    wandb_project: str = "pirl"
    wandb_entity: str = ""  # empty: the account's default entity
    wandb_run_name: str = ""  # empty: <env.type>_<policy.type>_<output dir name>
    wandb_tags: list[str] = field(default_factory=list)
    tensorboard: bool = False  # event files under <output_dir>/tensorboard/<source>/


@dataclass
class EvalConfig:
    # Periodic evaluation during training (pirl_core/eval): every N updates actor 0 runs
    # deterministic (ODE) episodes on held-out init states before collecting that version.
    # 0 = off. Must be a multiple of checkpoint.every: `checkpoints/best` can only point at a
    # checkpoint that exists.
    every: int = 0
    # Held-out init states per task: the last N of each task's fixed init states (training then
    # cycles over the others; pirl_core/eval/plan.py). Unused when val_init_states is set.
    episodes_per_task: int = 5
    # The honest split (all three disjoint, per-task indices like "30-39" or "30-34,38"):
    # validation states serve periodic evaluation and checkpoints/best (what a run selects on);
    # test states serve only the final claim (benchmarks/libero_lift.py), which nothing selects on.
    # "" = not split (periodic evaluation then uses the last episodes_per_task states).
    val_init_states: str = ""
    test_init_states: str = ""


@dataclass
class RunConfig:
    profile: str = DEFAULT_PROFILE
    seed: int = 0
    output_dir: str = "outputs/smoke"
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
            raise ConfigError(
                name, spec, "per-task init-state indices like '0-29' or '30-34,38' (ranges inclusive)"
            )
        states.update(range(a, b + 1))
    return sorted(states)


def split_states(cfg: RunConfig) -> dict[str, list[int]]:
    """The three split fields, parsed: {field name: per-task indices} (empty when unset)."""
    specs = (cfg.env.train_init_states, cfg.eval.val_init_states, cfg.eval.test_init_states)
    return {name: parse_init_states(spec, name) for name, spec in zip(SPLIT_FIELDS, specs, strict=True)}


def validate(cfg: RunConfig) -> RunConfig:
    """Cross-field checks. The single place where a config is judged; raises ConfigError."""

    def require(ok: bool, name: str, value: object, expected: str) -> None:
        if not ok:
            raise ConfigError(name, value, expected)

    suites = SUITES_BY_ENV[cfg.env.type]
    require(cfg.env.suite in suites, "env.suite", cfg.env.suite, f"one of {sorted(suites)}")
    n_tasks = suites[cfg.env.suite]
    require(len(cfg.env.task_ids) > 0, "env.task_ids", cfg.env.task_ids, "a non-empty list")
    for tid in cfg.env.task_ids:
        require(0 <= tid < n_tasks, "env.task_ids", cfg.env.task_ids, f"task ids in [0, {n_tasks - 1}]")
    require(cfg.env.episode_length > 0, "env.episode_length", cfg.env.episode_length, "> 0")
    require(cfg.env.camera_size >= 16, "env.camera_size", cfg.env.camera_size, ">= 16")
    require(cfg.env.n_envs >= 1, "env.n_envs", cfg.env.n_envs, ">= 1")
    require(
        cfg.env.workers >= 0,
        "env.workers",
        cfg.env.workers,
        ">= 0 (0 = the cores the actor may use, 1 = in-process)",
    )

    require(cfg.policy.chunk_size >= 1, "policy.chunk_size", cfg.policy.chunk_size, ">= 1")
    require(
        1 <= cfg.policy.action_steps <= cfg.policy.chunk_size,
        "policy.action_steps",
        cfg.policy.action_steps,
        f"in [1, policy.chunk_size={cfg.policy.chunk_size}]",
    )
    require(
        cfg.policy.size in CONFIG_SIZES or bool(cfg.policy.pretrained_path),
        "policy.pretrained_path",
        cfg.policy.pretrained_path,
        "a repo id or local directory when policy.size = 'pretrained'",
    )

    r = cfg.recipe
    require(r.denoise_steps >= 1, "recipe.denoise_steps", r.denoise_steps, ">= 1")
    # Actions are normalised to about [-1, 1]: a noise std beyond MAX_NOISE_STD only drowns them.
    require(
        r.sigma_max <= MAX_NOISE_STD, "recipe.sigma_max", r.sigma_max, f"in [sigma_min, {MAX_NOISE_STD:g}]"
    )
    require(
        0 < r.sigma_min <= r.sigma_max, "recipe.sigma_min", r.sigma_min, f"in (0, sigma_max={r.sigma_max}]"
    )
    require(
        0 < r.sde_noise_level <= MAX_NOISE_STD,
        "recipe.sde_noise_level",
        r.sde_noise_level,
        f"in (0, {MAX_NOISE_STD:g}]",
    )
    require(0 < r.clip < 1, "recipe.clip", r.clip, "in (0, 1)")
    require(
        r.ratio_mode == "chunk" or cfg.learner.max_staleness == 0,
        "recipe.ratio_mode",
        r.ratio_mode,
        f"'chunk' when learner.max_staleness = {cfg.learner.max_staleness} > 0 (element ratios "
        "re-score the behaviour log-probs on the learner, which is exact only on-policy)",
    )
    if r.clip_per_denoise_step:
        require(
            r.method == "flow_sde",
            "recipe.clip_per_denoise_step",
            r.clip_per_denoise_step,
            "[] unless recipe.method = 'flow_sde' (only a Flow-SDE transition has one denoising step)",
        )
        require(
            len(r.clip_per_denoise_step) == r.denoise_steps,
            "recipe.clip_per_denoise_step",
            r.clip_per_denoise_step,
            f"one clip per denoising step: a list of recipe.denoise_steps = {r.denoise_steps} numbers",
        )
        require(
            all(0 < c < 1 for c in r.clip_per_denoise_step),
            "recipe.clip_per_denoise_step",
            r.clip_per_denoise_step,
            "clips in (0, 1)",
        )
    require(r.value_clip > 0, "recipe.value_clip", r.value_clip, "> 0")
    require(0 <= r.gamma <= 1, "recipe.gamma", r.gamma, "in [0, 1]")
    require(0 <= r.lam <= 1, "recipe.lam", r.lam, "in [0, 1]")
    require(r.update_epochs >= 1, "recipe.update_epochs", r.update_epochs, ">= 1")
    require(r.minibatches >= 1, "recipe.minibatches", r.minibatches, ">= 1")
    require(r.grad_clip > 0, "recipe.grad_clip", r.grad_clip, "> 0")
    for name in ("lr", "value_lr", "noise_lr"):
        # AdamW moves each parameter by about lr per step: beyond 1 no setting is meaningful.
        require(0 <= getattr(r, name) <= 1, f"recipe.{name}", getattr(r, name), "in [0, 1]")
    require(r.entropy_coef >= 0, "recipe.entropy_coef", r.entropy_coef, ">= 0 (an entropy bonus)")
    require(r.ratio_tolerance > 0, "recipe.ratio_tolerance", r.ratio_tolerance, "> 0")
    require(r.grpo_group_size >= 2, "recipe.grpo_group_size", r.grpo_group_size, ">= 2")
    require(r.micro_batch_size >= 0, "recipe.micro_batch_size", r.micro_batch_size, ">= 0 (0 = off)")
    require(
        math.isfinite(r.logprob_tolerance) and r.logprob_tolerance >= 0,
        "recipe.logprob_tolerance",
        r.logprob_tolerance,
        "a finite number >= 0 (0 = unchecked)",
    )
    require(
        math.isfinite(r.target_kl) and r.target_kl >= 0, "recipe.target_kl", r.target_kl, ">= 0 (0 = off)"
    )
    lo_hi = r.grpo_filter_range
    require(
        len(lo_hi) == 2 and 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0,
        "recipe.grpo_filter_range",
        lo_hi,
        "[low, high] with 0 <= low <= high <= 1 (mean group success kept)",
    )
    require(
        r.critic_warmup_updates >= 0,
        "recipe.critic_warmup_updates",
        r.critic_warmup_updates,
        ">= 0 (0 = off)",
    )
    require(
        r.critic_warmup_updates == 0 or r.algorithm == "ppo",
        "recipe.critic_warmup_updates",
        r.critic_warmup_updates,
        "0 with recipe.algorithm = 'grpo' (GRPO has no critic to warm up)",
    )
    require(r.sft_loss_weight >= 0, "recipe.sft_loss_weight", r.sft_loss_weight, ">= 0 (0 = off)")
    require(r.sft_batch_size >= 1, "recipe.sft_batch_size", r.sft_batch_size, ">= 1")
    if r.sft_loss_weight > 0:
        require(
            cfg.policy.type == "xvla",
            "recipe.sft_loss_weight",
            r.sft_loss_weight,
            "0 for policy.type = 'mlp' (the co-training loss is LeRobot's X-VLA SFT loss)",
        )
        require(
            (Path(r.sft_dataset) / "meta" / "info.json").is_file(),
            "recipe.sft_dataset",
            r.sft_dataset,
            "a LeRobot demonstration dataset directory holding meta/info.json (python -m pirl_core.demos) "
            "when recipe.sft_loss_weight > 0",
        )
        require(
            cfg.learner.nproc == 1,
            "recipe.sft_loss_weight",
            r.sft_loss_weight,
            f"0 with learner.nproc = {cfg.learner.nproc} (co-training runs in one learner process)",
        )
    require(r.drift_probe_states >= 0, "recipe.drift_probe_states", r.drift_probe_states, ">= 0 (0 = off)")
    require(r.max_action_drift_mm >= 0, "recipe.max_action_drift_mm", r.max_action_drift_mm, ">= 0 (0 = off)")
    if r.max_action_drift_mm > 0:
        require(
            r.drift_probe_states > 0,
            "recipe.drift_probe_states",
            r.drift_probe_states,
            "> 0 when recipe.max_action_drift_mm is set (the bound is measured on the probe states)",
        )
        require(
            cfg.learner.nproc == 1,
            "recipe.max_action_drift_mm",
            r.max_action_drift_mm,
            f"0 with learner.nproc = {cfg.learner.nproc} (drift is measured in one learner process)",
        )
    require(r.lr_warmup_updates >= 0, "recipe.lr_warmup_updates", r.lr_warmup_updates, ">= 0 (0 = off)")
    require(
        r.train_vlm or cfg.policy.type == "xvla",
        "recipe.train_vlm",
        r.train_vlm,
        "true for policy.type = 'mlp' (it has no VLM to freeze)",
    )

    # 0: the learner binds any free port and reports it in its "ready" telemetry event (tests)
    require(0 <= cfg.learner.port <= 65535, "learner.port", cfg.learner.port, "in [0, 65535]")
    require(cfg.learner.updates >= 1, "learner.updates", cfg.learner.updates, ">= 1")
    require(
        cfg.learner.episodes_per_update >= 1,
        "learner.episodes_per_update",
        cfg.learner.episodes_per_update,
        ">= 1",
    )
    if r.algorithm == "grpo":
        # Each actor runs whole groups of its own initial states (runtime.episode_plan); any
        # remainder would leave the learner waiting for episodes no actor plans to run.
        whole = r.grpo_group_size * cfg.actor.n_actors
        require(
            cfg.learner.episodes_per_update % whole == 0,
            "learner.episodes_per_update",
            cfg.learner.episodes_per_update,
            f"a multiple of recipe.grpo_group_size * actor.n_actors = {r.grpo_group_size} * "
            f"{cfg.actor.n_actors} = {whole} (GRPO: every actor runs whole groups)",
        )
    require(cfg.learner.max_staleness >= 0, "learner.max_staleness", cfg.learner.max_staleness, ">= 0")
    _validate_transport(cfg.learner)
    require(cfg.learner.nproc >= 1, "learner.nproc", cfg.learner.nproc, ">= 1 (learner processes)")
    require(
        math.isfinite(cfg.learner.collective_timeout_s) and cfg.learner.collective_timeout_s > 0,
        "learner.collective_timeout_s",
        cfg.learner.collective_timeout_s,
        "a finite number of seconds > 0",
    )
    require(cfg.actor.n_actors >= 1, "actor.n_actors", cfg.actor.n_actors, ">= 1")
    require(cfg.actor.connect_timeout_s > 0, "actor.connect_timeout_s", cfg.actor.connect_timeout_s, "> 0")
    require(
        math.isfinite(cfg.actor.progress_every_s) and cfg.actor.progress_every_s > 0,
        "actor.progress_every_s",
        cfg.actor.progress_every_s,
        "a finite number of seconds > 0 (well below learner.actor_timeout_s)",
    )
    require(cfg.checkpoint.every >= 1, "checkpoint.every", cfg.checkpoint.every, ">= 1")
    require(cfg.checkpoint.keep_last >= 0, "checkpoint.keep_last", cfg.checkpoint.keep_last, ">= 0")
    require(cfg.telemetry.log_every >= 1, "telemetry.log_every", cfg.telemetry.log_every, ">= 1")
    t = cfg.telemetry
    require(
        t.wandb == "off" or bool(t.wandb_project.strip()),
        "telemetry.wandb_project",
        t.wandb_project,
        "a non-empty W&B project name when telemetry.wandb is on",
    )
    for tag in t.wandb_tags:  # W&B rejects tags longer than 64 characters
        require(0 < len(tag) <= 64, "telemetry.wandb_tags", t.wandb_tags, "tags of 1 to 64 characters")
    e = cfg.eval
    require(e.every >= 0, "eval.every", e.every, ">= 0 (0 = off)")
    require(e.episodes_per_task >= 1, "eval.episodes_per_task", e.episodes_per_task, ">= 1")
    require(
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
            require(
                not common, a, specs[a], f"init states disjoint from {b}={specs[b]!r} (both hold {common})"
            )
    if any(split.values()) and e.every > 0:
        require(
            bool(split["eval.val_init_states"]),
            "eval.val_init_states",
            cfg.eval.val_init_states,
            "validation states (e.g. '30-39') when the init states are split and eval.every > 0: periodic "
            "evaluation and checkpoints/best select on them, never on train or test states",
        )
    require(bool(cfg.output_dir), "output_dir", cfg.output_dir, "a non-empty path")
    taken = Path(cfg.output_dir)
    require(
        not (taken.exists() and not taken.is_dir()),
        "output_dir",
        cfg.output_dir,
        "a directory (or a path that does not exist yet); it names an existing file",
    )
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
            raise ConfigError(f"learner.{name}", value, "a finite number > 0")
    if lc.auth_token_file and not Path(lc.auth_token_file).is_file():
        raise ConfigError("learner.auth_token_file", lc.auth_token_file, "a readable file holding the token")
    if not is_loopback(lc.host) and not (lc.auth_token or lc.auth_token_file):
        raise ConfigError(
            "learner.auth_token",
            lc.auth_token,
            f"a shared secret because learner.host={lc.host!r} is not loopback",
            hint="pass --learner.auth_token_file=PATH (or --learner.auth_token=SECRET) to the learner "
            "and every actor, or bind --learner.host=127.0.0.1",
        )
    if lc.tls_key and not lc.tls_cert:
        raise ConfigError("learner.tls_cert", "", "the certificate that goes with learner.tls_key")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        path = getattr(lc, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"learner.{name}", path, "an existing PEM file")


# --------------------------------------------------------------------------- loading


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.toml"))


def resolve_profile_path(name_or_path: str, profiles_dir: Path = PROFILES_DIR) -> Path:
    """A profile is a name under profiles/ or a path to a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError("--profile", name_or_path, "an existing .toml file", hint="check the path")
    path = profiles_dir / f"{name_or_path}.toml"
    if path.is_file():
        return path
    raise ConfigError(
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
        raise ConfigError("--profile", str(path), "valid TOML", hint=str(exc)) from exc
    cfg = _build(RunConfig, data, prefix="")
    cfg.profile = path.stem if path.parent.resolve() == profiles_dir.resolve() else str(path)
    items = overrides.items() if isinstance(overrides, dict) else [parse_override(o) for o in overrides or []]
    for key, value in items:
        apply_override(cfg, key, value)
    return validate(cfg)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved with ``to_dict`` (e.g. train_config.json); strict like profiles.
    A redacted secret comes back unset: the saved file never holds it (pirl_core/redact.py)."""
    from pirl_core.redact import unredact_config

    data = unredact_config(data)
    profile = data.pop("profile", DEFAULT_PROFILE)
    cfg = _build(RunConfig, data, prefix="")
    cfg.profile = profile
    return validate(cfg)


def parse_override(text: str) -> tuple[str, Any]:
    """``env.suite=libero_spatial`` -> ("env.suite", "libero_spatial"); values parse as TOML."""
    text = text.removeprefix("--")
    if "=" not in text:
        raise ConfigError("override", text, "KEY=VALUE, e.g. --env.suite=libero_spatial")
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
            raise ConfigError(
                dotted, value, f"a known key; valid sections: {sorted(_field_types(RunConfig))}"
            )
        target = sub
    leaf = parts[-1]
    types_ = _field_types(type(target))
    if leaf not in types_:
        section = ".".join(parts[:-1])
        raise ConfigError(dotted, value, f"a known key in [{section or 'top level'}]: {sorted(types_)}")
    setattr(target, leaf, _coerce(types_[leaf], value, dotted))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix or "profile", data, "a table")
    types_ = _field_types(cls)
    for key in data:
        if key not in types_:
            name = f"{prefix}{key}"
            raise ConfigError(
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
            raise ConfigError(name, value, f"one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _coerce(option, value, name)
            except ConfigError:
                continue
        raise ConfigError(name, value, f"a value of type {hint}")
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(name, value, f"a list of {item.__name__}")
        return [_coerce(item, v, name) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, value, "a number")
        try:  # TOML and the command line both accept nan, inf and integers beyond any float
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(name, value, "a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(name, value, "a string")
        return value
    if hint is type(None):
        if value is not None:
            raise ConfigError(name, value, "nothing")
        return None
    raise TypeError(f"unsupported config field type {hint!r} for {name}")  # programming error
