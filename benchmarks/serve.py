"""Serving benchmark (`polyskill bench serve`): latency and throughput ratios measured in one run.

    python -m polyskill.benchmarks.serve --out runs/bench_serve.json [--quick]

For the default network and a small one (2 layers, d_model 128, 4 heads, d_ff 512), CartPole-sized
observations. The server runs in its own process (`python -m polyskill.server.app`); the load
generator runs here and its CPU time is reported next to the server's (both share the machine).
  (1) B=1 streamed step latency p50/p99 / (bare gRPC echo round trip + bare model step); <= 1.3
  (2) cached step vs recomputing the whole 512-step context;                              >= 50x
  (3) throughput, 256 streamed sessions / bare batched model at B=256;                    >= 0.7
      and / the unbatched server (max_batch_size 1);                                      >= 10x
  (4) B=1 streamed p50 / bare in-process step p50;                                        <= 1.6
  (5), (6) ONNX vs PyTorch step, and step latency during a hot swap: see serve_swap.py
      (`--parts onnx swap` runs only those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
from polyskill_client.tensors import encode_observation

from .serve_swap import TARGET_ONNX_B1, onnx_vs_torch, swap_latency

MODELS = {
    "default": {},
    "small": dict(num_layers=2, d_model=128, num_heads=4, d_ff=512),
}
TARGETS = {"latency_ratio_p50": 1.3, "latency_ratio_p99": 1.3, "cache_speedup": 50.0,
           "throughput_vs_bare": 0.7, "throughput_vs_unbatched": 10.0, "b1_vs_bare_step": 1.6}


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))  # ms


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- processes ----------------------------------------------------------------------------------
class Proc:
    """A server subprocess that prints 'listening on HOST:PORT' once ready."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.p = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        line = self.p.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"server did not start: {args}")
        self.address = line.split()[-1]

    def cpu(self) -> float:
        return _cpu_of(self.p.pid)

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(20)


def echo_server() -> None:
    """A bare PolicyService whose ActStream answers every request with a constant action."""
    class Echo(pb_grpc.PolicyServiceServicer):
        async def ActStream(self, request_iterator, context):  # noqa: N802
            resp = pb.ActResponse(action=pb.Tensor(dtype="int64", data=bytes(8)))
            async for _ in request_iterator:
                yield resp

    async def run() -> None:
        server = grpc.aio.server()
        pb_grpc.add_PolicyServiceServicer_to_server(Echo(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"echo listening on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(run())


# ---- bare model ---------------------------------------------------------------------------------
def bare_model(ckpt: str, batch: int, steps: int, start: int = 0) -> list[float]:
    """Seconds per Policy.step for `batch` slots, in this process (1 thread)."""
    from polyskill.agent.checkpoint import load_network
    from polyskill.agent.policy import Policy, StepInputs

    policy = Policy(load_network(ckpt), batch)
    rng = np.random.default_rng(0)
    times = []
    for t in range(start, start + steps):
        inputs = StepInputs(obs={"obs": rng.normal(size=(batch, 4)).astype(np.float32)},
                            prev_action=np.zeros(batch, np.int64),
                            prev_reward=np.zeros(batch, np.float32),
                            new_episode=np.zeros(batch, bool), positions=np.full(batch, t),
                            slot_ids=np.arange(batch), starts=np.zeros(batch, np.int64))
        t0 = time.perf_counter()
        params = policy.step(inputs)
        params.select(np.zeros(batch, bool), [rng] * batch)
        times.append(time.perf_counter() - t0)
    return times


def cache_vs_recompute(ckpt: str, context: int, reps: int) -> dict[str, float]:
    """(2): one cached step at a full 512 window vs a full forward over the 512-step context."""
    import torch

    from polyskill.agent.checkpoint import load_network

    cached = float(np.median(bare_model(ckpt, 1, reps, start=context + 10)))
    net = load_network(ckpt).eval()
    T = context
    obs = {"obs": torch.randn(1, T, 4)}
    args = (obs, torch.zeros(1, T, dtype=torch.long), torch.zeros(1, T),
            torch.zeros(1, T, dtype=torch.bool), torch.arange(T)[None])
    full = []
    with torch.inference_mode():
        for _ in range(max(3, reps // 20)):
            t0 = time.perf_counter()
            net.actor(net.features(*args)[:, -1:])
            full.append(time.perf_counter() - t0)
    recompute = float(np.median(full))
    return {"cached_step_ms": cached * 1e3, "recompute_ms": recompute * 1e3,
            "cache_speedup": recompute / cached}


# ---- gRPC load ----------------------------------------------------------------------------------
async def stream_latency(address: str, steps: int, open_session: bool = True) -> list[float]:
    """(1)/(4): one session, one ActStream, request -> response round trips (seconds)."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = pb_grpc.PolicyServiceStub(channel)
        sid = "echo"
        if open_session:
            sid = (await client.OpenSession(pb.OpenSessionRequest(deterministic=True))).session_id
        call = client.ActStream()
        obs = encode_observation(np.zeros(4, np.float32))
        times = []
        for _ in range(steps + 50):
            t0 = time.perf_counter()
            await call.write(pb.ActRequest(session_id=sid, observation=obs, reward=1.0))
            await call.read()
            times.append(time.perf_counter() - t0)
        await call.done_writing()
        if open_session:
            await client.CloseSession(pb.CloseSessionRequest(session_id=sid))
        return times[50:]


async def throughput(address: str, sessions: int, seconds: float) -> float:
    """(3): `sessions` concurrent ActStreams stepping as fast as answers come; steps/s."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = pb_grpc.PolicyServiceStub(channel)
        obs = encode_observation(np.zeros(4, np.float32))
        stop_at = [0.0]
        counts = []

        async def one() -> None:
            sid = (await client.OpenSession(pb.OpenSessionRequest())).session_id
            call, n = client.ActStream(), 0
            req = pb.ActRequest(session_id=sid, observation=obs, reward=1.0)
            await call.write(req)
            await call.read()  # warm
            await ready.wait()
            while time.perf_counter() < stop_at[0]:
                await call.write(req)
                await call.read()
                n += 1
            await call.done_writing()
            counts.append(n)

        ready = asyncio.Event()
        tasks = [asyncio.create_task(one()) for _ in range(sessions)]
        await asyncio.sleep(1.0 + sessions * 0.004)
        start = time.perf_counter()
        stop_at[0] = start + seconds
        ready.set()
        await asyncio.gather(*tasks)
        return sum(counts) / (time.perf_counter() - start)


def bench_model(name: str, ckpt: str, ckpt512: str, quick: bool) -> dict[str, object]:
    steps, secs, sessions = (200, 1.5, 256) if quick else (1000, 4.0, 256)
    out: dict[str, object] = {"model": name}
    bare1 = bare_model(ckpt, 1, steps)
    bare256 = float(np.median(bare_model(ckpt, sessions, max(10, steps // 20))))
    out["bare_step_ms"] = {"p50": _pct(bare1, 50), "p99": _pct(bare1, 99)}
    out["bare_b256_step_ms"] = bare256 * 1e3

    echo = Proc(["polyskill.benchmarks.serve", "--echo-server"])
    echo_t = asyncio.run(stream_latency(echo.address, steps, open_session=False))
    echo.stop()
    out["echo_rtt_ms"] = {"p50": _pct(echo_t, 50), "p99": _pct(echo_t, 99)}

    env = {"POLYSKILL_MAX_SESSIONS": str(sessions)}
    srv = Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0"], env)
    served = asyncio.run(stream_latency(srv.address, steps))
    out["served_b1_ms"] = {"p50": _pct(served, 50), "p99": _pct(served, 99)}
    cpu0, client0 = srv.cpu(), time.process_time()
    tput = asyncio.run(throughput(srv.address, sessions, secs))
    out["cpu_s"] = {"server": srv.cpu() - cpu0, "load_generator": time.process_time() - client0}
    srv.stop()
    unb = Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0",
                "--max-batch-size", "1"], env)
    tput_unbatched = asyncio.run(throughput(unb.address, sessions, secs))
    unb.stop()
    out["throughput_steps_s"] = {"served_256": tput, "bare_b256": sessions / bare256,
                                 "unbatched_server_256": tput_unbatched}
    out.update(cache_vs_recompute(ckpt512, 512, 100 if quick else 300))
    b = out["bare_step_ms"]
    e = out["echo_rtt_ms"]
    s = out["served_b1_ms"]
    out["ratios"] = {
        "latency_ratio_p50": s["p50"] / (e["p50"] + b["p50"]),
        "latency_ratio_p99": s["p99"] / (e["p99"] + b["p99"]),
        "cache_speedup": out["cache_speedup"],
        "throughput_vs_bare": tput / (sessions / bare256),
        "throughput_vs_unbatched": tput / tput_unbatched,
        "b1_vs_bare_step": s["p50"] / b["p50"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_serve.json", help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--parts", nargs="+", default=["grpc", "onnx", "swap"],
                        choices=["grpc", "onnx", "swap"], help="which measurements to run")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        echo_server()
        return 0
    import gymnasium as gym
    import torch

    from polyskill.server.testing import make_checkpoint

    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    results = {"machine": {"cpus": os.cpu_count(), "torch_threads": 1}, "targets": TARGETS,
               "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            cfg = MODELS[name]
            ckpt = make_checkpoint(f"{tmp}/{name}", env.observation_space, env.action_space, **cfg)
            ckpt512 = make_checkpoint(f"{tmp}/{name}512", env.observation_space, env.action_space,
                                      **{**cfg, "context_length": 512})
            if "grpc" in args.parts:
                results["models"].append(bench_model(name, ckpt, ckpt512, args.quick))
            if "onnx" in args.parts:
                results.setdefault("onnx", {})[name] = r = onnx_vs_torch(
                    ckpt, 200 if args.quick else 1000)
                ok = r["onnx_over_torch_b1"] <= TARGET_ONNX_B1
                print(f"{name:8s} ONNX/torch step B=1 {r['onnx_b1_ms']:.3f}/{r['torch_b1_ms']:.3f}"
                      f" ms = {r['onnx_over_torch_b1']:.2f} (target {TARGET_ONNX_B1}) "
                      f"{'ok' if ok else 'MISS'}; B=64 {r['onnx_b64_ms']:.3f}/"
                      f"{r['torch_b64_ms']:.3f} ms = {r['onnx_over_torch_b64']:.2f}")
            if "swap" in args.parts:
                other = make_checkpoint(f"{tmp}/{name}-v2", env.observation_space,
                                        env.action_space, seed=1, **cfg)
                results.setdefault("swap", {})[name] = r = swap_latency(
                    {1: ckpt, 2: other}, 2.0 if args.quick else 5.0)
                print(f"{name:8s} swap: step p99 {r['swap_p99_ms']:.2f} ms during vs "
                      f"{r['steady_p99_ms']:.2f} ms steady (p50 {r['swap_p50_ms']:.2f} vs "
                      f"{r['steady_p50_ms']:.2f}; {r['sessions']} sessions)")
    print(f"{'model':8s} " + " ".join(f"{k:>24s}" for k in TARGETS))
    for r in results["models"]:
        cells = []
        for k, target in TARGETS.items():
            v = r["ratios"][k]
            ok = v <= target if k.startswith(("latency", "b1")) else v >= target
            cells.append(f"{v:>9.2f} (target {target:g}) {'ok' if ok else 'MISS':>4s}")
        print(f"{r['model']:8s} " + " ".join(f"{c:>24s}" for c in cells))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
