"""PolicyTrainer: one PPO or GRPO update from an on-policy :class:`RolloutBatch`.

Advantages (GAE or group-normalised returns) -> optional normalisation -> ``update_epochs``
passes over shuffled minibatches -> per-group gradient clipping -> one AdamW per parameter group
(policy / value / noise, each with its own learning rate). Returns the per-update metrics the
learner logs, including ``ratio_check`` = max |ratio - 1| on the first minibatch of the first
epoch: before any step the parameters equal the rollout's, so anything above ~1e-4 is a bug.
Above ``recipe.ratio_tolerance`` the update raises :class:`RatioCheckError` before its first
step, and a NaN/inf loss, gradient norm or parameter raises :class:`DivergedError` (see
``numerics``): a run stops rather than train off-policy or on garbage.

Metric conventions: ``return_mean``/``return_std`` are the critic's targets (GAE returns) under
PPO and the undiscounted episode returns under GRPO; ``grad_norm`` is the policy group's norm
before clipping (``grad_norm_value`` / ``grad_norm_noise`` for the heads); ``samples_per_s`` is
batch transitions per second of update; groups that do not exist report lr 0.0; losses and KL
are means over all minibatches of all epochs.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from pirl_core.config import RecipeConfig
from pirl_core.errors import RatioCheckError
from pirl_core.recipe.actor_critic import ActorCritic
from pirl_core.recipe.advantages import episode_returns, explained_variance, gae, grpo_advantages
from pirl_core.recipe.numerics import require_finite_tensors, require_finite_value
from pirl_core.recipe.ppo import ppo_loss
from pirl_core.rollout import RolloutBatch

ADAM_BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.01
"""AdamW settings of the reference LIBERO configs."""
METRIC_KEYS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "grad_norm",
    "grad_norm_value",
    "grad_norm_noise",
)


class PolicyTrainer:
    """Owns the optimisers and the update RNG of one :class:`ActorCritic`."""

    def __init__(self, actor_critic: ActorCritic, recipe: RecipeConfig, seed: int = 0) -> None:
        self.actor_critic = actor_critic
        self.recipe = recipe
        # The only source of update randomness (minibatch order); checkpoints save its state.
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)
        lrs = {"policy": recipe.lr, "value": recipe.value_lr, "noise": recipe.noise_lr}
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            name: torch.optim.AdamW(params, lr=lrs[name], betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY)
            for name, params in actor_critic.param_groups().items()
            if params
        }

    @property
    def uses_critic(self) -> bool:
        return self.recipe.algorithm == "ppo" and self.actor_critic.value_head is not None

    def advantages(self, batch: RolloutBatch) -> tuple[Tensor, Tensor, Tensor]:
        """(advantages, value targets, keep mask), each (N,)."""
        r = self.recipe
        if r.algorithm == "ppo":
            adv, returns = gae(batch.reward, batch.value, batch.done, batch.bootstrap_value, r.gamma, r.lam)
            keep = torch.ones_like(adv, dtype=torch.bool)
        else:
            adv, keep = grpo_advantages(
                batch.reward, batch.episode_id, batch.group_id, batch.success, r.grpo_filter
            )
            returns = torch.zeros_like(adv)
        # GRPO advantages are already normalised within groups; re-normalising the pool would
        # only rescale them, so the flag applies to PPO.
        if r.normalize_advantages and r.algorithm == "ppo" and int(keep.sum()) > 1:
            kept = adv[keep]
            adv = (adv - kept.mean()) / (kept.std() + 1e-8)
        return adv, returns, keep

    def update(self, batch: RolloutBatch, *, check_ratio: bool = True) -> dict[str, float]:
        """One update. ``check_ratio`` enforces ``recipe.ratio_tolerance``; turn it off only for
        batches that are off-policy by design (``learner.max_staleness`` > 0, re-used batches)."""
        started = time.perf_counter()
        r = self.recipe
        ac = self.actor_critic
        device = ac.device
        adv, returns, keep = self.advantages(batch)
        _, ep_ret = episode_returns(batch.reward, batch.episode_id)
        stat_returns = returns[keep] if self.uses_critic else ep_ret.float()
        metrics: dict[str, float] = {
            "samples": float(len(batch)),
            "kept_frac": float(keep.float().mean()) if len(batch) else 0.0,
            "adv_mean": float(adv[keep].mean()) if bool(keep.any()) else 0.0,
            "adv_std": float(adv[keep].std()) if int(keep.sum()) > 1 else 0.0,
            "return_mean": float(stat_returns.mean()) if stat_returns.numel() else 0.0,
            "return_std": float(stat_returns.std()) if stat_returns.numel() > 1 else 0.0,
            "explained_variance": (
                explained_variance(batch.value[keep], returns[keep]) if self.uses_critic else 0.0
            ),
            "lr_policy": self._lr("policy"),
            "lr_value": self._lr("value"),
            "lr_noise": self._lr("noise"),
            "ratio_check": 0.0,
        }
        sums = dict.fromkeys(METRIC_KEYS, 0.0)
        rows = torch.nonzero(keep).squeeze(-1)
        n = int(rows.numel())
        steps = 0
        if n == 0:  # e.g. GRPO with every group filtered: nothing to learn from this batch
            metrics.update(sums)
            metrics.update(skipped=1.0, update_s=time.perf_counter() - started, samples_per_s=0.0)
            return metrics

        mb_size = math.ceil(n / r.minibatches)
        ac.adapter.set_rl_mode()
        for epoch in range(r.update_epochs):
            order = rows[torch.randperm(n, generator=self.generator)]
            for start in range(0, n, mb_size):
                index = order[start : start + mb_size]
                mb = batch.select(index)
                obs = {k: v.to(device) for k, v in mb.obs.items()}
                new_logp, entropy, new_value = ac.evaluate(obs, mb.chain.to(device), mb.sde_step.to(device))
                out = ppo_loss(
                    new_logp=new_logp,
                    old_logp=mb.logp.to(device),
                    advantages=adv[index].to(device),
                    entropy=entropy,
                    clip=r.clip,
                    entropy_coef=r.entropy_coef,
                    new_value=new_value if self.uses_critic else None,
                    old_value=mb.value.to(device),
                    returns=returns[index].to(device),
                    value_clip=r.value_clip,
                )
                where = f"epoch {epoch + 1}, minibatch {start // mb_size + 1}"
                require_finite_value("the loss", float(out.loss.detach()), where)
                if epoch == 0 and start == 0:
                    metrics["ratio_check"] = float((out.ratio - 1.0).abs().max())
                    if check_ratio:
                        self._check_ratio(metrics["ratio_check"])
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                out.loss.backward()
                norms = self._clip_and_step(where)
                steps += 1
                sums["policy_loss"] += float(out.policy_loss.detach())
                sums["value_loss"] += float(out.value_loss.detach())
                sums["entropy"] += float(out.entropy.detach())
                sums["approx_kl"] += float(out.approx_kl)
                sums["clip_frac"] += float(out.clip_frac)
                sums["grad_norm"] += norms.get("policy", 0.0)
                sums["grad_norm_value"] += norms.get("value", 0.0)
                sums["grad_norm_noise"] += norms.get("noise", 0.0)
        metrics.update({k: v / steps for k, v in sums.items()})
        elapsed = time.perf_counter() - started
        metrics.update(skipped=0.0, update_s=elapsed, samples_per_s=len(batch) / elapsed)
        return metrics

    def _check_ratio(self, ratio_check: float) -> None:
        tolerance = self.recipe.ratio_tolerance
        if ratio_check <= tolerance:
            return
        raise RatioCheckError(
            f"ratio check failed: max |ratio - 1| on the first minibatch is {ratio_check:.3g}, "
            f"above recipe.ratio_tolerance={tolerance:g}; the learner scores the batch differently "
            "from how the actor sampled it, so this update would train off-policy and was not applied. "
            "Likely causes: actor and learner started with different settings or pirl versions, "
            "non-deterministic layers (dropout) active, or a different precision or device"
        )

    def _clip_and_step(self, where: str) -> dict[str, float]:
        """Clip each group's gradient separately, check every norm is finite, then step all.
        Per-group clipping keeps a large critic gradient early in training from shrinking the
        policy's step; checking all norms before any step keeps a NaN out of every group."""
        params = {
            name: [p for g in opt.param_groups for p in g["params"]] for name, opt in self.optimizers.items()
        }
        norms = {}
        for name, group in params.items():
            norms[name] = float(torch.nn.utils.clip_grad_norm_(group, self.recipe.grad_clip))
            require_finite_value(f"the {name} gradient norm", norms[name], where)
        for opt in self.optimizers.values():
            opt.step()
        names = {id(p): n for n, p in self.actor_critic.named_parameters()}
        named = (
            (names.get(id(p), f"{group}[{i}]"), p) for group, ps in params.items() for i, p in enumerate(ps)
        )
        require_finite_tensors("after the step, parameter", named, where)
        return norms

    def _lr(self, name: str) -> float:
        """Current lr of a group; 0.0 when the group does not exist (no critic / no noise head)."""
        opt = self.optimizers.get(name)
        return float(opt.param_groups[0]["lr"]) if opt is not None else 0.0
