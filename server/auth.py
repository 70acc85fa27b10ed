"""Optional authentication: a bearer-token interceptor and TLS / mTLS server credentials.

Off by default (loopback development). For deployment set both:
    polyskill serve --checkpoint CKPT --host 0.0.0.0 --auth-token "$TOKEN" \
        --tls-cert server.crt --tls-key server.key [--tls-client-ca clients-ca.crt  # mTLS]
Clients then send metadata `authorization: Bearer $TOKEN` over a TLS channel. Health checks
(grpc.health.v1) stay open so load balancers and grpc-health-probe work without the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


def _deny(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler | None:
    """A handler of the same kind as `handler` that ends the call with UNAUTHENTICATED."""
    if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
        return None

    async def abort(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(abort, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls whose `authorization` metadata is not `Bearer <token>` (constant-time)."""

    def __init__(self, token: str, open_prefixes: tuple[str, ...] = OPEN_SERVICES) -> None:
        if not token:
            raise ValueError("BearerTokenInterceptor needs a non-empty token")
        self._expected = f"Bearer {token}".encode()
        self._open = open_prefixes

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method.startswith(self._open):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        if not given:
            return _deny(await continuation(handler_call_details),
                         "missing credentials: send metadata 'authorization: Bearer <token>'")
        if not hmac.compare_digest(given, self._expected):
            return _deny(await continuation(handler_call_details), "invalid bearer token")
        return await continuation(handler_call_details)


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """TLS from PEM files; with `client_ca`, clients must present a certificate it signed (mTLS)."""
    chain = Path(cert).read_bytes()
    private = Path(key).read_bytes()
    root = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([(private, chain)], root_certificates=root,
                                       require_client_auth=root is not None)
