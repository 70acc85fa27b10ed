"""Server configuration: one typed dataclass; env vars (POLYSKILL_*) and CLI flags derive from it.

Precedence: field default < environment variable POLYSKILL_<FIELD> < command-line flag. The CLI is
generated from the fields (`add_config_arguments`), so help texts are written once, here.

    POLYSKILL_MAX_SESSIONS=64 python -m polyskill.server.app --checkpoint runs/x/checkpoints/latest
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

ENV_PREFIX = "POLYSKILL_"


def _f(default: Any, help: str) -> Any:  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServerConfig:
    checkpoint: str = _f("", "local checkpoint folder written by `polyskill train`")
    model: str = _f("", "registry model models:/NAME@ALIAS (followed: new versions hot-swap) or "
                    "models:/NAME/VERSION; store = MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    poll_s: float = _f(5.0, "how often the registry alias of --model is checked, in seconds")
    migrate: str = _f("pin", "when the alias moves, live sessions: pin (finish on their version) "
                      "or reencode (move to the new version at their next step)")
    backend: str = _f("torch", "model runtime: torch, or onnx (ONNX Runtime, CUDA if available)")
    host: str = _f("127.0.0.1", "address to bind; 0.0.0.0 exposes the server (use auth + TLS)")
    port: int = _f(50051, "gRPC port; 0 picks a free one")
    max_sessions: int = _f(
        256, "sessions held at once (KV-cache slots); more -> RESOURCE_EXHAUSTED")
    max_batch_size: int = _f(256, "most session steps in one batched forward pass")
    inline_max_batch: int = _f(
        16, "largest pass run on the event loop thread; bigger ones go to the model thread "
        "(max_batch_size: all inline, 0-20 %% faster under load on 2 cores, docs/benchmarks.md)")
    model_process: bool = _f(
        False, "run each model version in its own worker process, so request handling and the "
        "forward pass use two cores (the GIL keeps one process on one); +1 pipe round trip/pass")
    pipeline_depth: int = _f(
        2, "with model_process: big passes in flight at once (the next is sent while one "
        "computes); 1 = each pass waits for the previous answer")
    max_wait_ms: float = _f(
        1.0, "longest a step waits for others to join its batch (only while load is high)")
    idle_timeout_s: float = _f(300.0, "a session idle this long expires and frees its slot")
    step_timeout_s: float = _f(
        10.0, "per-step deadline when the call sets none (stream steps); DEADLINE_EXCEEDED after")
    max_message_bytes: int = _f(4 * 1024 * 1024, "largest request/response message in bytes")
    history_steps: int = _f(0, "raw recent steps kept per session for re-encoding (0 = context)")
    tombstone_ttl_s: float = _f(
        3600.0, "how long closed/expired session ids are remembered (for a precise error)")
    device: str = _f("cpu", "torch device for the model, e.g. cpu or cuda:0")
    torch_threads: int = _f(1, "torch intra-op threads of the model thread (1 on small machines)")
    cpu_latency_us: int = _f(
        -1, "while serving, ask Linux to keep CPU wake-ups under this many microseconds (PM QoS "
        "via /dev/cpu_dma_latency; 0 = idle CPUs poll: lowest B=1 latency, more power); -1 = off")
    auth_token: str = _f("", "if set, calls need metadata `authorization: Bearer <token>`")
    tls_cert: str = _f("", "PEM server certificate chain; with tls_key turns TLS on")
    tls_key: str = _f("", "PEM server private key")
    tls_client_ca: str = _f("", "PEM CA bundle; if set, clients must present a cert (mTLS)")
    metrics_port: int = _f(0, "Prometheus /metrics HTTP port on `host`; 0 = off")
    grace_s: float = _f(5.0, "on SIGTERM, seconds in-flight calls get to finish")
    log_format: str = _f("text", "log lines: text (key=value) or json")

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"invalid server config: {msg}")

        need(0 <= self.port < 65536, f"port must be in [0, 65535], got {self.port}")
        need(self.max_sessions >= 1, f"max_sessions must be >= 1, got {self.max_sessions}")
        need(self.max_batch_size >= 1, f"max_batch_size must be >= 1, got {self.max_batch_size}")
        need(self.inline_max_batch >= 0,
             f"inline_max_batch must be >= 0, got {self.inline_max_batch}")
        need(self.pipeline_depth >= 1, f"pipeline_depth must be >= 1, got {self.pipeline_depth}")
        need(self.max_wait_ms >= 0, f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        need(self.idle_timeout_s > 0, f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        need(self.step_timeout_s > 0, f"step_timeout_s must be > 0, got {self.step_timeout_s}")
        need(self.max_message_bytes >= 1024, "max_message_bytes must be >= 1024")
        need(self.history_steps >= 0, f"history_steps must be >= 0, got {self.history_steps}")
        need(self.cpu_latency_us >= -1,
             f"cpu_latency_us must be >= 0 (or -1 for off), got {self.cpu_latency_us}")
        need(self.torch_threads >= 1, f"torch_threads must be >= 1, got {self.torch_threads}")
        need(bool(self.tls_cert) == bool(self.tls_key), "tls_cert and tls_key go together")
        need(not self.tls_client_ca or bool(self.tls_cert), "tls_client_ca (mTLS) needs tls_cert")
        need(0 <= self.metrics_port < 65536, f"metrics_port out of range: {self.metrics_port}")
        need(self.log_format in ("text", "json"), f"log_format must be text or json, "
             f"got {self.log_format!r}")
        need(not (self.checkpoint and self.model), "give either checkpoint or model, not both")
        need(self.poll_s > 0, f"poll_s must be > 0, got {self.poll_s}")
        need(self.migrate in ("pin", "reencode"), f"migrate must be pin or reencode, "
             f"got {self.migrate!r}")
        need(self.backend in ("torch", "onnx"), f"backend must be torch or onnx, "
             f"got {self.backend!r}")

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @staticmethod
    def from_env(env: dict[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Defaults, then POLYSKILL_* variables from `env` (default os.environ), then overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(ServerConfig):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, type(f.default), raw)
        return replace(ServerConfig(), **{**values, **overrides})


def _parse(name: str, kind: type, raw: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        return kind(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per ServerConfig field (default None = keep env/default)."""
    for f in fields(ServerConfig):
        assert f.default is not MISSING
        kind = type(f.default)
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        help_text = f"{f.metadata['help']} (env {env}; default {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text,
                                metavar=f.name.upper())


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    given = {f.name: getattr(args, f.name) for f in fields(ServerConfig)
             if getattr(args, f.name, None) is not None}
    return ServerConfig.from_env(**given)
