"""Supervised fine-tuning (SFT) of an X-VLA on demonstrations, written as a LeRobot checkpoint.

``python -m pirl_core.sft --dataset DIR --out CKPT`` (see ``__main__``). Why pirl has its own short
loop instead of ``lerobot-train``: see docs/design.md, "SFT" — in short, the loss *is* LeRobot's
(``XVLAPolicy.forward``), only the processors differ: a demonstration recorded after
``LiberoProcessorStep`` must go through the same remaining steps as a rollout observation
(``pirl_core.policies.xvla_processors.make_demo_processor``), which ``lerobot-train``'s X-VLA
processor factory does not do (it re-applies image scaling meant for raw [0, 255] frames).
"""
