"""SFT co-training during RL (``recipe.sft_loss_weight`` x LeRobot's SFT loss on demonstrations).

Why: RLinf's LIBERO recipe optionally adds ``sft_loss_weight x flow-matching loss`` on a
demonstration batch to every PPO minibatch (weight 0.1, 0.2 in a co-training config), which
anchors the policy to the demonstrations while RL moves it. pirl reuses its SFT pieces exactly:
the dataset opening and batching of :mod:`pirl_core.recipe.demo_data` and the loss
:func:`sft_loss` (``XVLAPolicy.forward``), with the RL adapter's own policy pre-processor. Both
live here, in the recipe layer, because the RL trainer uses them; the SFT application
(:mod:`pirl_core.sft`) imports them from here.

Differences from the SFT loop, on purpose:

* The policy stays in eval mode (the RL adapter keeps X-VLA dropout-free so PPO ratios are exact),
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
from pirl_core.recipe.demo_data import DemoBatcher, open_demos, read_info


def sft_loss(policy, batcher: DemoBatcher, raw: dict) -> tuple[Tensor, dict]:
    """LeRobot's X-VLA SFT loss (``XVLAPolicy.forward``: flow matching towards the clean chunk,
    BCE on the gripper channels) of one collated demonstration batch: (loss, its parts). The one
    place pirl computes it: the SFT loop (:mod:`pirl_core.sft.train`) and RL's co-training term
    (``recipe.sft_loss_weight``, :class:`SftCoTraining`) both call this."""
    return policy.forward(batcher(raw))


def _key(seed: int, update_index: int, step: int) -> int:
    """One 63-bit seed per (run, update, minibatch step)."""
    return (seed * 1_000_003 + update_index * 10_007 + step) % (2**63 - 1)


class SftCoTraining:
    """Demonstration minibatches and their SFT loss for the RL trainer (X-VLA adapters)."""

    def __init__(
        self, adapter, dataset_dir: str | Path, chunk_size: int, camera_size: int, batch_size: int, seed: int
    ) -> None:
        from pirl_core.policies.xvla.adapter import check_instructions
        from pirl_core.policies.xvla.processors import make_demo_processor

        root = Path(dataset_dir)
        try:
            info = read_info(root, None)
        except ConfigError as err:
            raise ConfigError("recipe.sft_dataset", str(root), err.expected) from err
        self.dataset = open_demos(root, info, chunk_size)
        policy_pre = adapter.processors.policy_pre
        check_instructions(policy_pre, [str(t) for t in self.dataset.meta.tasks.index], ConfigError)
        self.batcher = DemoBatcher(make_demo_processor(camera_size), policy_pre)
        self.batch_size = batch_size
        self.seed = seed

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
    return SftCoTraining(
        adapter, r.sft_dataset, cfg.policy.chunk_size, cfg.env.camera_size, r.sft_batch_size, cfg.seed
    )
