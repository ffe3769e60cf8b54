"""SFT co-training during RL (``recipe.sft_loss_weight`` x LeRobot's SFT loss on demonstrations).

Why: RLinf's LIBERO recipe optionally adds ``sft_loss_weight x flow-matching loss`` on a
demonstration batch to every PPO minibatch (weight 0.1, 0.2 in a co-training config), which
anchors the policy to the demonstrations while RL moves it. pirl reuses its SFT pieces exactly:
the dataset opening and batching of :mod:`pirl_core.recipe.demo_data`, the family's demo processor
(``SftSupport``: X-VLA, π0, π0.5) and the loss :func:`sft_loss` (the LeRobot policy's own
``forward``), with the RL adapter's own policy pre-processor. Both
live here, in the recipe layer, because the RL trainer uses them; the SFT application
(:mod:`pirl_core.sft`) imports them from here.

Differences from the SFT loop, on purpose:

* The policy stays in eval mode (the RL adapter keeps the policy dropout-free so PPO ratios are exact),
  so the term is LeRobot's loss without dropout.
* The demonstration batch and the flow-matching draws inside ``XVLAPolicy.forward`` are functions
  of (run seed, update index, minibatch step) only: a private generator picks the frames and the
  global RNG is forked and seeded around the forward, so a resumed run draws the same batches and
  the RL rollouts' randomness is untouched.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from pirl_core.errors import ConfigError
from pirl_core.recipe.demo_data import DemoBatcher, check_family_inputs, open_demos, read_info


def sft_loss(policy, batcher: DemoBatcher, raw: dict) -> tuple[Tensor, dict]:
    """A LeRobot policy's own SFT loss (``forward``: X-VLA's flow matching towards the clean chunk
    with BCE on the gripper channels, π's flow matching on the velocity) of one collated
    demonstration batch: (loss, its parts). The one
    place pirl computes it: the SFT loop (:mod:`pirl_core.sft.train`) and RL's co-training term
    (``recipe.sft_loss_weight``, :class:`SftCoTraining`) both call this."""
    return policy.forward(batcher(raw))


def _key(seed: int, update_index: int, step: int) -> int:
    """One 63-bit seed per (run, update, minibatch step)."""
    return (seed * 1_000_003 + update_index * 10_007 + step) % (2**63 - 1)


class SftCoTraining:
    """Demonstration minibatches and their SFT loss for the RL trainer (any family with
    ``SftSupport``: the family's demo processor and features, the RL adapter's policy preprocessor)."""

    def __init__(self, adapter, cfg) -> None:
        from pirl_core.policies.registry import policy_family

        r = cfg.recipe
        sft = policy_family(cfg.policy.type).sft
        if sft is None:
            raise ConfigError(
                "recipe.sft_loss_weight",
                r.sft_loss_weight,
                f"0 for policy.type = {cfg.policy.type!r} (the family has no SFT support)",
            )
        root = Path(r.sft_dataset)
        try:
            info = read_info(root, None)
        except ConfigError as err:
            raise ConfigError("recipe.sft_dataset", str(root), err.expected) from err
        check_family_inputs(sft, cfg, info, root, field="recipe.sft_dataset")
        self.dataset = open_demos(root, info, cfg.policy.chunk_size)
        policy_pre = adapter.processors.policy_pre
        sft.check_instructions(policy_pre, [str(t) for t in self.dataset.meta.tasks.index], ConfigError)
        self.batcher = DemoBatcher(sft.demo_processor(cfg.env.camera_size), policy_pre, sft.demo_features)
        self.batch_size = r.sft_batch_size
        self.seed = cfg.seed

    def indices(self, update_index: int, step: int) -> list[int]:
        """The frames of one minibatch's demonstration batch (without replacement)."""
        generator = torch.Generator().manual_seed(_key(self.seed, update_index, step))
        n = len(self.dataset)
        return torch.randperm(n, generator=generator)[: min(self.batch_size, n)].tolist()

    def raw_batch(self, indices: list[int]) -> dict:
        """Collated like the SFT loop's DataLoader batch."""
        return torch.utils.data.default_collate([self.dataset[i] for i in indices])

    def loss(self, adapter, update_index: int, step: int) -> tuple[Tensor, dict]:
        """The SFT loss on this minibatch's demonstration batch, with gradients."""
        raw = self.raw_batch(self.indices(update_index, step))
        device = next(adapter.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_key(self.seed, update_index, step))
            with adapter.compute_context():
                loss, parts = sft_loss(adapter.policy, self.batcher, raw)
        return loss.float(), parts


def sft_cotraining_for(cfg, adapter) -> SftCoTraining | None:
    """The co-training term a run's trainer adds (None when ``recipe.sft_loss_weight`` is 0)."""
    r = cfg.recipe
    if r.sft_loss_weight <= 0:
        return None
    return SftCoTraining(adapter, cfg)
