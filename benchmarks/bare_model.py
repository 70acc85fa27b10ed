"""The bare model, timed in this process: the baseline every serving ratio is measured against.

    python -c "from polyskill.benchmarks.bare_model import bare_model"

No gRPC and no serving code here (only a backend and its action sampling), so `bench serve` and
`bench gpu` share it and it imports where the gRPC stack is not installed (a GPU machine).
Observations are CartPole-sized (4 floats), as in both benchmarks.
"""

from __future__ import annotations

import time

import numpy as np


def step_inputs(batch: int, t: int, rng: np.random.Generator):
    """One step of `batch` sessions in slots 0..batch-1 at position `t`."""
    from polyskill.agent.policy import StepInputs

    return StepInputs(obs={"obs": rng.normal(size=(batch, 4)).astype(np.float32)},
                      prev_action=np.zeros(batch, np.int64),
                      prev_reward=np.zeros(batch, np.float32),
                      new_episode=np.zeros(batch, bool), positions=np.full(batch, t),
                      slot_ids=np.arange(batch), starts=np.zeros(batch, np.int64))


def bare_model(ckpt: str, batch: int, steps: int, start: int = 0, backend: str = "torch",
               idle_s: float = 0.0, device: str = "cpu") -> list[float]:
    """Seconds per backend step + action sampling for `batch` slots, in this process, 1 thread.

    The same work the server's model pass does per batch (backend.step + ActionParams.select with
    one Generator per session), minus all serving: the bare-model baseline of (1)-(4).
    `idle_s` > 0 sleeps that long before each step, as a served B=1 step idles while its answer
    and the next request cross the network (a diagnostic: the CPU goes cold in the gap).
    On a GPU each step's result is copied to numpy, so the clock includes the device's work.
    """
    from polyskill.server.models import load_backend

    model = load_backend(backend, ckpt, batch, device)
    rng = np.random.default_rng(0)
    rngs = [np.random.default_rng(i) for i in range(batch)]
    times = []
    for t in range(start, start + steps):
        inputs = step_inputs(batch, t, rng)
        if idle_s:
            time.sleep(idle_s)
        t0 = time.perf_counter()
        model.step(inputs).select(np.zeros(batch, bool), rngs)
        times.append(time.perf_counter() - t0)
    return times


def cache_vs_recompute(ckpt: str, context: int, reps: int, backends: list[str],
                       device: str = "cpu") -> dict[str, float]:
    """(2): one cached step with a full 512-step window vs a torch forward over the whole 512-step
    context (what a cache-less server must do per step); the cached step per backend."""
    import torch

    from polyskill.agent.checkpoint import load_network

    net = load_network(ckpt, device).eval()
    T = context
    obs = {"obs": torch.randn(1, T, 4, device=device)}
    args = (obs, torch.zeros(1, T, dtype=torch.long, device=device),
            torch.zeros(1, T, device=device), torch.zeros(1, T, dtype=torch.bool, device=device),
            torch.arange(T, device=device)[None])
    full = []
    with torch.inference_mode():
        for _ in range(max(5, reps // 20)):
            t0 = time.perf_counter()
            net.actor(net.features(*args)[:, -1:]).probs.cpu()  # (1, 1, n): waits for the device
            full.append(time.perf_counter() - t0)
    out = {"recompute_torch_ms": float(np.median(full)) * 1e3}
    for kind in backends:
        # steps context..context+reps: the ring is full, every step attends over 512 entries
        cached = float(np.median(bare_model(ckpt, 1, context + reps, backend=kind,
                                            device=device)[context:]))
        out[f"cached_step_{kind}_ms"] = cached * 1e3
        out[f"cache_speedup_{kind}"] = out["recompute_torch_ms"] / (cached * 1e3)
    return out
