"""Prometheus metrics in the server's own registry, served over HTTP on `metrics_port` (0 = off).

    curl -s localhost:$METRICS_PORT/metrics | grep polyskill_
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.step_latency = Histogram(
            "polyskill_step_latency_seconds", "Server time per Act step: request in -> action out",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.act_batch_latency = Histogram(
            "polyskill_act_batch_latency_seconds",
            "Server time per ActBatch request (many sessions' steps): request in -> actions out",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.model_latency = Histogram(
            "polyskill_batch_latency_seconds", "Model thread time per batched forward pass",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "polyskill_batch_size", "Session steps per batched forward pass",
            buckets=_BATCH_BUCKETS, registry=r)
        self.steps = Counter("polyskill_steps", "Steps served", registry=r)
        self.active_sessions = Gauge("polyskill_active_sessions", "Open sessions", registry=r)
        self.cache_bytes = Gauge("polyskill_cache_bytes", "Bytes in KV-cache pools", registry=r)
        self.rejected = Counter("polyskill_rejected_requests", "Requests answered with an error",
                                ["code"], registry=r)
        self._http = None

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_latency.observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint (a daemon thread); returns the bound port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def shutdown(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http = None
