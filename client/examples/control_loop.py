"""A fixed-rate control loop (e.g. 100 Hz) around a Polyskill session, for robot controllers.

The loop owns the clock, never the network: each tick reads the sensors, hands the observation to
a worker thread that calls the server, and waits for the answer only until the tick's deadline
(`deadline_fraction` of the period). If the answer is late the tick is a *missed deadline* and the
loop applies the last action (for at most `hold_s`) or else the safe action, then keeps its
schedule; the late answer is applied on the next tick. When the server is down (errors), the safe
action is applied and the worker retries on the next tick. `LoopReport` counts all of it.

    python client/examples/control_loop.py --server localhost:50051 --rate 100 --seconds 5

NOTE: the server records the action it returned as the session's previous action; on ticks that
hold an older (or the safe) action, the executed action differs from the one in the context.
Keep misses rare (a rate the server sustains) so the agent's context stays faithful.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Policy = Callable[[Any], Any]  # observation -> action (e.g. session.step)


@dataclass
class LoopReport:
    rate_hz: float
    ticks: int = 0
    duration_s: float = 0.0
    achieved_hz: float = 0.0
    fresh: int = 0
    """Ticks that applied an action computed for that tick's observation, within the deadline."""
    late: int = 0
    """Ticks that applied an answer that arrived after its own tick's deadline."""
    missed_deadlines: int = 0
    """Ticks with no new answer by the deadline (held the last action or the safe one)."""
    held: int = 0
    """Missed ticks that re-applied the last action (it was younger than hold_s)."""
    safe: int = 0
    """Ticks that applied the safe action (server error, down, or held too long)."""
    errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    overruns: int = 0
    """Tick slots skipped because the loop itself fell more than a period behind."""
    stalls: int = 0
    """Times the loop fell behind (each skips one or more slots): the host or the GIL stalled it,
    never the network. A few on a shared machine are normal; many mean the rate is too high."""
    jitter_ms: dict[str, float] = field(default_factory=dict)
    """Tick start minus scheduled start: p50, p99, max."""
    policy_latency_ms: dict[str, float] = field(default_factory=dict)
    """Observation sent -> action back, for answered calls: p50, p99, max."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {}
    ms = np.asarray(values_s) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max())}


class ControlLoop:
    """Run `policy` at a fixed rate without ever letting it stall the loop."""

    def __init__(self, policy: Policy, *, rate_hz: float = 100.0, safe_action: Any,
                 hold_s: float = 0.1, deadline_fraction: float = 0.8) -> None:
        if rate_hz <= 0 or not 0 < deadline_fraction <= 1 or hold_s < 0:
            raise ValueError("need rate_hz > 0, 0 < deadline_fraction <= 1, hold_s >= 0")
        self.policy = policy
        self.period = 1.0 / rate_hz
        self.rate_hz = rate_hz
        self.safe_action = safe_action
        self.hold_s = hold_s
        self.deadline_fraction = deadline_fraction

    def _timed(self, obs: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        action = self.policy(obs)
        return action, time.perf_counter() - started

    def run(self, read_sensors: Callable[[], Any], apply_action: Callable[[Any, str], None], *,
            ticks: int | None = None, duration_s: float | None = None,
            stop: threading.Event | None = None) -> LoopReport:
        """Tick until `ticks` ticks, `duration_s` seconds or `stop` is set. `apply_action(action,
        status)` gets status "fresh", "late", "held" or "safe" on every tick."""
        if ticks is None and duration_s is None and stop is None:
            raise ValueError("give ticks, duration_s or stop")
        report = LoopReport(rate_hz=self.rate_hz)
        jitter: list[float] = []
        latencies: list[float] = []
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-policy")
        pending: Future | None = None
        pending_tick = -1
        last_action, last_ok = None, -float("inf")
        start = time.perf_counter()
        k = 0
        try:
            while True:
                scheduled = start + k * self.period
                if ticks is not None and report.ticks >= ticks:
                    break
                if duration_s is not None and scheduled - start >= duration_s:
                    break
                if stop is not None and stop.is_set():
                    break
                now = time.perf_counter()
                if now < scheduled:
                    time.sleep(scheduled - now)
                    now = time.perf_counter()
                elif now - scheduled > self.period:  # fell behind: skip to the next slot
                    skipped = int((now - scheduled) // self.period)
                    report.overruns += skipped
                    report.stalls += 1
                    k += skipped
                    continue
                jitter.append(now - scheduled)

                if pending is None:
                    pending, pending_tick = worker.submit(self._timed, read_sensors()), k
                deadline = scheduled + self.deadline_fraction * self.period
                status, action = "", None
                try:
                    action, latency = pending.result(timeout=max(0.0, deadline - now))
                    latencies.append(latency)
                    status = "fresh" if pending_tick == k else "late"
                    last_action, last_ok = action, time.perf_counter()
                    pending = None
                except FutureTimeout:
                    report.missed_deadlines += 1
                    if last_action is not None and time.perf_counter() - last_ok <= self.hold_s:
                        status, action = "held", last_action
                except Exception as e:  # noqa: BLE001 - any policy failure -> safe action
                    report.errors += 1
                    name = type(e).__name__
                    report.error_types[name] = report.error_types.get(name, 0) + 1
                    pending = None
                if action is None:
                    status, action = "safe", self.safe_action
                setattr(report, status, getattr(report, status) + 1)
                apply_action(action, status)
                report.ticks += 1
                k += 1
        finally:
            worker.shutdown(wait=False, cancel_futures=True)
        report.duration_s = time.perf_counter() - start
        report.achieved_hz = report.ticks / report.duration_s if report.duration_s else 0.0
        report.jitter_ms = _stats(jitter)
        report.policy_latency_ms = _stats(latencies)
        return report


def main(argv: list[str] | None = None) -> int:
    """Drive a served policy at a fixed rate with synthetic sensors (random in the spec)."""
    from polyskill_client.cpu_latency import hold_or_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--rate", type=float, default=100.0, help="ticks per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=0.1, help="seconds to hold the last action")
    parser.add_argument("--token", default=None)
    parser.add_argument("--cpu-latency-us", type=int, default=-1,
                        help="keep CPU wake-ups under this many microseconds while running "
                        "(0 = idle CPUs poll: lower step latency, more power); -1 = off")
    args = parser.parse_args(argv)
    # NOTE: the wait for each action should not end in a slow wake-up (cpu_latency.py)
    hold = hold_or_report(args.cpu_latency_us, "control_loop: ")
    if hold is None:
        return 2
    with hold:
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The loop against the server in `args`, for `args.seconds`; prints its report."""
    from polyskill_client import NO_RETRY, PolicyClient

    # NOTE: no client-side retries and a step deadline of a few periods: the loop itself retries
    # on every tick, and a step the loop already gave up on is useless when it finally arrives.
    with PolicyClient(args.server, token=args.token, timeout=4 / args.rate,
                      retry=NO_RETRY) as client:
        session = client.open_session(reopen=True)
        spec, rng = session.model.observation_spec, np.random.default_rng(0)

        def read_sensors() -> dict[str, Any]:
            obs: dict[str, Any] = {}
            for f in spec:
                low, high = (f.low or 0.0), (f.high if f.high is not None else 1.0)
                if f.kind == "vector":
                    obs[f.name] = rng.uniform(low, high, f.shape).astype(np.float32)
                elif f.kind == "image":
                    obs[f.name] = rng.integers(0, 256, f.shape, dtype=np.uint8)
                elif f.kind == "text":
                    obs[f.name] = ""
                else:
                    obs[f.name] = np.zeros(f.shape, np.int64)
            return obs

        loop = ControlLoop(session.step, rate_hz=args.rate, hold_s=args.hold,
                           safe_action=session.model.zero_action())
        report = loop.run(read_sensors, lambda action, status: None, duration_s=args.seconds)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
