"""``UpdateStats``: every metric one PPO/GRPO update reports, each name declared once.

The field names are the telemetry keys (the console, the report and ``learner.jsonl`` read them;
field order is the key order of a record). A field's metadata says where its value comes from
during the update, so adding a metric is adding a field here:

* ``loss_term``: the ``ppo_loss`` output of the same name (:class:`pirl_core.recipe.ppo.LossOutput`),
  a mean over the applied minibatches of all epochs;
* ``group``: the gradient norm (before clipping) of that parameter group, averaged the same way;
* ``mean``: summed per applied minibatch and reported as the mean over them (the two above and
  ``sft_loss``);
* everything else is set once by the trainer (batch statistics, checks, early-stop flags, timing).

Optional metrics are ``None`` until they exist and are then left out of the record: ``sft_loss``
(``recipe.sft_loss_weight`` > 0 and a minibatch applied), the ``action_drift*`` keys and
``drift_s`` (``recipe.drift_probe_states`` > 0; key names in :mod:`pirl_core.recipe.drift`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields


def _loss_term() -> float:
    return field(default=0.0, metadata={"loss_term": True, "mean": True})


def _grad_norm(group: str) -> float:
    return field(default=0.0, metadata={"group": group, "mean": True})


@dataclass
class UpdateStats:
    """One update's metrics (conventions: :mod:`pirl_core.recipe.trainer`'s docstring)."""

    samples: float = 0.0
    kept_frac: float = 0.0
    adv_mean: float = 0.0
    adv_std: float = 0.0
    return_mean: float = 0.0
    return_std: float = 0.0
    explained_variance: float = 0.0
    lr_policy: float = 0.0
    lr_value: float = 0.0
    lr_noise: float = 0.0
    ratio_check: float = 0.0
    logprob_mismatch_mean: float = 0.0
    logprob_mismatch_max: float = 0.0
    logprob_recomputed: float = 0.0
    kl_stopped: float = 0.0
    critic_warmup: float = 0.0
    drift_stopped: float = 0.0
    early_stop_epoch: float = -1.0
    minibatch_steps: float = 0.0
    policy_loss: float = _loss_term()
    value_loss: float = _loss_term()
    entropy: float = _loss_term()
    approx_kl: float = _loss_term()
    clip_frac: float = _loss_term()
    grad_norm: float = _grad_norm("policy")
    grad_norm_value: float = _grad_norm("value")
    grad_norm_noise: float = _grad_norm("noise")
    sft_loss: float | None = field(default=None, metadata={"mean": True})  # the co-training term
    drift: dict[str, float] | None = None  # pirl_core.recipe.drift's action_drift* metrics
    drift_s: float | None = None
    skipped: float = 0.0
    update_s: float = 0.0
    samples_per_s: float = 0.0

    def add_step(self, losses: Mapping[str, float], grad_norms: Mapping[str, float]) -> None:
        """One applied minibatch: its (reduced) loss terms and its groups' gradient norms."""
        for f in fields(self):
            if f.metadata.get("loss_term"):
                setattr(self, f.name, getattr(self, f.name) + losses[f.name])
            elif "group" in f.metadata:
                setattr(self, f.name, getattr(self, f.name) + grad_norms.get(f.metadata["group"], 0.0))
        self.minibatch_steps += 1

    def add_sft(self, loss: float) -> None:
        self.sft_loss = (self.sft_loss or 0.0) + loss

    def finish(self, elapsed: float) -> None:
        """Timing; a skipped update (nothing kept) reports 0 samples per second."""
        self.update_s = elapsed
        self.samples_per_s = 0.0 if self.skipped else self.samples / elapsed

    def metrics(self) -> dict[str, float]:
        """The telemetry record: per-minibatch sums turned into means, optional metrics only when
        present, ``drift`` flattened into its own keys."""
        steps = max(self.minibatch_steps, 1)
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "drift":
                out.update(value)
            elif f.metadata.get("mean"):
                out[f.name] = value / steps
            else:
                out[f.name] = value
        return out


LOSS_TERMS: tuple[str, ...] = tuple(f.name for f in fields(UpdateStats) if f.metadata.get("loss_term"))
"""The ``ppo_loss`` scalars the update averages (``LossOutput`` attributes of these names)."""
