"""Serving benchmark (`polyskill bench serve`): latency and throughput ratios measured in one run.

    python -m polyskill.benchmarks.serve --out runs/bench_serve.json [--quick]

For the default network and a small one (2 layers, d_model 128, 4 heads, d_ff 512), CartPole-sized
observations. The server runs in its own process (`python -m polyskill.server.app`); the load
generator runs here and its CPU time is reported next to the server's (both share the machine).
  (1) B=1 streamed step latency p50/p99 / (bare gRPC echo round trip + bare model step); <= 1.3
  (2) cached step vs recomputing the whole 512-step context;                              >= 50x
  (3) throughput, 256 streamed sessions / bare batched model at B=256;                    >= 0.7
      and / the unbatched server (max_batch_size 1);                                      >= 10x
      also with the 256 sessions stepped through ActBatchStream (2 streams of 128 sessions)
  (4) B=1 streamed p50 / bare in-process step p50;                                        <= 1.6
  (5), (6) ONNX vs PyTorch step, and step latency during a hot swap: see serve_swap.py
      (`--parts onnx swap` runs only those).
  `--parts wakeup`: (1) and (4) with and without idle CPUs polling, interleaved (serve_wakeup.py).
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
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import numpy as np

from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
from polyskill_client.tensors import encode_observation

from .bare_model import bare_model, cache_vs_recompute
from .machine import describe
from .serve_swap import TARGET_ONNX_B1, onnx_vs_torch, swap_latency

MODELS = {
    "default": {},
    "small": dict(num_layers=2, d_model=128, num_heads=4, d_ff=512),
}
TARGETS = {"latency_ratio_p50": 1.3, "latency_ratio_p99": 1.3, "cache_speedup": 50.0,
           "throughput_vs_bare": 0.7, "throughput_vs_unbatched": 10.0, "b1_vs_bare_step": 1.6}


BATCH_STREAMS = 2
BARE_256_STEPS, BARE_256_START = 30, 100
"""Bare B=256 baseline: 30 steps from position 100, so the KV window is full and slides, as in
a served session that has run for a while (from position 0 it measured the same within noise)."""
"""(3) with ActBatch: 256 sessions in two streams of 128, so one request's Python work overlaps
the other's forward pass (GIL released inside torch / ONNX Runtime)."""


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))  # ms


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (a --model-process worker)
    (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += _cpu_of(int(child))
            except FileNotFoundError:  # exited meanwhile
                pass
    return total


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


async def _drive(address: str, sessions: int, seconds: float, open_session: bool,
                 server_pid: int) -> dict[str, float]:
    """`sessions` concurrent ActStreams stepping as fast as answers come, for `seconds`."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = pb_grpc.PolicyServiceStub(channel)
        obs = encode_observation(np.zeros(4, np.float32))
        running = [True]
        counts: list[int] = []

        async def one() -> None:
            sid = "echo"
            if open_session:
                sid = (await client.OpenSession(pb.OpenSessionRequest())).session_id
            call, n = client.ActStream(), 0
            req = pb.ActRequest(session_id=sid, observation=obs, reward=1.0)
            write, read = call.write, call.read
            await write(req)
            await read()  # warm
            await ready.wait()
            while running[0]:  # NOTE: a flag, not a clock read per step: the generator is lean
                await write(req)
                await read()
                n += 1
            await call.done_writing()
            if open_session:
                await client.CloseSession(pb.CloseSessionRequest(session_id=sid))
            counts.append(n)

        ready = asyncio.Event()
        tasks = [asyncio.create_task(one()) for _ in range(sessions)]
        # each stream finishes the step it had in flight: <= sessions extra steps
        return await _window(tasks, ready, running, counts, 1.0 + sessions * 0.004, seconds,
                             server_pid)


async def _window(tasks: list[asyncio.Task], ready: asyncio.Event, running: list[bool],
                  counts: list[int], warmup: float, seconds: float, server_pid: int
                  ) -> dict[str, float]:
    """Let the drivers warm up, count `seconds` of steps, stop them; rates and CPU per step."""
    await asyncio.sleep(warmup)
    server0, cpu0, start = _cpu_of(server_pid), time.process_time(), time.perf_counter()
    ready.set()
    await asyncio.sleep(seconds)
    running[0] = False
    wall = time.perf_counter() - start
    cpu, server = time.process_time() - cpu0, _cpu_of(server_pid) - server0
    await asyncio.gather(*tasks)
    steps = sum(counts)
    return {"steps_s": steps / wall, "load_generator_cpu_cores": cpu / wall,
            "server_cpu_cores": server / wall,
            "server_cpu_us_per_step": server / max(steps, 1) * 1e6,
            "load_generator_cpu_us_per_step": cpu / max(steps, 1) * 1e6}


async def _drive_batches(address: str, sessions: int, seconds: float, streams: int,
                         server_pid: int) -> dict[str, float]:
    """`sessions` sessions stepped through `streams` concurrent ActBatchStreams (a vectorised
    simulator with `streams` workers), each request one step of its share of the sessions."""
    async with grpc.aio.insecure_channel(address) as channel:
        client = pb_grpc.PolicyServiceStub(channel)
        ids = [(await client.OpenSession(pb.OpenSessionRequest())).session_id
               for _ in range(sessions)]
        running, counts = [True], []

        async def one(group: list[str]) -> None:
            req = pb.ActBatchRequest(
                session_ids=group, rewards=[1.0] * len(group),
                observations=encode_observation(np.zeros((len(group), 4), np.float32)))
            call, n = client.ActBatchStream(), 0
            await call.write(req)
            await call.read()  # warm
            await ready.wait()
            while running[0]:
                await call.write(req)
                await call.read()
                n += len(group)
            await call.done_writing()
            counts.append(n)

        ready = asyncio.Event()
        tasks = [asyncio.create_task(one(ids[i::streams])) for i in range(streams)]
        result = await _window(tasks, ready, running, counts, 1.0, seconds, server_pid)
        for sid in ids:
            await client.CloseSession(pb.CloseSessionRequest(session_id=sid))
        return {**result, "streams": streams}


def throughput(address: str, server_pid: int, sessions: int, seconds: float,
               open_session: bool = True, batch_streams: int = 0) -> dict[str, float]:
    """(3): the load generator in its own process (so its CPU is its own and reported).
    batch_streams > 0: the sessions step through that many ActBatchStreams instead of one
    ActStream each."""
    cmd = [sys.executable, "-m", "polyskill.benchmarks.serve", "--load-gen", address,
           str(server_pid), str(sessions), str(seconds), "1" if open_session else "0",
           str(batch_streams)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine_throughput(ckpt: str, kind: str, sessions: int, seconds: float, streams: int
                      ) -> dict[str, float]:
    """Steps/s of the ActBatch load (same shape: `streams` closed-loop requests of
    sessions/streams steps) sent to the serving Engine in this process, without gRPC: a
    diagnostic that splits (3)'s gap between the engine (sessions, batcher, model pass, sampling)
    and the gRPC layer (framing, protobuf, the load generator's process)."""
    from polyskill.server.app import create_server
    from polyskill.server.config import ServerConfig

    async def run() -> float:
        config = ServerConfig(checkpoint=ckpt, port=0, host="127.0.0.1", backend=kind,
                              max_sessions=sessions)
        server, _ = create_server(config)  # bound, never started: only its engine is used
        engine = server.engine
        engine.start()
        ids = [engine.open_session("", False, i + 1, {})[0].session_id for i in range(sessions)]
        groups = [ids[i::streams] for i in range(streams)]
        obs = {"obs": np.zeros((len(groups[0]), 4), np.float32)}
        done, running = [0], [True]

        async def one(group: list[str]) -> None:
            rewards, flags = [1.0] * len(group), [False] * len(group)
            while running[0]:
                await engine.act_batch(group, obs, rewards, flags, 10.0)
                done[0] += len(group)

        tasks = [asyncio.create_task(one(g)) for g in groups]
        await asyncio.sleep(1.0)  # warm-up
        start_steps, t0 = done[0], time.perf_counter()
        await asyncio.sleep(seconds)
        rate = (done[0] - start_steps) / (time.perf_counter() - t0)
        running[0] = False
        await asyncio.gather(*tasks)
        await engine.stop()
        return rate

    return {"steps_s": asyncio.run(run())}


def _median_round(rounds: list[dict[str, float]]) -> dict[str, object]:
    """The round whose ratio to bare is the median, with every round's ratio beside it."""
    ranked = sorted(rounds, key=lambda r: r["vs_bare"])
    return {**ranked[len(ranked) // 2], "rounds_vs_bare": [r["vs_bare"] for r in rounds]}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values)), "n": len(values)}


def available_backends(name: str, *ckpts: str) -> list[str]:
    """torch, and onnx where the checkpoints export (ONNX is optional: torch alone otherwise)."""
    try:
        from polyskill.agent.export_onnx import export_checkpoint

        for ckpt in ckpts:
            export_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 - report torch alone, say why
        print(f"{name}: ONNX backend unavailable ({e}); torch only", file=sys.stderr)
        return ["torch"]
    return ["torch", "onnx"]


def bench_model(name: str, ckpt: str, ckpt512: str, quick: bool) -> dict[str, object]:
    """(1)-(4) for one model, per backend (torch, and onnx when ONNX Runtime imports).

    Noise: the machine is shared, so the B=1 measurements run in `rounds` interleaved rounds
    (echo, then each server) and every ratio is reported per round (median, min, max).
    """
    from polyskill.malloc import keep_large_blocks

    keep_large_blocks()  # the server's allocator settings, so that the bare baselines get them too
    steps, secs, sessions, rounds = (300, 1.5, 256, 2) if quick else (1000, 3.0, 256, 3)
    backends = available_backends(name, ckpt, ckpt512)
    out: dict[str, object] = {"model": name, "backends": backends, "rounds": rounds,
                              "baselines": BASELINES}
    env = {"POLYSKILL_MAX_SESSIONS": str(sessions)}
    echo = Proc(["polyskill.benchmarks.serve", "--echo-server"])
    servers = {kind: Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0",
                           "--backend", kind], env) for kind in backends}
    lat: dict[str, list[list[float]]] = {k: [] for k in ["echo", *backends]}
    bare: dict[str, list[list[float]]] = {k: [] for k in backends}
    idle: dict[str, list[list[float]]] = {k: [] for k in backends}
    for _ in range(rounds):  # interleaved so that load from other users hits all alike
        lat["echo"].append(asyncio.run(stream_latency(echo.address, steps, open_session=False)))
        gap = float(np.median(lat["echo"][-1]))
        for kind in backends:
            bare[kind].append(bare_model(ckpt, 1, steps, backend=kind))
            idle[kind].append(bare_model(ckpt, 1, steps // 2, backend=kind, idle_s=gap))
            lat[kind].append(asyncio.run(stream_latency(servers[kind].address, steps)))
    tput = {"echo": throughput(echo.address, echo.p.pid, sessions, secs, open_session=False)}
    echo.stop()

    def vs_bare(kind: str, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
        """A throughput measurement with the bare B=256 rate taken right before it: the machine's
        speed drifts within a run (bare B=256 varied 16k-31k steps/s in one run on 2026-12-03),
        so (3) is read against the bare rate of the same minute, not one taken minutes away."""
        bare = sessions / float(np.median(bare_model(ckpt, sessions, BARE_256_STEPS,
                                                     start=BARE_256_START, backend=kind)))
        result = measure()
        return {**result, "bare_b256_steps_s": bare, "vs_bare": result["steps_s"] / bare}

    for kind in backends:
        srv = servers[kind]
        tput[kind] = vs_bare(kind, partial(throughput, srv.address, srv.p.pid, sessions, secs))
        act_batch = partial(throughput, srv.address, srv.p.pid, sessions, secs,
                            batch_streams=BATCH_STREAMS)
        tput[f"{kind}_act_batch"] = _median_round([vs_bare(kind, act_batch)
                                                   for _ in range(rounds)])
        tput[f"{kind}_engine_act_batch"] = vs_bare(kind, partial(
            engine_throughput, ckpt, kind, sessions, secs, BATCH_STREAMS))
        srv.stop()
    worker = Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0",
                   "--model-process"], env)
    tput["torch_model_process"] = vs_bare("torch", partial(
        throughput, worker.address, worker.p.pid, sessions, secs))
    tput["torch_model_process_act_batch"] = vs_bare("torch", partial(
        throughput, worker.address, worker.p.pid, sessions, secs, batch_streams=BATCH_STREAMS))
    worker.stop()
    unb = Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0",
                "--max-batch-size", "1"], env)
    tput["torch_unbatched"] = throughput(unb.address, unb.p.pid, sessions, secs)
    unb.stop()
    out["echo_rtt_ms"] = {"p50": _pct(sum(lat["echo"], []), 50),
                          "p99": _pct(sum(lat["echo"], []), 99)}
    out["throughput"] = tput
    out.update(cache_vs_recompute(ckpt512, 512, 100 if quick else 300, backends))
    ratios: dict[str, dict[str, object]] = {}
    for kind in backends:
        bare256 = float(np.median(bare_model(ckpt, sessions, BARE_256_STEPS,
                                             start=BARE_256_START, backend=kind)))
        per_round: dict[str, list[float]] = {k: [] for k in ("p50", "p99", "b1", "b1_idle")}
        for e, b, s, i in zip(lat["echo"], bare[kind], lat[kind], idle[kind], strict=True):
            per_round["p50"].append(_pct(s, 50) / (_pct(e, 50) + _pct(b, 50)))
            per_round["p99"].append(_pct(s, 99) / (_pct(e, 99) + _pct(b, 99)))
            per_round["b1"].append(_pct(s, 50) / _pct(b, 50))
            per_round["b1_idle"].append(_pct(s, 50) / _pct(i, 50))
        all_b, all_s, all_i = sum(bare[kind], []), sum(lat[kind], []), sum(idle[kind], [])
        out[kind] = {
            "bare_step_ms": {"p50": _pct(all_b, 50), "p99": _pct(all_b, 99)},
            "bare_step_after_idle_gap_ms": {"p50": _pct(all_i, 50), "p99": _pct(all_i, 99)},
            "served_b1_ms": {"p50": _pct(all_s, 50), "p99": _pct(all_s, 99)},
            "bare_b256_step_ms": bare256 * 1e3,
            "bare_b256_steps_s": sessions / bare256,
            "ratio_spread": {k: _spread(v) for k, v in per_round.items()},
        }
        ratios[kind] = {
            "latency_ratio_p50": float(np.median(per_round["p50"])),
            "latency_ratio_p99": float(np.median(per_round["p99"])),
            "cache_speedup": out[f"cache_speedup_{kind}"],
            "throughput_vs_bare": tput[kind]["vs_bare"],
            "throughput_vs_unbatched": tput[kind]["steps_s"]
            / tput["torch_unbatched"]["steps_s"],
            "act_batch_throughput_vs_bare": tput[f"{kind}_act_batch"]["vs_bare"],
            "act_batch_throughput_vs_unbatched": tput[f"{kind}_act_batch"]["steps_s"]
            / tput["torch_unbatched"]["steps_s"],
            "b1_vs_bare_step": float(np.median(per_round["b1"])),
            # not targets: the share of the gRPC echo ceiling (same generator, 256 streams), and
            # (4) against a bare step that idles like a served one between steps
            "throughput_vs_echo": tput[kind]["steps_s"] / tput["echo"]["steps_s"],
            "b1_vs_bare_step_after_idle_gap": float(np.median(per_round["b1_idle"])),
            "engine_act_batch_throughput_vs_bare": tput[f"{kind}_engine_act_batch"]["vs_bare"],
        }
        if kind == "torch":  # not targets: the same two loads with --model-process
            for load in ("", "_act_batch"):
                ratios[kind][f"model_process{load}_throughput_vs_bare"] = (
                    tput[f"torch_model_process{load}"]["vs_bare"])
    out["ratios_by_backend"] = ratios
    out["ratios"] = ratios["torch"]  # the summary table's row (the default backend)
    return out


BASELINES = {
    "bare_step": "backend.step + ActionParams.select (sampling, one Generator per session) in "
                 "the benchmark process, 1 thread, slots 0..B-1, observations made in numpy, "
                 "same allocator settings as the server (polyskill/malloc.py), tight loop",
    "echo_rtt": "ActStream round trip to a grpc.aio PolicyService that answers every request "
                "with a prebuilt response (same client code, same machine)",
    "latency_ratio": "served p50 (p99) / (echo p50 (p99) + bare_step p50 (p99)), per round; "
                     "median over rounds",
    "cache_speedup": "torch forward over the whole 512-step context (actor on the last token) / "
                     "one cached step with a full 512-entry window, per backend",
    "throughput": "256 ActStreams (one per session, closed loop) from a load-generator process "
                  "on the same 2 cores; its CPU and the server's are reported per step",
    "throughput_vs_bare": "served steps/s / (256 / bare_step at B=256), same backend",
    "act_batch": "the same 256 sessions stepped through ActBatchStream requests (one step of "
                 f"every session of a group per request, {BATCH_STREAMS} concurrent streams "
                 "of 128 sessions: a vectorised simulator with two workers), measured in "
                 "`rounds` rounds; the round with the median ratio to bare is reported",
    "throughput_vs_unbatched": "served steps/s / the torch server with max_batch_size 1",
    "engine_act_batch": "the act_batch load sent to the server's Engine in the benchmark process "
                        "(no gRPC): splits (3)'s gap between the engine and the gRPC layer",
    "model_process": "the torch server with --model-process (the model in a worker process); "
                     "its CPU is counted in the server's",
    "bare_step_after_idle_gap": "bare_step with a sleep of the echo p50 before each step "
                                "(diagnostic for (4): a served B=1 step runs on a CPU that "
                                "idled while the answer and next request crossed the network)",
}


def _load_gen_main(args: list[str]) -> None:
    address, server_pid, sessions, seconds, open_session, batch_streams = args
    if int(batch_streams):
        r = asyncio.run(_drive_batches(address, int(sessions), float(seconds),
                                       int(batch_streams), int(server_pid)))
    else:
        r = asyncio.run(_drive(address, int(sessions), float(seconds), open_session == "1",
                               int(server_pid)))
    print(json.dumps(r), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_serve.json", help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--parts", nargs="+", default=["grpc", "onnx", "swap"],
                        choices=["grpc", "onnx", "swap", "wakeup"],
                        help="which measurements to run (wakeup: B=1 with and without idle CPUs "
                        "polling, interleaved; not by default, it needs /dev/cpu_dma_latency)")
    parser.add_argument("--cpu-latency-us", type=int, default=-1,
                        help="hold a CPU wake-up latency limit for the whole run, baselines "
                        "included (polyskill_client/cpu_latency.py; 0 = idle CPUs poll); -1 = off")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load-gen", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        echo_server()
        return 0
    if args.load_gen:
        _load_gen_main(args.load_gen)
        return 0
    from polyskill_client.cpu_latency import hold_or_report

    if "wakeup" in args.parts and args.cpu_latency_us != -1:
        print("bench serve: error: --parts wakeup compares runs with and without the CPU latency "
              "request; leave --cpu-latency-us off", file=sys.stderr)
        return 2
    request = hold_or_report(args.cpu_latency_us, "bench serve: error: ")
    if request is None:
        return 2
    with request:  # system-wide: every process of the run, baselines and servers alike
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import torch

    from polyskill.server.testing import make_checkpoint

    torch.set_num_threads(1)
    env = gym.make("CartPole-v1")
    results = {"machine": describe(), "targets": TARGETS, "cpu_latency_us": args.cpu_latency_us,
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
            if "wakeup" in args.parts:
                from .serve_wakeup import print_table, wakeup_ab

                results.setdefault("wakeup", {})[name] = r = wakeup_ab(
                    ckpt, available_backends(name, ckpt), *((2, 300) if args.quick else (4, 1000)))
                print_table(name, r)
            if "swap" in args.parts:
                other = make_checkpoint(f"{tmp}/{name}-v2", env.observation_space,
                                        env.action_space, seed=1, **cfg)
                results.setdefault("swap", {})[name] = r = swap_latency(
                    {1: ckpt, 2: other}, 2.0 if args.quick else 5.0)
                print(f"{name:8s} swap: step p99 {r['swap_p99_ms']:.2f} ms during vs "
                      f"{r['steady_p99_ms']:.2f} ms steady (p50 {r['swap_p50_ms']:.2f} vs "
                      f"{r['steady_p50_ms']:.2f}; {r['sessions']} sessions)")
    print(f"{'model':14s} " + " ".join(f"{k:>24s}" for k in TARGETS))
    for r in results["models"]:
        for kind, ratios in r.get("ratios_by_backend", {"torch": r["ratios"]}).items():
            cells = []
            for k, target in TARGETS.items():
                v = ratios[k]
                ok = v <= target if k.startswith(("latency", "b1")) else v >= target
                cells.append(f"{v:>9.2f} (target {target:g}) {'ok' if ok else 'MISS':>4s}")
            print(f"{r['model'] + '/' + kind:14s} " + " ".join(f"{c:>24s}" for c in cells))
            print(f"{'':14s} (3) with ActBatch: "
                  f"{ratios['act_batch_throughput_vs_bare']:.2f} of bare (target 0.7), "
                  f"{ratios['act_batch_throughput_vs_unbatched']:.1f}x unbatched (target 10)")
            if "model_process_act_batch_throughput_vs_bare" in ratios:
                print(f"{'':14s} (3) with --model-process: streams "
                      f"{ratios['model_process_throughput_vs_bare']:.2f}, ActBatch "
                      f"{ratios['model_process_act_batch_throughput_vs_bare']:.2f} of bare")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
