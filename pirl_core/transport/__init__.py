"""Learner <-> actor transport over LeRobot's gRPC ``LearnerService`` (see docs/design.md, "Transport").

- :mod:`.payload`: safetensors bytes + JSON header, never pickle.
- :mod:`.wire`: chunking (LeRobot's helpers), strict capped reassembly, channel/server options, metadata keys.
- :mod:`.broadcast`: publish parameters to every actor's stream.
- :mod:`.collector`: receive, check and queue rollouts; reject and count bad ones.
- :mod:`.contract`: what a rollout must look like to this learner.
- :mod:`.round_header`: :class:`RoundHeader`, the typed header of one rollout round.
- :mod:`.push`: the lean parameter push (trainable tensors + frozen fingerprint) and its loading.
- :mod:`.auth`: token interceptor, TLS credentials.
- :mod:`.server`: :class:`LearnerServer`, the gRPC server, thin servicer and handshake.
- :mod:`.client`: :class:`ActorClient`, wait for the learner, follow parameters, send rollouts.
"""

from pirl_core.transport.client import ActorClient
from pirl_core.transport.payload import decode_payload, encode_payload, peek_payload
from pirl_core.transport.server import LearnerServer

__all__ = ["ActorClient", "LearnerServer", "decode_payload", "encode_payload", "peek_payload"]
