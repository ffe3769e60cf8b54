"""Environments behind one small vector-env contract (:mod:`pirl_core.envs.base`)."""
