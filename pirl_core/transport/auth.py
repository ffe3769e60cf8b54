"""Shared-secret authentication and TLS material for the learner's gRPC server and its actors.

Every RPC must carry ``learner.auth_token`` in its metadata (:data:`~.wire.AUTH_METADATA`); a
server interceptor checks it before any handler runs and refuses with ``UNAUTHENTICATED``, so no
handler (and no payload buffer) is reached without it. TLS is optional: with ``learner.tls_cert``
and ``learner.tls_key`` the server listens with TLS, and actors trust ``learner.tls_ca``
(default: the same certificate, i.e. a self-signed one copied to every actor machine).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import grpc

from pirl_core.config import LearnerConfig
from pirl_core.errors import ConfigError
from pirl_core.transport.wire import AUTH_METADATA


def resolve_token(lc: LearnerConfig) -> str:
    """The configured secret ("" = no authentication); a token file is read and stripped."""
    if lc.auth_token_file:
        try:
            token = Path(lc.auth_token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("learner.auth_token_file", lc.auth_token_file, "a readable text file") from exc
        if not token:
            raise ConfigError(
                "learner.auth_token_file", lc.auth_token_file, "a file holding a non-empty token"
            )
        return token
    return lc.auth_token


def _read_pem(lc: LearnerConfig, name: str) -> bytes:
    path = getattr(lc, name)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"learner.{name}", path, "a readable PEM file") from exc


def server_credentials(lc: LearnerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials for the learner (None: plaintext, fine on loopback)."""
    if not lc.tls_cert:
        return None
    if not lc.tls_key:
        raise ConfigError("learner.tls_key", "", "the private key (PEM) that goes with learner.tls_cert")
    return grpc.ssl_server_credentials([(_read_pem(lc, "tls_key"), _read_pem(lc, "tls_cert"))])


def trusted_ca(lc: LearnerConfig) -> bytes | None:
    """PEM the actor trusts (None: plaintext channel)."""
    if lc.tls_ca:
        return _read_pem(lc, "tls_ca")
    if lc.tls_cert:
        return _read_pem(lc, "tls_cert")
    return None


class _Refusal(grpc.RpcMethodHandler):
    """A handler of the same streaming shape as the real one, that only refuses."""

    def __init__(self, real: grpc.RpcMethodHandler, message: str) -> None:
        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        self.request_streaming = real.request_streaming
        self.response_streaming = real.response_streaming
        self.request_deserializer = real.request_deserializer
        self.response_serializer = real.response_serializer
        self.unary_unary = refuse if not real.request_streaming and not real.response_streaming else None
        self.unary_stream = refuse if not real.request_streaming and real.response_streaming else None
        self.stream_unary = refuse if real.request_streaming and not real.response_streaming else None
        self.stream_stream = refuse if real.request_streaming and real.response_streaming else None


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every call whose ``pirl-auth-token`` metadata is not the learner's token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("TokenInterceptor needs a non-empty token")
        self._token = token.encode()

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        offered = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTH_METADATA and isinstance(value, str):
                offered = value
        if handler is not None and not hmac.compare_digest(offered.encode(), self._token):
            reason = "no auth token" if not offered else "a wrong auth token"
            return _Refusal(
                handler,
                f"this learner requires learner.auth_token; the call carried {reason}: start the actor "
                "with the learner's --learner.auth_token_file=PATH (or --learner.auth_token)",
            )
        return handler
