"""Policy adapters: one per policy family, all behind :class:`~pirl_core.policies.base.FlowPolicyAdapter`,
each family a record in :mod:`pirl_core.policies.registry`.

Importing this package registers the built-in families (each module registers itself; both are
cheap to import: no LeRobot code is loaded until a policy is built). A new family adds its module here.
"""

from pirl_core.policies import mlp_family  # noqa: F401  (registration)
from pirl_core.policies.pi import family as pi_family  # noqa: F401  (registration)
from pirl_core.policies.xvla import family  # noqa: F401  (registration)
