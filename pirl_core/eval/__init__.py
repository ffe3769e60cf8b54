"""Evaluation: ``python -m pirl_core.eval`` (a checkpoint on a suite, deterministic by default),
periodic evaluation during training (:mod:`pirl_core.eval.periodic`) and the ``checkpoints/best``
pointer (:mod:`pirl_core.eval.best`). See docs/design.md, "Evaluation"."""
