"""`bench serve --parts wakeup`: what a CPU wake-up latency request does to B=1 serving, measured
as an interleaved A/B in one run.

Each round measures both settings, in alternating order: host defaults ("off"), and idle CPUs
polling ("poll": a PM QoS request of 0 us, polyskill_client/cpu_latency.py, taken before the half
and dropped after it). In each half, per backend: the gRPC echo round trip, the bare model step
and the served B=1 step, so every ratio compares numbers from the same half of the same round.
Needs write access to /dev/cpu_dma_latency; where the request is refused the part says why and
measures nothing.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from polyskill_client.cpu_latency import CpuLatencyRequest

from .bare_model import bare_model
from .serve import Proc, stream_latency

SETTINGS = ("off", "poll")


def wakeup_ab(ckpt: str, backends: list[str], rounds: int, steps: int) -> dict[str, object]:
    """Per backend and setting: echo, bare and served B=1 p50 (ms), (1) and (4) per round."""
    try:
        CpuLatencyRequest(0).close()
    except OSError as e:
        return {"skipped": str(e)}
    echo = Proc(["polyskill.benchmarks.serve", "--echo-server"])
    servers = {kind: Proc(["polyskill.server.app", "--checkpoint", ckpt, "--port", "0",
                           "--backend", kind]) for kind in backends}
    ms = {kind: {s: {"echo": [], "bare": [], "served": []} for s in SETTINGS} for kind in backends}
    try:
        for r in range(rounds):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                hold = CpuLatencyRequest(0) if setting == "poll" else contextlib.nullcontext()
                with hold:
                    for kind in backends:
                        m = ms[kind][setting]
                        m["echo"].append(_p50(asyncio.run(
                            stream_latency(echo.address, steps, open_session=False))))
                        m["bare"].append(_p50(bare_model(ckpt, 1, steps, backend=kind)))
                        m["served"].append(_p50(asyncio.run(
                            stream_latency(servers[kind].address, steps))))
    finally:
        for proc in (echo, *servers.values()):
            proc.stop()
    return {kind: {s: _summary(ms[kind][s]) for s in SETTINGS} for kind in backends}


def _p50(seconds: list[float]) -> float:
    return float(np.median(seconds)) * 1e3


def _summary(m: dict[str, list[float]]) -> dict[str, object]:
    echo, bare, served = (np.asarray(m[k]) for k in ("echo", "bare", "served"))
    latency = served / (echo + bare)  # (1) per round
    b1 = served / bare  # (4) per round
    return {"echo_ms": float(np.median(echo)), "bare_ms": float(np.median(bare)),
            "served_ms": float(np.median(served)),
            "latency_ratio_p50": float(np.median(latency)),
            "b1_vs_bare_step": float(np.median(b1)),
            "rounds": {"latency_ratio_p50": latency.tolist(), "b1_vs_bare_step": b1.tolist()}}


def print_table(name: str, result: dict[str, object]) -> None:
    if "skipped" in result:
        print(f"{name:8s} wakeup: skipped ({result['skipped']})")
        return
    for kind, r in result.items():
        off, poll = r["off"], r["poll"]
        print(f"{name + '/' + kind:14s} wakeup off -> poll: echo {off['echo_ms']:.3f} -> "
              f"{poll['echo_ms']:.3f} ms, served B=1 {off['served_ms']:.3f} -> "
              f"{poll['served_ms']:.3f} ms, (1) {off['latency_ratio_p50']:.2f} -> "
              f"{poll['latency_ratio_p50']:.2f}, (4) {off['b1_vs_bare_step']:.2f} -> "
              f"{poll['b1_vs_bare_step']:.2f}")
