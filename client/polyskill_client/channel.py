"""Channel construction: target, TLS / mTLS, bearer token, keepalive, message size, reconnects.

One `ChannelConfig` serves the sync and the asyncio client. The token travels as call metadata
(`authorization: Bearer <token>`, what the server's interceptor checks) so it works over TLS and
over plaintext loopback alike; send it over plaintext only on a trusted network.

    cfg = ChannelConfig("robot-gw:50051", token=os.environ["POLYSKILL_TOKEN"],
                        root_certificates="ca.pem")
    channel = cfg.sync_channel()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


def _read(pem: str | bytes | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if pem is None or isinstance(pem, bytes):
        return pem
    return Path(pem).read_bytes()


@dataclass(frozen=True)
class ChannelConfig:
    target: str
    """host:port of the server (or any gRPC target string, e.g. dns:///svc:50051)."""
    tls: bool = False
    """Use TLS. Implied by `root_certificates` or a client certificate."""
    root_certificates: str | bytes | None = None
    """PEM CA bundle (bytes or a path) to verify the server; None = the system's roots."""
    client_certificate: str | bytes | None = None
    """PEM client certificate chain for mTLS (bytes or a path); needs `client_key`."""
    client_key: str | bytes | None = None
    """PEM private key of the client certificate (bytes or a path)."""
    server_name: str | None = None
    """Override the TLS host name checked against the certificate (e.g. when dialing an IP)."""
    token: str | None = None
    """Bearer token sent as `authorization` metadata on every call."""
    keepalive_s: float = 0.0
    """Ping the connection this often so a dead server or a NAT drop is noticed (0 = off).
    NOTE: off by default because a gRPC server answers pings more frequent than its
    `grpc.http2.min_ping_interval_without_data_ms` (default 5 min) with GOAWAY; enable it only
    with a server or proxy configured to permit that rate. Step deadlines catch a dead server."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest message sent or received (image observations need more than the 4 MiB default)."""
    max_reconnect_backoff_s: float = 1.0
    """Cap on gRPC's own reconnect backoff, so a restarted server is found again within about
    this long (gRPC's default cap is 120 s, far too slow for a control loop)."""

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("ChannelConfig.target must be host:port, got an empty string")
        if bool(self.client_certificate) != bool(self.client_key):
            raise ValueError("client_certificate and client_key go together (mTLS)")

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.root_certificates or self.client_certificate)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def options(self) -> list[tuple[str, int | str]]:
        backoff_ms = max(int(self.max_reconnect_backoff_s * 1000), 100)
        opts: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", min(100, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(100, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ]
        if self.keepalive_s > 0:
            opts += [("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
                     ("grpc.keepalive_timeout_ms", 10_000),
                     ("grpc.keepalive_permit_without_calls", 1)]
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.root_certificates),
            private_key=_read(self.client_key),
            certificate_chain=_read(self.client_certificate),
        )

    def sync_channel(self) -> grpc.Channel:
        if self.secure:
            return grpc.secure_channel(self.target, self.credentials(), options=self.options())
        return grpc.insecure_channel(self.target, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.secure:
            return grpc.aio.secure_channel(self.target, self.credentials(),
                                           options=self.options())
        return grpc.aio.insecure_channel(self.target, options=self.options())
