"""Wiring: config -> models -> engine -> gRPC server (+ health, reflection, auth, metrics) and CLI.

    python -m polyskill.server.app --checkpoint runs/RUN/checkpoints/latest --port 50051
    grpcurl -plaintext localhost:50051 list                       # reflection
    grpc-health-probe -addr localhost:50051                       # health

`create_server(config)` builds an unstarted server bound to `config.port` (0 = a free port, for
tests) and returns it with the port; `serve(config)` runs it until SIGTERM/SIGINT, then drains:
health goes NOT_SERVING, new steps get UNAVAILABLE, in-flight steps finish within `grace_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from polyskill.malloc import keep_large_blocks
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc
from polyskill_client.cpu_latency import hold_if_set

from .auth import BearerTokenInterceptor, server_credentials
from .batcher import Batcher
from .config import ServerConfig, add_config_arguments, config_from_args
from .engine import Engine
from .logs import configure_logging
from .metrics import Metrics
from .models import CheckpointSource, ModelStore, source_from_uri
from .service import SERVICE_NAME, PolicyServicer

log = logging.getLogger("polyskill.server")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _model_thread_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # NOTE: 2 threads on 2-core machines collapse under load


def load_models(config: ServerConfig) -> ModelStore:
    """The model store for `config`: a local checkpoint, or a registry URI (loaded now if the
    registry answers; otherwise the follower keeps trying while steps get UNAVAILABLE)."""
    if config.checkpoint:
        store = ModelStore(source=CheckpointSource(
            config.checkpoint, backend=config.backend, process=config.model_process,
            threads=config.torch_threads))
    elif config.model:
        store = ModelStore(source=source_from_uri(
            config.model, config.backend, config.model_process, config.torch_threads))
    else:
        log.warning("no --checkpoint or --model given: steps will fail with UNAVAILABLE")
        return ModelStore()
    try:
        store.apply(store.source, config.max_sessions, config.device)
    except (ValueError, FileNotFoundError, NotImplementedError):
        raise
    except Exception as e:  # noqa: BLE001 - registry down: start anyway and retry
        if not getattr(store.source, "follow", False):
            raise
        log.warning("could not load %s yet (%s); retrying every %g s", config.model, e,
                    config.poll_s)
    return store


class PolicyServer:
    """A configured server: gRPC + engine + health + metrics, started and stopped together."""

    def __init__(self, config: ServerConfig, server: grpc.aio.Server, engine: Engine,
                 health: health_aio.HealthServicer, metrics: Metrics, port: int) -> None:
        self.config, self.server, self.engine = config, server, engine
        self.health, self.metrics, self.port = health, metrics, port
        self.metrics_port = 0

    async def start(self) -> None:
        self.engine.start()
        await self.server.start()
        if self.config.metrics_port:
            self.metrics_port = self.metrics.serve(self.config.host, self.config.metrics_port)
        await self._set_health()
        follower = self.engine.follower
        if follower is not None:  # health follows the store: SERVING once a version is loaded
            previous = follower.on_change

            def on_change() -> None:
                if previous is not None:
                    previous()
                if not self.engine.draining:
                    asyncio.get_running_loop().create_task(self._set_health())

            follower.on_change = on_change
        log.info("serving", extra={"port": self.port, "models": self.engine.models.versions,
                                   "metrics_port": self.metrics_port,
                                   "auth": bool(self.config.auth_token),
                                   "tls": bool(self.config.tls_cert)})

    async def _set_health(self) -> None:
        status = SERVING if len(self.engine.models) else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)  # a coroutine in grpc.aio (must be awaited)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, reject new steps, let in-flight ones finish, stop."""
        grace = self.config.grace_s if grace is None else grace
        for name in ("", SERVICE_NAME):
            await self.health.set(name, NOT_SERVING)
        self.engine.draining = True
        await self.server.stop(grace)
        await self.engine.stop()
        self.metrics.shutdown()
        log.info("stopped", extra={"port": self.port})

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def create_server(config: ServerConfig, models: ModelStore | None = None
                  ) -> tuple[PolicyServer, int]:
    """Build (not start) the server; call from the event loop that will run it."""
    _model_thread_init(config.torch_threads)
    keep_large_blocks()  # NOTE: no page faults on per-pass buffers (polyskill/malloc.py)
    models = load_models(config) if models is None else models
    metrics = Metrics()
    batcher = Batcher(config.max_batch_size, config.max_wait_ms,
                      thread_initializer=lambda: _model_thread_init(config.torch_threads),
                      on_batch=metrics.on_batch, inline_max_batch=config.inline_max_batch,
                      pipeline_depth=config.pipeline_depth)
    engine = Engine(config, models, batcher, metrics)
    interceptors = [BearerTokenInterceptor(config.auth_token)] if config.auth_token else []
    if not config.is_loopback and not (config.auth_token and config.tls_cert):
        log.warning("listening beyond loopback without auth token + TLS; see server/auth.py",
                    extra={"host": config.host})
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ])
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(engine), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    address = f"{config.host}:{config.port}"
    if config.tls_cert:
        creds = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return PolicyServer(config, server, engine, health, metrics, port), port


async def _serve(config: ServerConfig) -> None:
    server, port = create_server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"polyskill server listening on {config.host}:{port}", flush=True)
    await stop.wait()
    log.info("signal received: draining", extra={"grace_s": config.grace_s})
    await server.stop()


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    configure_logging(config.log_format)
    with hold_if_set(config.cpu_latency_us):  # raises before serving if not allowed
        asyncio.run(_serve(config))


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `polyskill serve` (one per ServerConfig field; env POLYSKILL_* as defaults)."""
    add_config_arguments(parser)


def run_serve(args: argparse.Namespace) -> int:
    """Entry point of `polyskill serve`; returns the exit code."""
    try:
        config = config_from_args(args)
        serve(config)
    except (ValueError, FileNotFoundError, NotImplementedError, OSError) as e:
        print(f"polyskill serve: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyskill serve", description=__doc__.splitlines()[0])
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
