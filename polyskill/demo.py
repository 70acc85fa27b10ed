"""`polyskill demo` and `polyskill up`: the three roles of the product on one machine.

    polyskill demo [--minutes 5]     # trainer + server following @champion + driver sessions
    polyskill up                     # the same without a time limit (Ctrl-C stops all)

1. `polyskill train` (a subprocess) learns the built-in bandit meta-task continually, registers
   every checkpoint in the MLflow registry and moves `@champion` when a candidate passes the gate.
2. `polyskill serve` (a subprocess) follows `models:/NAME@champion` and hot-swaps new versions.
3. Driver sessions (this process, through the thin client) play k-episode bandit trials against
   the server and report which version served them, the served in-context gain and latency.
The demo stops by itself, shuts everything down cleanly, and leaves a learning-curve PNG (also in
MLflow) and the command to browse the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
PRESET = "smoke"
ENV_ID = "polyskill/Bandit-v0"


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=5.0, help="how long the demo runs")
    _common(p, run_dir=None, model_name=None, port=0)


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    _common(p, run_dir=Path("runs/up"), model_name="polyskill", port=50051)


def _common(
    p: argparse.ArgumentParser, run_dir: Path | None, model_name: str | None, port: int
) -> None:
    p.add_argument(
        "--run-dir",
        type=Path,
        default=run_dir,
        help="training run directory (demo default: a new runs/demo-<time>)",
    )
    p.add_argument(
        "--model-name",
        default=model_name,
        help="registered model name (demo default: a new demo-<time>, so each demo "
        "shows its own first promotions)",
    )
    p.add_argument("--port", type=int, default=port, help="gRPC port (0: a free one)")
    p.add_argument("--sessions", type=int, default=4, help="driver sessions per round")
    p.add_argument("--poll-s", type=float, default=2.0, help="server's registry poll period")


@dataclass
class Round:
    """One round of driver sessions: what was served and how it did."""

    version: int | None
    episode_returns: list[float]
    episode_success: list[float]  # picked the good arm; free of the reward's coin flip
    latency_p50_ms: float
    latency_p99_ms: float
    errors: int

    @property
    def gain(self) -> float:
        """Mean return of the second half of the trial minus the first episode's."""
        r = self.episode_returns
        return float(np.mean(r[len(r) // 2 :]) - r[0])


@dataclass
class Roles:
    trainer: subprocess.Popen
    run_dir: Path
    model_name: str
    logs: Path
    server: subprocess.Popen | None = None
    address: str = ""
    rounds: list[Round] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    out = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "polyskill.cli", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def start_trainer(
    run_dir: Path, model_name: str, seconds: float | None, logs: Path
) -> subprocess.Popen:
    sets = ["eval_every_steps=6000", "checkpoint_every_steps=6000", "total_steps=100000000"]
    if seconds:
        sets.append(f"max_seconds={seconds:.0f}")
    cmd = ["train", "--preset", PRESET, "--run-dir", str(run_dir), "--model-name", model_name]
    for s in sets:
        cmd += ["--set", s]
    return _spawn(cmd, logs / "trainer.log")


def champion(model_name: str) -> int | None:
    from polyskill.trainer.registry import ModelRegistry

    try:
        info = ModelRegistry(model_name).alias("champion")
    except Exception:  # noqa: BLE001 - not registered yet, or the store is being created
        return None
    return None if info is None else info.version


def trainer_steps(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "LATEST"
    try:
        counters = run_dir / "checkpoints" / pointer.read_text().strip() / "counters.json"
        return int(json.loads(counters.read_text())["env_steps"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_healthy(address: str, timeout_s: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"the server at {address} did not become healthy in {timeout_s:.0f} s")


def _nan_for_none(xs: list[float | None]) -> list[float]:
    """Episodes no session reached read as NaN, which the summary skips."""
    return [x if x is not None else float("nan") for x in xs]


def drive_round(address: str, sessions: int, seed: int) -> Round:
    from polyskill_client.drive import add_arguments, drive

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--server",
            address,
            "--env",
            ENV_ID,
            "--sessions",
            str(sessions),
            "--episodes",
            "10",
            "--seed",
            str(seed),
        ]
    )
    s = drive(args)
    returns = _nan_for_none(s["episode_returns"])
    return Round(
        s["model"].get("version"),
        returns,
        _nan_for_none(s["episode_success"] or [None] * len(returns)),  # the bandit reports it
        s["latency_ms"]["p50"] or 0.0,
        s["latency_ms"]["p99"] or 0.0,
        len(s["errors"]),
    )


def _status(roles: Roles, started: float, r: Round | None) -> str:
    mins, secs = divmod(int(time.monotonic() - started), 60)
    line = f"[{mins}:{secs:02d}] trainer {trainer_steps(roles.run_dir):>7,} steps | "
    line += f"champion v{champion(roles.model_name) or '-'}"
    if r is not None:
        line += (
            f" | served v{r.version}: episode 1 {r.episode_returns[0]:.2f} -> episodes 6-10 "
            f"{np.mean(r.episode_returns[5:]):.2f} (gain {r.gain:+.2f}) | latency p50 "
            f"{r.latency_p50_ms:.1f} ms p99 {r.latency_p99_ms:.1f} ms"
        )
    return line


def run_roles(args: argparse.Namespace, seconds: float | None) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or Path("runs") / f"demo-{stamp}"
    model_name = args.model_name or f"demo-{stamp}"
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    print(
        f"training the '{PRESET}' preset in {run_dir} (logs in {logs}); registry model "
        f"'{model_name}'",
        flush=True,
    )
    trainer_seconds = max(30.0, seconds - 20) if seconds else None  # time to checkpoint
    roles = Roles(
        start_trainer(run_dir, model_name, trainer_seconds, logs), run_dir, model_name, logs
    )
    deadline = started + seconds if seconds else float("inf")
    try:
        while not stop["now"] and time.monotonic() < deadline and roles.trainer.poll() is None:
            if roles.server is None:
                if champion(model_name) is not None:
                    port = args.port or _free_port()
                    roles.address = f"127.0.0.1:{port}"
                    roles.server = _spawn(
                        [
                            "serve",
                            "--model",
                            f"models:/{model_name}@champion",
                            "--port",
                            str(port),
                            "--poll-s",
                            str(args.poll_s),
                        ],
                        logs / "server.log",
                    )
                    wait_healthy(roles.address, 120)
                    print(f"serving models:/{model_name}@champion on {roles.address}", flush=True)
                else:
                    print(
                        _status(roles, started, None) + " | waiting for the first champion",
                        flush=True,
                    )
                    time.sleep(5)
                    continue
            r = drive_round(roles.address, args.sessions, seed=len(roles.rounds))
            roles.rounds.append(r)
            print(_status(roles, started, r), flush=True)
            time.sleep(3)
    finally:
        code = shutdown(roles)
    summarize(roles)
    return code


def shutdown(roles: Roles) -> int:
    """SIGTERM the trainer (it checkpoints, registers and plots), then the server."""
    print("stopping: the trainer checkpoints and registers its last version...", flush=True)
    code = 0
    if roles.trainer.poll() is None:
        roles.trainer.send_signal(signal.SIGTERM)
    try:
        code = roles.trainer.wait(timeout=180)
    except subprocess.TimeoutExpired:
        roles.trainer.kill()
        code = 1
    if roles.server is not None:
        roles.server.send_signal(signal.SIGTERM)
        try:
            roles.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            roles.server.kill()
    if code != 0:
        print(f"the trainer exited with {code}; see {roles.logs / 'trainer.log'}", file=sys.stderr)
    return code


def summarize(roles: Roles) -> None:
    from polyskill.trainer.registry import ModelRegistry
    from polyskill.trainer.tracking import tracking_uri

    try:
        registry = ModelRegistry(roles.model_name)
        versions = [v.version for v in registry.versions()]
        history = registry.champion_history()
    except Exception as e:  # noqa: BLE001
        versions, history = [], []
        print(f"(registry unavailable: {e})")
    print()
    print(
        f"registered versions: {versions}; champion history: {history} "
        f"({max(0, len(history) - 1)} promotion(s) after the first champion)"
    )
    served = [r for r in roles.rounds if not np.isnan(r.episode_returns).any()]
    if served:
        last = served[-max(1, len(served) // 3) :]
        ep = np.mean([r.episode_returns for r in last], axis=0)
        ok = np.mean([r.episode_success for r in last], axis=0)
        print(
            f"served in-context gain over the last {len(last)} round(s): episode 1 "
            f"{ep[0]:.2f} -> episodes 6-10 {ep[5:].mean():.2f} ({ep[5:].mean() - ep[0]:+.2f}); "
            f"good arm picked: episode 1 {ok[0]:.2f} -> episodes 6-10 {ok[5:].mean():.2f} "
            f"({ok[5:].mean() - ok[0]:+.2f}); "
            f"versions served: {sorted({r.version for r in roles.rounds})}; "
            f"errors: {sum(r.errors for r in roles.rounds)}"
        )
        print(
            f"latency p50 {np.median([r.latency_p50_ms for r in served]):.1f} ms, "
            f"p99 {np.max([r.latency_p99_ms for r in served]):.1f} ms"
        )
    plot = roles.run_dir / "learning_curve.png"
    if plot.exists():
        print(f"learning curve: {plot} (also logged to the MLflow run)")
    uri = tracking_uri()
    print(f"browse the runs and the registry: mlflow ui --backend-store-uri {uri}")


def run_demo(args: argparse.Namespace) -> int:
    if args.minutes <= 0:
        print("polyskill demo: --minutes must be > 0", file=sys.stderr)
        return 2
    # The trainer stops a little before the deadline so it can checkpoint and register.
    return run_roles(args, seconds=args.minutes * 60)


def run_up(args: argparse.Namespace) -> int:
    return run_roles(args, seconds=None)
