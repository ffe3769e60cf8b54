"""Supervised fine-tuning (SFT) of an X-VLA on demonstrations, written as a LeRobot checkpoint.

``python -m pirl_core.sft --dataset DIR --out CKPT`` (see ``__main__``); docs/design.md, "SFT".

Why pirl runs its own short loop rather than ``lerobot-train``: the loss *is* LeRobot's
(``XVLAPolicy.forward``); what differs is the preprocessing. ``lerobot-train`` runs offline on an
SFT checkpoint (``cd CKPT && HF_HUB_OFFLINE=1 lerobot-train --policy.path=CKPT
--dataset.repo_id=local/demos --dataset.root=DIR``, checked here) but takes its preprocessor from
the checkpoint's ``policy_preprocessor.json``: the rollout-side policy chain, which has no ImageNet
normalisation because LeRobot's X-VLA LIBERO setup puts that step in the *env* preprocessor. It
would train on un-normalised images that no rollout ever produces. pirl's loop applies the
rollout's env chain minus ``LiberoProcessorStep`` (already applied when the demonstrations were
recorded), then the same policy chain, so SFT and RL see identical tensors.
"""
