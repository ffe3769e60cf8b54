"""Environments behind one small vector-env contract (:mod:`pirl_core.envs.base`), one family per
``env.type``, looked up in :mod:`pirl_core.envs.registry`.

Importing this package registers the built-in families (each module registers itself; both are
cheap to import: no simulator is loaded until an env is made). A new family adds its module here.
"""

from pirl_core.envs import libero_family, toy_family  # noqa: F401  (registration)
