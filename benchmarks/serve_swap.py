"""Serving benchmarks of the model lifecycle, part of `polyskill bench serve`:

  (5) ONNX Runtime step vs PyTorch step, in process, 1 thread, B=1 and B=64 (cache half full);
      target: ONNX <= 0.5x PyTorch at B=1 on CPU.
  (6) hot swap: streamed step latency p99 of 16 sessions while the followed alias moves and the
      new version loads beside the old one, vs the same sessions in steady state.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection

import numpy as np

TARGET_ONNX_B1 = 0.5


def _step_inputs(B: int, position: int, rng: np.random.Generator):
    from polyskill.agent.policy import StepInputs

    return StepInputs(obs={"obs": rng.normal(size=(B, 4)).astype(np.float32)},
                      prev_action=np.zeros(B, np.int64), prev_reward=np.zeros(B, np.float32),
                      new_episode=np.zeros(B, bool), positions=np.full(B, position),
                      slot_ids=np.arange(B), starts=np.zeros(B, np.int64))


def onnx_vs_torch(ckpt: str, steps: int) -> dict[str, float]:
    """Median ms per backend step (sampling excluded) at B=1 and B=64."""
    from polyskill.agent.export_onnx import export_checkpoint
    from polyskill.server.models import load_backend

    t0 = time.perf_counter()
    export_checkpoint(ckpt)
    out: dict[str, float] = {"export_s": time.perf_counter() - t0}
    for B in (1, 64):
        for kind in ("torch", "onnx"):
            backend = load_backend(kind, ckpt, 64, "cpu")
            rng = np.random.default_rng(0)
            times = []
            for t in range(steps):
                inputs = _step_inputs(B, t % 40, rng)  # positions 0..39 of a 64 window
                start = time.perf_counter()
                backend.step(inputs)
                times.append(time.perf_counter() - start)
            out[f"{kind}_b{B}_ms"] = float(np.median(times[10:]) * 1e3)
        out[f"onnx_over_torch_b{B}"] = out[f"onnx_b{B}_ms"] / out[f"torch_b{B}_ms"]
    return out


class _Source:
    follow = True

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths, self.current = paths, 1

    def poll(self, num_slots: int, device: str, loaded: Collection[int] = ()):
        from polyskill.server.models import DEFAULT_ALIAS, LoadedModel, load_backend

        v = self.current
        new = [] if v in loaded else [LoadedModel("bench", v, load_backend(
            "torch", self.paths[v], num_slots, device))]
        return new, {DEFAULT_ALIAS: v}


def swap_latency(paths: dict[int, str], seconds: float, sessions: int = 16) -> dict[str, float]:
    """p50/p99 streamed step latency (ms): steady state, then while the alias moves."""
    import grpc

    from polyskill.server.config import ServerConfig
    from polyskill.server.models import ModelStore
    from polyskill.server.testing import ServerThread
    from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
    from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
    from polyskill_client.tensors import encode_observation

    source = _Source(paths)
    store = ModelStore(source=source)
    store.apply(source, sessions * 2, "cpu")
    config = ServerConfig(port=0, max_sessions=sessions * 2, poll_s=0.2)
    samples: list[tuple[float, float]] = []  # (end time, latency)

    async def drive(address: str, stop_at: float) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            client = pb_grpc.PolicyServiceStub(channel)
            obs = encode_observation(np.zeros(4, np.float32))

            async def one() -> None:
                sid = (await client.OpenSession(pb.OpenSessionRequest())).session_id
                call = client.ActStream()
                while time.perf_counter() < stop_at:
                    t0 = time.perf_counter()
                    await call.write(pb.ActRequest(session_id=sid, observation=obs, reward=1.0))
                    await call.read()
                    samples.append((time.perf_counter(), time.perf_counter() - t0))
                    await asyncio.sleep(0.005)
                await call.done_writing()

            await asyncio.gather(*(one() for _ in range(sessions)))

    with ServerThread(config, store) as srv:
        t_start = time.perf_counter()
        swap_at = t_start + seconds
        def trigger() -> None:
            time.sleep(max(0.0, swap_at - time.perf_counter()))
            source.current = 2

        threading.Thread(target=trigger, daemon=True).start()
        asyncio.run(drive(srv.address, swap_at + seconds))
        swapped = bool(srv.server.engine.follower.swaps)
    # The swap window: the alias moves at swap_at; within one poll (0.2 s) the new version is
    # downloaded (here: read), built and warmed up in a worker thread beside the old one.
    steady = [lat for t, lat in samples if t_start + 0.5 < t < swap_at]
    during = [lat for t, lat in samples if swap_at <= t <= swap_at + 1.0]

    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")

    return {"steady_p50_ms": pct(steady, 50), "steady_p99_ms": pct(steady, 99),
            "swap_p50_ms": pct(during, 50), "swap_p99_ms": pct(during, 99),
            "swap_window_s": 1.0, "sessions": sessions, "swapped": swapped}
