"""Checkpoints and resume you can trust (docs/design.md, "Checkpoints" and "Resume").

Import from the submodules: :mod:`~pirl_core.checkpoints.resume` has the learner's three calls
(``prepare_run`` -> ``restore`` -> ``save``), :mod:`~pirl_core.checkpoints.catalog` lists and
validates without loading tensors (the console, ``python -m pirl_core.checkpoints``),
:mod:`~pirl_core.checkpoints.lock` keeps one learner per output dir. Importing this package
imports nothing, so listing and validating never pay for torch.

Standalone: ``python -m pirl_core.checkpoints list OUTPUT_DIR``,
``python -m pirl_core.checkpoints validate CHECKPOINT --profile ... [overrides]`` and
``python -m pirl_core.checkpoints export CHECKPOINT OUT`` (the self-contained form of an older
checkpoint, :mod:`~pirl_core.checkpoints.portable`).
"""
