"""X-VLA (LeRobot's ``lerobot.policies.xvla``) as a pirl policy family, one job per module.

A second VLA family copies this package's shape:

* ``family.py`` — the :class:`~pirl_core.policies.registry.PolicyFamily` record, registered on
  import of :mod:`pirl_core.policies` (cheap: everything below is imported when first used).
* ``build.py`` — which X-VLA is built (architecture tables for ``policy.size``, random-init
  fixes, the pretrained loader): :func:`~pirl_core.policies.xvla.build.build_xvla_policy`.
* ``hub.py`` — resolving pretrained weights and tokenizers locally (never downloads).
* ``adapter.py`` — :class:`~pirl_core.policies.xvla.adapter.XVLAAdapter`, the RL contract over
  the built policy, and :func:`~pirl_core.policies.xvla.adapter.build_xvla_adapter`.
* ``processors.py`` — LeRobot's processor pipelines between raw observations and the model.
* ``tokenizer.py`` — the offline word-level tokenizer of LIBERO's instructions.
* ``portable.py`` — the rules that make a saved ``pretrained_model/`` self-contained.
* ``libero.py`` — X-VLA's LIBERO embodiment: feature keys, widths, domain id.
* ``lerobot_shim.py`` — the two LeRobot private methods the adapter needs, in one place.

Nothing is re-exported here, so importing the package (``family.py`` does) loads no LeRobot code.
"""
