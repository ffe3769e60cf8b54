"""PolicyTrainer: one PPO or GRPO update from an on-policy :class:`Batch`.

Advantages (GAE or group-normalised returns) -> optional normalisation -> optional per-episode
weights (``recipe.loss_aggregation = "episode"``: each episode counts once in the loss mean, not
each chunk, so long failed episodes do not outweigh short successes) -> ``update_epochs``
passes over shuffled minibatches -> per-group gradient clipping -> one AdamW per parameter group
(policy / value / noise, each with its own learning rate). Returns the per-update metrics the
learner logs, including ``ratio_check`` = max |ratio - 1| on the first minibatch of the first
epoch: before any step the parameters equal the rollout's, so anything above ~1e-4 is a bug.
Above ``recipe.ratio_tolerance`` the update raises :class:`RatioCheckError` before its first
step, and a NaN/inf loss, gradient norm or parameter raises :class:`DivergedError` (see
``numerics``): a run stops rather than train off-policy or on garbage.

Two checks, two guarantees (docs/design.md, "The two invariants and the other checks on every update"):

* ``ratio_check`` guarantees that the *update* is on-policy with respect to the behaviour
  log-probs it uses: the loss's old log-probs and its first forward pass agree. With
  ``recipe.recompute_logprobs`` on, the learner re-scores the behaviour log-probs itself, in the
  exact chunks the first minibatch evaluates, so the check is 0 by construction (it then guards
  the trainer's own bookkeeping: chunking, ordering, a forward that is not deterministic).
* ``logprob_mismatch_mean`` / ``_max`` = |rollout log-prob - learner log-prob| guarantees that the
  *actor sampled from the policy the learner scores*: same weights, observations, sampler and
  sigma bounds, up to the precision difference. Bounded by ``recipe.logprob_tolerance`` (exit 5);
  with recompute off it is measured on the first minibatch (the ratio check's own difference).

Memory: ``recipe.micro_batch_size`` splits each minibatch into micro-batches whose gradients add
up to the minibatch's (loss terms weighted by their share of rows). ``recipe.target_kl`` stops an
update early (SB3: a minibatch with approx_kl > 1.5 x target_kl is not applied);
``recipe.lr_warmup_updates`` scales every learning rate linearly over the first updates.

Lift options (README, "Lift options"): ``recipe.ratio_mode`` (chunk or element ratios; element
mode always re-scores the behaviour log-probs per element), ``clip_per_denoise_step`` (each
Flow-SDE transition's clip by its stochastic step, :meth:`clip_for`), ``advantage_mode``
(``success_only``: the filtered-BC control), ``critic_warmup_updates`` (only the value group
steps), ``sft_loss_weight`` (``self.sft``: a demonstration SFT loss added per applied minibatch),
and ``action_drift`` (``self.drift``, :mod:`pirl_core.recipe.drift`) measured every update, with
``max_action_drift_mm`` ending an update after the step that crosses it.

Metric conventions: ``return_mean``/``return_std`` are the critic's targets (GAE returns) under
PPO and the undiscounted episode returns under GRPO; ``grad_norm`` is the policy group's norm
before clipping (``grad_norm_value`` / ``grad_norm_noise`` for the heads); ``samples_per_s`` is
batch transitions per second of update; groups that do not exist report lr 0.0; losses and KL
are means over all minibatches of all epochs.

Distribution: the trainer is given its ``forward`` (``actor_critic.evaluate``, or the same
wrapped in DDP/FSDP) and a ``reducer`` (:mod:`pirl_core.recipe.reducer`: a no-op in one process,
collectives under ``torchrun``). Every process runs this same update on the same batch and
order; :meth:`_chunks` keeps the reducer's shard of each minibatch, losses are weighted by shares
of the *global* minibatch, and the reducer is where statistics meet before any process decides
on them. Metric names are declared once, in :class:`pirl_core.recipe.stats.UpdateStats`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from pirl_core.config import RecipeConfig
from pirl_core.errors import RatioCheckError
from pirl_core.recipe.actor_critic import ActorCritic
from pirl_core.recipe.advantages import (
    episode_returns,
    episode_weights,
    explained_variance,
    gae,
    grpo_advantages,
    success_advantages,
)
from pirl_core.recipe.drift import ActionDrift, ActionSpace
from pirl_core.recipe.numerics import require_finite_tensors, require_finite_value
from pirl_core.recipe.ppo import LossOutput, ppo_loss
from pirl_core.recipe.reducer import LocalReducer, Reducer
from pirl_core.recipe.stats import LOSS_TERMS, UpdateStats

if TYPE_CHECKING:
    from pirl_core.recipe.cotrain import SftCoTraining

ADAM_BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.01
"""AdamW settings of the reference LIBERO configs."""

Forward = Callable[[dict[str, Tensor], Tensor, Tensor], tuple[Tensor, Tensor, Tensor | None]]
"""``ActorCritic.evaluate``'s signature: (obs, chain, sde_step) -> (log-prob, entropy, value)."""


class Batch(Protocol):
    """What an update reads of a batch: :class:`pirl_core.rollout.RolloutBatch` (a layer above the
    recipe, so named here by its shape only). N chunk-level transitions, episode-contiguous."""

    obs: dict[str, Tensor]
    chain: Tensor
    sde_step: Tensor
    logp: Tensor
    value: Tensor
    reward: Tensor
    done: Tensor
    success: Tensor
    bootstrap_value: Tensor
    episode_id: Tensor
    group_id: Tensor

    def __len__(self) -> int: ...

    def select(self, index: Tensor) -> Batch: ...


class PolicyTrainer:
    """Owns the optimisers and the update RNG of one :class:`ActorCritic`.

    ``forward`` (default ``actor_critic.evaluate``) and ``reducer`` (default one process) are how
    the update reaches the model and the other processes; ``pirl_core.distributed.sharding``
    builds a trainer with DDP/FSDP ones. ``sft``: the SFT co-training term
    (:class:`pirl_core.recipe.cotrain.SftCoTraining`), None = off and no co-training code runs.
    ``drift``: measure ``action_drift`` (when ``recipe.drift_probe_states`` > 0); a trainer whose
    forwards go through a wrapper passes False, the probe's forwards would bypass it.
    ``optimizers``: the AdamWs to step (default: fresh ones over ``param_groups()``)."""

    def __init__(
        self,
        actor_critic: ActorCritic,
        recipe: RecipeConfig,
        seed: int = 0,
        action_space: ActionSpace = "plain",
        *,
        forward: Forward | None = None,
        reducer: Reducer | None = None,
        sft: SftCoTraining | None = None,
        drift: bool = True,
        optimizers: dict[str, torch.optim.Optimizer] | None = None,
    ) -> None:
        self.actor_critic = actor_critic
        self.recipe = recipe
        self.forward: Forward = forward if forward is not None else actor_critic.evaluate
        self.reducer: Reducer = reducer if reducer is not None else LocalReducer()
        # The only source of update randomness (minibatch order); checkpoints save its state.
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)
        self.base_lrs = {"policy": recipe.lr, "value": recipe.value_lr, "noise": recipe.noise_lr}
        self.updates_done = 0  # used when the caller passes no update index (tests, local loop)
        self.drift = (
            ActionDrift(recipe.drift_probe_states, action_space)
            if drift and recipe.drift_probe_states > 0
            else None
        )
        self.sft = sft
        self.optimizers = optimizers if optimizers is not None else self.build_optimizers()

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Fresh AdamWs over the current parameters (over FSDP's shards once the model is sharded)."""
        return {
            name: torch.optim.AdamW(
                params, lr=self.base_lrs[name], betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY
            )
            for name, params in self.actor_critic.param_groups().items()
            if params
        }

    @property
    def uses_critic(self) -> bool:
        return self.recipe.algorithm == "ppo" and self.actor_critic.value_head is not None

    # ------------------------------------------------------------------ update

    def update(
        self, batch: Batch, update_index: int | None = None, on_policy: bool = True
    ) -> dict[str, float]:
        """One PPO/GRPO update. ``update_index``: updates completed before this one (the learner
        passes its progress step; defaults to this trainer's own count). ``on_policy=False``
        (stale batches allowed, or a batch re-used): the rollout-vs-learner difference then
        includes genuine policy lag, so it is reported but not bounded, and the behaviour
        log-probs are kept as sampled (they are what corrects for the lag)."""
        started = time.perf_counter()
        update_index = self.updates_done if update_index is None else int(update_index)
        self._apply_lr_schedule(update_index)
        adv, returns, keep = self.advantages(batch)
        stats = self._batch_stats(batch, adv, returns, keep)
        rows = torch.nonzero(keep).squeeze(-1)
        if rows.numel() == 0:  # e.g. GRPO with every group filtered: nothing to learn from this batch
            stats.skipped = 1.0
        else:
            self._optimise(batch, rows, adv, returns, update_index, on_policy, stats)
        stats.finish(time.perf_counter() - started)
        self.updates_done = update_index + 1
        return stats.metrics()

    def _optimise(
        self,
        batch: Batch,
        rows: Tensor,
        adv: Tensor,
        returns: Tensor,
        update_index: int,
        on_policy: bool,
        stats: UpdateStats,
    ) -> None:
        """``update_epochs`` passes over shuffled minibatches of the kept rows: loss, checks, an
        optional SFT term, one clipped step per group; stops early on KL or action drift."""
        r = self.recipe
        mb_size = math.ceil(rows.numel() / r.minibatches)
        self.actor_critic.adapter.set_rl_mode()
        first_order = rows[torch.randperm(rows.numel(), generator=self.generator)]
        old_logp, recomputed = self._behaviour_logp(batch, first_order, mb_size, on_policy, stats)
        # Critic warm-up: the first updates step only the value head (the policy and noise
        # head keep their parameters bitwise; their gradients are computed and dropped, so the
        # DDP/FSDP reductions see the same graph as any update).
        warmup = self.uses_critic and update_index < r.critic_warmup_updates
        stats.critic_warmup = float(warmup)
        if self.drift is not None:
            self.drift.begin_update(self.actor_critic, batch.obs)
        for epoch, k, index in self._minibatches(rows, first_order, mb_size):
            where = f"epoch {epoch + 1}, minibatch {k + 1}"
            losses = self._accumulate_gradients(batch, index, old_logp, adv, returns, first=epoch == k == 0)
            require_finite_value("the loss", losses.pop("loss"), where)
            if epoch == k == 0:
                self._check_first_minibatch(losses, recomputed, on_policy, stats)
            if self._kl_exceeded(losses["approx_kl"]):
                stats.kl_stopped, stats.early_stop_epoch = 1.0, float(epoch)
                break
            if self.sft is not None:  # one demonstration batch per applied minibatch
                stats.add_sft(self._sft_backward(update_index, epoch * r.minibatches + k, where))
            stats.add_step(losses, self._clip_and_step(where, only=("value",) if warmup else None))
            if self._drift_exceeded(stats):
                stats.drift_stopped, stats.early_stop_epoch = 1.0, float(epoch)
                break
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)  # a stopped minibatch leaves gradients behind
        if self.drift is not None:
            drift_started = time.perf_counter()
            stats.drift = stats.drift if stats.drift is not None else self.drift.measure(self.actor_critic)
            stats.drift_s = time.perf_counter() - drift_started

    def _minibatches(
        self, rows: Tensor, first_order: Tensor, mb_size: int
    ) -> Iterator[tuple[int, int, Tensor]]:
        """(epoch, minibatch number, row indices): epoch 0 in ``first_order`` (the order the
        behaviour log-probs were re-scored in), each later epoch drawn from the update generator
        when it starts (an early stop draws no further order)."""
        for epoch in range(self.recipe.update_epochs):
            order = (
                first_order if epoch == 0 else rows[torch.randperm(rows.numel(), generator=self.generator)]
            )
            for start in range(0, rows.numel(), mb_size):
                yield epoch, start // mb_size, order[start : start + mb_size]

    def _batch_stats(self, batch: Batch, adv: Tensor, returns: Tensor, keep: Tensor) -> UpdateStats:
        """The batch's own statistics, known before any step, and the learning rates in force."""
        _, ep_ret = episode_returns(batch.reward, batch.episode_id)
        stat_returns = returns[keep] if self.uses_critic else ep_ret.float()
        return UpdateStats(
            samples=float(len(batch)),
            kept_frac=float(keep.float().mean()) if len(batch) else 0.0,
            adv_mean=float(adv[keep].mean()) if bool(keep.any()) else 0.0,
            adv_std=float(adv[keep].std()) if int(keep.sum()) > 1 else 0.0,
            return_mean=float(stat_returns.mean()) if stat_returns.numel() else 0.0,
            return_std=float(stat_returns.std()) if stat_returns.numel() > 1 else 0.0,
            explained_variance=(
                explained_variance(batch.value[keep], returns[keep]) if self.uses_critic else 0.0
            ),
            lr_policy=self._lr("policy"),
            lr_value=self._lr("value"),
            lr_noise=self._lr("noise"),
        )

    def advantages(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(advantages, value targets, keep mask), each (N,)."""
        r = self.recipe
        if r.algorithm == "ppo":
            adv, returns = gae(batch.reward, batch.value, batch.done, batch.bootstrap_value, r.gamma, r.lam)
            keep = torch.ones_like(adv, dtype=torch.bool)
        else:
            adv, keep = grpo_advantages(
                batch.reward,
                batch.episode_id,
                batch.group_id,
                batch.success,
                r.grpo_filter,
                (r.grpo_filter_range[0], r.grpo_filter_range[1]),
            )
            returns = torch.zeros_like(adv)
        if r.advantage_mode == "success_only":  # the filtered-BC control: every episode kept
            adv = success_advantages(batch.episode_id, batch.success)
            keep = torch.ones_like(adv, dtype=torch.bool)
        # GRPO advantages are already normalised within groups; re-normalising the pool would
        # only rescale them, so the flag applies to PPO (never to the 0/1 control advantages).
        elif r.normalize_advantages and r.algorithm == "ppo" and int(keep.sum()) > 1:
            kept = adv[keep]
            adv = (adv - kept.mean()) / (kept.std() + 1e-8)
        if r.loss_aggregation == "episode":  # after normalisation: it reweights, it does not shift
            adv = adv * episode_weights(batch.episode_id, keep)
        return adv, returns, keep

    # ------------------------------------------------------------------ precision contract

    @property
    def recompute_logprobs(self) -> bool:
        """Resolved ``recipe.recompute_logprobs``. "auto" turns it on wherever actor and learner
        numerics can differ: a compute dtype other than float32 (bf16 rounding depends on the batch
        shape) or a non-CPU device (CUDA kernels pick algorithms by batch size; measured fp32
        mismatch 1.2e-4 - 1.8e-4 on an H200, 2.8e-2 with TF32). CPU float32 keeps the rollout's
        log-probs (bitwise reproducible there), so smoke and toy runs are unchanged."""
        setting = self.recipe.recompute_logprobs
        if setting != "auto":
            return bool(setting)
        return self.actor_critic.adapter.compute_dtype is not None or self.actor_critic.device.type != "cpu"

    # ------------------------------------------------------------------ the two invariants

    def _behaviour_logp(
        self, batch: Batch, first_order: Tensor, mb_size: int, on_policy: bool, stats: UpdateStats
    ) -> tuple[Tensor, bool]:
        """The old log-probs of the loss, and whether they were re-scored. Element ratios need
        per-element behaviour log-probs, which a rollout does not store (it keeps the chunk
        log-prob): the learner re-scores them before its first step, which config validation
        allows only on-policy (learner.max_staleness = 0)."""
        if not ((self.recompute_logprobs and on_policy) or self.actor_critic.sampler.per_element):
            return batch.logp, False
        old_logp, delta = self._recompute_old_logp(batch, first_order, mb_size)
        self._record_mismatch(delta, on_policy, stats)
        stats.logprob_recomputed = 1.0
        return old_logp, True

    def _recompute_old_logp(self, batch: Batch, first_order: Tensor, mb_size: int) -> tuple[Tensor, Tensor]:
        """Behaviour log-probs re-scored with the learner's numerics, in the exact chunks the
        first epoch evaluates (so its first minibatch has ratio == 1 bitwise), and the
        rollout-vs-learner difference |delta| of the re-scored rows."""
        ac = self.actor_critic
        if ac.sampler.per_element:  # element ratios: (N, E), rows outside first_order unused
            n_elem = int(ac.adapter.sampled_mask().sum())
            old_logp = torch.zeros(len(batch), n_elem)
        else:
            old_logp = batch.logp.clone().float()
        minibatches = [
            first_order[start : start + mb_size] for start in range(0, first_order.numel(), mb_size)
        ]
        with torch.no_grad():
            for index in minibatches:
                # every chunk runs the forward (under FSDP a collective: padding chunks too)
                for chunk, weight in self._weighted_chunks(index):
                    _, logp, _, _, _ = self._evaluate(batch, chunk, sync=False)
                    if weight > 0:
                        old_logp[chunk] = logp.float().cpu()
        mine = torch.zeros_like(old_logp)  # each row was re-scored by exactly one process
        for index in minibatches:
            for chunk in self._chunks(index):
                mine[chunk] = old_logp[chunk]
        old_logp[first_order] = self.reducer.reduce_rows(mine)[first_order]
        rescored = ac.sampler.reduce_elements(old_logp[first_order])
        return old_logp, (rescored - batch.logp[first_order].float()).abs()

    def _check_first_minibatch(
        self, losses: dict[str, Any], recomputed: bool, on_policy: bool, stats: UpdateStats
    ) -> None:
        """Before the first step: the ratio check, and (log-probs not re-scored) the log-prob
        mismatch measured on this minibatch. Both bound only an on-policy update."""
        stats.ratio_check = losses.pop("ratio_dev_max")
        delta = losses.pop("logp_delta")
        if on_policy:
            self._check_ratio(stats.ratio_check)
        if not recomputed:
            self._record_mismatch(delta, on_policy, stats)

    def _record_mismatch(self, delta: Tensor, on_policy: bool, stats: UpdateStats) -> None:
        """|rollout log-prob - learner log-prob| as its metrics, bounded by
        ``recipe.logprob_tolerance`` (exit 5) when on-policy. With recompute on, ``ratio_check``
        is 0 by construction and this is what still catches an actor that sampled from other
        weights, other observations or another sampler; with recompute off it bounds the same
        difference on the first minibatch."""
        if delta.numel():
            stats.logprob_mismatch_mean, stats.logprob_mismatch_max = float(delta.mean()), float(delta.max())
        else:
            stats.logprob_mismatch_mean = stats.logprob_mismatch_max = 0.0
        tol = self.recipe.logprob_tolerance
        worst = stats.logprob_mismatch_max
        if on_policy and tol > 0 and not worst <= tol:
            raise RatioCheckError(
                f"rollout log-probs differ from the learner's by up to {worst:.4g} "
                f"(mean {stats.logprob_mismatch_mean:.4g}), above recipe.logprob_tolerance={tol:g}: "
                "the actor did not sample from the policy the learner scores. Likely causes: a stale or "
                "partial parameter push, learner and actor started with different overrides "
                "(policy.dtype, sigma bounds, reductions, denoise_steps), or observations altered on the wire"
            )

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

    # ------------------------------------------------------------------ minibatch loss

    def _chunks(self, index: Tensor) -> list[Tensor]:
        """A minibatch's rows split into micro-batches (one chunk when micro-batching is off).
        Recompute and update evaluate exactly these chunks, so shapes and numerics match. Only
        the reducer's shard of the minibatch (under torchrun: possibly empty)."""
        index = self.reducer.shard(index)
        if index.numel() == 0:
            return []
        size = self.recipe.micro_batch_size
        if size <= 0 or size >= index.numel():
            return [index]
        return list(index.split(size))

    def _weighted_chunks(self, index: Tensor) -> list[tuple[Tensor, float]]:
        """This process's chunks with their share of the global minibatch. A process with fewer
        chunks than :meth:`Reducer.forwards` asks for (an empty shard under DDP, a smaller one
        under FSDP, where every forward all-gathers) adds weight-0 chunks."""
        total = index.numel()
        chunks = [(c, c.numel() / total) for c in self._chunks(index)]
        missing = self.reducer.forwards(index, self.recipe.micro_batch_size) - len(chunks)
        return chunks + [(index[:1], 0.0)] * missing

    def _evaluate(self, batch: Batch, chunk: Tensor, sync: bool) -> tuple[Batch, Tensor, Tensor, Any, Tensor]:
        """One chunk through ``forward``: (its rows, log-prob, entropy, value, its SDE steps). Its
        backward reduces the accumulated gradients over processes only when ``sync``."""
        device = self.actor_critic.device
        mb = batch.select(chunk)
        obs = {k: v.to(device) for k, v in mb.obs.items()}
        chain, sde_step = mb.chain.to(device), mb.sde_step.to(device)
        with self.reducer.syncing(sync):
            new_logp, entropy, new_value = self.forward(obs, chain, sde_step)
        return mb, new_logp, entropy, new_value, sde_step

    def _accumulate_gradients(
        self,
        batch: Batch,
        index: Tensor,
        old_logp: Tensor,
        adv: Tensor,
        returns: Tensor,
        first: bool,
    ) -> dict[str, Any]:
        """Forward/backward of one minibatch as micro-batches, gradients summed in place; returns
        its reduced statistics (``loss`` and :data:`LOSS_TERMS`; on the ``first`` minibatch also
        ``ratio_dev_max`` and the log-prob differences ``logp_delta``).

        Every loss term is a mean over the minibatch, so micro-batch i's loss is weighted by
        n_i / n: the summed gradient equals the un-split minibatch's (advantages are normalised
        before splitting, over the whole batch). Statistics are weighted the same way; the
        reducer adds them (and takes the maximum ratio deviation) over processes, so the ratio
        check, the finiteness check and the target_kl stop decide identically everywhere."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
        ratio_dev_max = 0.0
        deltas = [torch.zeros(0)]
        chunks = self._weighted_chunks(index)  # an empty shard still joins the gradient reduction
        for i, (chunk, weight) in enumerate(chunks):
            mb, new_logp, entropy, new_value, sde_step = self._evaluate(batch, chunk, i == len(chunks) - 1)
            chunk_old = old_logp[chunk].to(self.actor_critic.device)
            out = self._loss(mb, chunk, chunk_old, adv, returns, new_logp, entropy, new_value, sde_step)
            (out.loss * (weight * self.reducer.grad_scale)).backward()
            for name in sums:
                sums[name] += weight * float(getattr(out, name).detach())
            if first and weight > 0:
                ratio_dev_max = max(ratio_dev_max, float((out.ratio - 1.0).abs().max()))
                reduce = self.actor_critic.sampler.reduce_elements
                deltas.append((reduce(new_logp.detach()) - reduce(chunk_old)).abs().float().cpu())
        if not first:
            return self.reducer.reduce(sums, {})
        stats: dict[str, Any] = self.reducer.reduce(sums, {"ratio_dev_max": ratio_dev_max})
        stats["logp_delta"] = self.reducer.gather_cat(torch.cat(deltas))
        return stats

    def _loss(
        self,
        mb: Batch,
        chunk: Tensor,
        chunk_old: Tensor,
        adv: Tensor,
        returns: Tensor,
        new_logp: Tensor,
        entropy: Tensor,
        new_value: Tensor | None,
        sde_step: Tensor,
    ) -> LossOutput:
        """The PPO/GRPO loss of one chunk (:func:`pirl_core.recipe.ppo.ppo_loss`)."""
        device = self.actor_critic.device
        return ppo_loss(
            new_logp=new_logp,
            old_logp=chunk_old,
            advantages=adv[chunk].to(device),
            entropy=entropy,
            clip=self.clip_for(sde_step),
            entropy_coef=self.recipe.entropy_coef,
            new_value=new_value if self.uses_critic else None,
            old_value=mb.value.to(device),
            returns=returns[chunk].to(device),
            value_clip=self.recipe.value_clip,
        )

    def clip_for(self, sde_step: Tensor) -> float | Tensor:
        """The PPO clip of each transition: ``recipe.clip``, or with
        ``recipe.clip_per_denoise_step`` (Flow-SDE) the clip of each transition's stochastic
        denoising step, a (B,) tensor."""
        per_step = self.recipe.clip_per_denoise_step
        if not per_step:
            return self.recipe.clip
        return torch.tensor(per_step, dtype=torch.float32, device=sde_step.device)[sde_step]

    def _sft_backward(self, update_index: int, step: int, where: str) -> float:
        """Add ``sft_loss_weight`` x the SFT loss's gradient to the minibatch's; returns the loss."""
        loss, _ = self.sft.loss(self.actor_critic.adapter, update_index, step)
        (self.recipe.sft_loss_weight * loss * self.reducer.grad_scale).backward()
        value = float(loss.detach())
        require_finite_value("the SFT co-training loss", value, where)
        return value

    # ------------------------------------------------------------------ step

    def _clip_and_step(self, where: str, only: tuple[str, ...] | None = None) -> dict[str, float]:
        """Clip each group's gradient separately, check every norm is finite, then step all
        (``only``: just these groups, e.g. the critic warm-up's value group).
        Per-group clipping keeps a large critic gradient early in training from shrinking the
        policy's step; checking all norms before any step keeps a NaN out of every group."""
        params = {
            name: [p for g in opt.param_groups for p in g["params"]] for name, opt in self.optimizers.items()
        }
        norms = {}
        for name, group in params.items():
            norms[name] = self.reducer.norm(torch.nn.utils.clip_grad_norm_(group, self.recipe.grad_clip))
            require_finite_value(f"the {name} gradient norm", norms[name], where)
        for name, opt in self.optimizers.items():
            if only is None or name in only:
                opt.step()
        names = {id(p): n for n, p in self.actor_critic.named_parameters()}
        named = (
            (names.get(id(p), f"{group}[{i}]"), p) for group, ps in params.items() for i, p in enumerate(ps)
        )
        require_finite_tensors("after the step, parameter", named, where)
        return norms

    # ------------------------------------------------------------------ early stops

    def _kl_exceeded(self, approx_kl: float) -> bool:
        """SB3's early stop: a minibatch whose approx_kl exceeds 1.5 x target_kl is not applied."""
        target = self.recipe.target_kl
        return target > 0 and approx_kl > 1.5 * target

    def _drift_exceeded(self, stats: UpdateStats) -> bool:
        """``recipe.max_action_drift_mm``: measured after the step (the step that crosses the
        bound is applied, the rest not); the measurement is kept as the update's drift."""
        if self.drift is None or self.recipe.max_action_drift_mm <= 0:
            return False
        stats.drift = self.drift.measure(self.actor_critic)
        return stats.drift["action_drift_xyz_mm"] > self.recipe.max_action_drift_mm

    # ------------------------------------------------------------------ schedule

    def _apply_lr_schedule(self, update_index: int) -> None:
        """Linear warm-up over ``recipe.lr_warmup_updates`` updates, from the learner's update
        count (``Progress.step``), so a resumed run continues the schedule exactly without any
        scheduler state of its own. Off (0): learning rates are left as they are."""
        warmup = self.recipe.lr_warmup_updates
        if warmup <= 0:
            return
        scale = min(1.0, (update_index + 1) / warmup)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lrs[name] * scale

    def _lr(self, name: str) -> float:
        """Current lr of a group; 0.0 when the group does not exist (no critic / no noise head)."""
        opt = self.optimizers.get(name)
        return float(opt.param_groups[0]["lr"]) if opt is not None else 0.0


def trainer_for(cfg, actor_critic: ActorCritic) -> PolicyTrainer:
    """The trainer of a run (learner and in-process loop alike): its seed, the env's action
    space for ``action_drift`` and the SFT co-training term when ``recipe.sft_loss_weight`` > 0."""
    from pirl_core.recipe.cotrain import sft_cotraining_for
    from pirl_core.recipe.drift import action_space_of

    return PolicyTrainer(
        actor_critic,
        cfg.recipe,
        seed=cfg.seed,
        action_space=action_space_of(cfg),
        sft=sft_cotraining_for(cfg, actor_critic.adapter),
    )
