"""Continuous batching: the one owner of model execution.

Request handlers `submit` validated steps to an asyncio queue; one worker task collects the steps
that are ready (everything queued, up to `max_batch_size`), runs them as one forward pass per model
version in a single dedicated thread (so torch never runs concurrently with itself and the event
loop keeps serving I/O meanwhile), samples each session's action with that session's own
Generator, and resolves each step's future. Steps arriving while a pass runs join the next one.

Waiting: a step never waits for company when the previous pass was small (B=1 latency stays bare);
when load is high (the last pass was bigger than what is queued) the worker waits at most
`max_wait_ms` for the batch to fill to the last pass's size.

Isolation: steps are validated before they are queued; if a batched pass still fails, its steps are
retried one by one so one bad step cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from polyskill.agent.policy import StepInputs

from .backends.base import stack_observations
from .errors import Unavailable
from .models import LoadedModel
from .sessions import StepPlan

log = logging.getLogger("polyskill.server.batcher")


@dataclass
class QueuedStep:
    model: LoadedModel
    plan: StepPlan
    obs: dict[str, np.ndarray | str]
    future: asyncio.Future


class Batcher:
    def __init__(
        self, max_batch_size: int, max_wait_ms: float,
        thread_initializer: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.on_batch = on_batch  # (batch size, seconds in the model) -> metrics
        self._executor = ThreadPoolExecutor(1, "polyskill-model", initializer=thread_initializer)
        self._queue: asyncio.Queue[QueuedStep | None] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._last_size = 1
        self._closed = False

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Finish queued steps, then stop the worker and the model thread."""
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, model: LoadedModel, plan: StepPlan, obs: dict[str, np.ndarray | str],
                     timeout: float | None) -> np.ndarray:
        """The action for one validated step; raises TimeoutError after `timeout` seconds."""
        if self._closed:
            raise Unavailable("server is shutting down; reconnect to another replica")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put_nowait(QueuedStep(model, plan, obs, future))
        if timeout is None:
            return await future
        # NOTE: a timer, not asyncio.wait_for (which costs a Task per step on the hot path). An
        # expired step is skipped if not yet run; if it already ran, its result is dropped.
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def run_sync(self, fn: Callable, *args: object) -> asyncio.Future:
        """Run `fn` on the model thread (re-encoding, warm-up), in order with the batches."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- worker -------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch: list[QueuedStep] = [first]
            stop = self._drain(batch)
            target = min(self.max_batch_size, self._last_size)
            deadline = loop.time() + self.max_wait_s
            while not stop and len(batch) < target and (left := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                stop = self._drain(batch)
            self._last_size = len(batch)
            live = [s for s in batch if not s.future.done()]  # skip steps whose caller gave up
            if live:
                started = time.perf_counter()
                results = await loop.run_in_executor(self._executor, self._execute, live)
                if self.on_batch is not None:
                    self.on_batch(len(live), time.perf_counter() - started)
                for step, result in zip(live, results, strict=True):
                    if step.future.done():
                        continue
                    if isinstance(result, BaseException):
                        step.future.set_exception(result)
                    else:
                        step.future.set_result(result)
            if stop:
                return

    def _drain(self, batch: list[QueuedStep | None]) -> bool:
        """Move already-queued steps into `batch`; True if the stop sentinel was seen."""
        while len(batch) < self.max_batch_size and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return True
            batch.append(item)
        return False

    # ---- model thread -------------------------------------------------------------------------
    def _execute(self, steps: list[QueuedStep]) -> list[np.ndarray | BaseException]:
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(steps):
            groups.setdefault(s.model.version, []).append(i)
        out: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(steps)
        for indices in groups.values():
            group = [steps[i] for i in indices]
            try:
                results = _forward(group)
            except Exception:
                if len(group) == 1:
                    log.exception("model step failed", extra={"session": group[0].plan.session_id})
                    results = [RuntimeError("the model failed on this step (server bug; see the "
                                            "server log)")]
                else:  # isolate: one failing step must not fail the batch
                    results = [self._execute([s])[0] for s in group]
            for i, r in zip(indices, results, strict=True):
                out[i] = r
        return out


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _forward(steps: list[QueuedStep]) -> list[np.ndarray]:
    """One batched forward pass for steps of one model version, then per-session sampling."""
    backend = steps[0].model.backend
    plans = [s.plan for s in steps]
    inputs = StepInputs(
        obs=stack_observations(backend.obs_spec, [s.obs for s in steps]),  # field -> (B, ...)
        prev_action=np.stack([p.prev_action for p in plans]),  # (B,) or (B, dim)
        prev_reward=np.array([p.prev_reward for p in plans], dtype=np.float32),  # (B,)
        new_episode=np.array([p.new_episode for p in plans], dtype=bool),  # (B,)
        positions=np.array([p.position for p in plans], dtype=np.int64),  # (B,)
        slot_ids=np.array([p.slot for p in plans], dtype=np.int64),  # (B,)
        starts=np.array([p.start for p in plans], dtype=np.int64),  # (B,)
    )
    params = backend.step(inputs)
    actions = params.select(np.array([p.deterministic for p in plans]), [p.rng for p in plans])
    return [np.asarray(a) for a in actions]  # B x (() int64 | (dim,) float32)
