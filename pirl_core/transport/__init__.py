"""Learner <-> actor transport over LeRobot's gRPC ``LearnerService`` (see DESIGN.md, Transport).

- :mod:`.payload`: safetensors bytes + JSON header, never pickle.
- :mod:`.wire`: chunking (LeRobot's helpers), strict reassembly, channel/server options.
- :mod:`.server`: :class:`LearnerServer`, broadcast parameters to every actor, collect rollouts.
- :mod:`.client`: :class:`ActorClient`, wait for the learner, follow parameters, send rollouts.
"""

from pirl_core.transport.client import ActorClient
from pirl_core.transport.payload import decode_payload, encode_payload, peek_payload
from pirl_core.transport.server import LearnerServer

__all__ = ["ActorClient", "LearnerServer", "decode_payload", "encode_payload", "peek_payload"]
