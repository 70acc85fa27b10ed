"""Continuous batching: the one owner of model execution.

Request handlers `submit` validated steps to a queue; one worker task collects the steps that are
ready (everything queued, up to `max_batch_size`), runs them as one forward pass per model version,
samples each session's action with that session's own Generator, and resolves each step's future.
Steps arriving while a pass runs join the next one. An ActBatch request for one model version is
queued as one block (`submit_block`): its observations arrive stacked, so it needs no queue entry,
future or restacking per session (at 256 sessions the per-step entries cost about as much Python
as the model pass itself), and it joins other blocks and single steps in a pass like any step.

Where a pass runs: small passes (at most `inline_max_batch` steps) run right on the event loop
thread, because handing them to a thread costs two thread wake-ups and GIL hand-offs per pass
(measured ~0.2-0.4 ms at B=1 on the 2-core machines, a third of the step). Bigger passes run on one
dedicated model thread, so the event loop keeps reading and answering streams while torch computes.
Either way one pass runs at a time, and jobs from `run_sync` (re-encoding) run on the model thread
in queue order between passes, so the cache is never written concurrently. NOTE: the GIL keeps the
two threads from overlapping much on CPU (the server uses one core under load either way); running
all passes inline (`inline_max_batch` = max_batch_size) measured 0-20 % faster, within the
machine's noise, so the default stays (docs/benchmarks.md, serving, "Where the time goes").

Pipelining: where the backend runs in another process (`--model-process`), a big pass is sent
to it and its answer is received on the model thread while the event loop already batches and
sends the next (at most `pipeline_depth` passes in flight), so the model process is not idle
while this one samples actions and answers streams. Every other pass and every job waits until
no pass is in flight. A session has at most one step in flight, so two passes never share one.

B=1 without hand-offs: a single step that arrives while the worker is idle (nothing queued, no
pass or job running, the last pass a single step) runs right in its handler's coroutine: the pass
the worker would run at once anyway, minus two event-loop hops (measured 0.276 -> 0.245 ms per
servicer step with the small ONNX model, against a bare step of 0.19 ms).

Waiting: a step never waits for company when the previous pass was small (B=1 latency stays bare);
when load is high (the last pass was bigger than what is queued) the worker waits at most
`max_wait_ms` for the batch to fill to the last pass's size.

Isolation: steps are validated before they are queued; if a batched pass still fails, its steps are
retried one by one so one bad step cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from polyskill.agent.policy import ActionParams, StepInputs

from .backends.base import Backend, stack_batch, stack_observations
from .errors import Unavailable
from .models import LoadedModel
from .sessions import StepPlan

log = logging.getLogger("polyskill.server.batcher")

INLINE_MAX_BATCH = 16
"""Default largest pass run on the event loop thread (see the module docstring)."""

PIPELINE_DEPTH = 2
"""Default passes in flight with a pipelined backend: one computing, one queued behind it."""


class _Group:
    """The steps of one submit_many: one asyncio future, resolved when the last step is."""

    __slots__ = ("future", "left", "results")

    def __init__(self, size: int, future: asyncio.Future) -> None:
        self.future, self.left, self.results = future, size, [None] * size


class _Member:
    """A step's handle in its _Group, with the Future methods the worker uses. Cheaper than a
    future per step: no loop callback per step, so a 256-step request costs one wake-up."""

    __slots__ = ("group", "index", "_done")

    def __init__(self, group: _Group, index: int) -> None:
        self.group, self.index, self._done = group, index, False

    def done(self) -> bool:  # a failed, expired or abandoned group needs none of its steps
        return self._done or self.group.future.done()

    def set_result(self, result: np.ndarray) -> None:
        self._done = True
        g = self.group
        g.results[self.index] = result
        g.left -= 1
        if not g.left and not g.future.done():
            g.future.set_result(g.results)

    def set_exception(self, error: BaseException) -> None:
        self._done = True
        if not self.group.future.done():
            self.group.future.set_exception(error)


@dataclass(slots=True)
class QueuedStep:
    model: LoadedModel
    plan: StepPlan
    obs: dict[str, np.ndarray | str]
    future: _Member | None  # None: run at once by its caller (Batcher._run_now), never queued
    deadline: float = math.inf  # loop.time() after which the step's result is not delivered
    alone: bool = False  # retried by itself after its pipelined pass failed
    size = 1  # steps in this queue entry


@dataclass(slots=True)
class QueuedBlock:
    """Up to max_batch_size steps of one ActBatch request, one model version: one queue entry,
    its pass inputs built once at submit time. Its result is the (b, ...) actions of its rows."""

    model: LoadedModel
    inputs: StepInputs  # (b, ...) rows, in the request's order
    deterministic: np.ndarray  # (b,) bool
    rngs: list[np.random.Generator]  # (b,) one per session
    future: _Member
    deadline: float = math.inf
    alone: bool = False

    @property
    def size(self) -> int:
        return len(self.rngs)


Queued = QueuedStep | QueuedBlock


@dataclass
class _Job:
    """A `run_sync` call waiting for its turn on the model thread."""

    fn: Callable
    args: tuple
    future: asyncio.Future


class Batcher:
    def __init__(
        self, max_batch_size: int, max_wait_ms: float,
        thread_initializer: Callable[[], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        inline_max_batch: int = INLINE_MAX_BATCH,
        pipeline_depth: int = PIPELINE_DEPTH,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.inline_max_batch = inline_max_batch
        self.pipeline_depth = pipeline_depth
        self.on_batch = on_batch  # (batch size, seconds in the model) -> metrics
        self._executor = ThreadPoolExecutor(1, "polyskill-model", initializer=thread_initializer)
        # NOTE: a deque plus one wake-up future rather than an asyncio.Queue: waiting for a batch
        # to fill then costs one future and one timer per pass, not a Task per arriving step.
        self._pending: deque[Queued | _Job] = deque()
        self._queued = 0  # steps in _pending (a block counts its rows, a job counts 1)
        self._wakeup: asyncio.Future | None = None
        self._wake_at = 1  # wake the worker once this many steps are pending
        self._worker: asyncio.Task | None = None
        self._last_size = 1
        self._direct_ok = True  # see _run_now
        self._closed = False
        self._in_flight: deque[asyncio.Future] = deque()  # pipelined passes, oldest first

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Finish queued steps and jobs, then stop the worker and the model thread."""
        self._closed = True
        self._wake()
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, model: LoadedModel, plan: StepPlan, obs: dict[str, np.ndarray | str],
                     timeout: float | None) -> np.ndarray:
        """The action for one validated step; raises TimeoutError after `timeout` seconds."""
        return (await self.submit_many([(model, plan, obs)], timeout))[0]

    async def submit_many(
        self, steps: list[tuple[LoadedModel, StepPlan, dict[str, np.ndarray | str]]],
        timeout: float | None,
    ) -> list[np.ndarray]:
        """Actions for validated steps (one Act step, or an ActBatch request), in order: queued
        together, one future, one wake-up and one timer for all; raises the first failure
        (TimeoutError after `timeout`). A lone step on an idle batcher runs at once, here.

        NOTE: a timer, not asyncio.wait_for (a Task per call on the hot path). An expired step is
        skipped if not yet run; if it already ran, its result is dropped (the deadline is checked
        again when results are delivered: an inline pass blocks the loop, so the timer cannot
        fire during it)."""
        if self._closed:
            raise Unavailable("server is shutting down; reconnect to another replica")
        if timeout is not None and timeout <= 0:
            raise TimeoutError
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else loop.time() + timeout
        if len(steps) == 1 and self._idle():
            return [self._run_now(QueuedStep(*steps[0], None, deadline))]
        group = _Group(len(steps), loop.create_future())
        self._enqueue([QueuedStep(m, p, o, _Member(group, i), deadline)
                       for i, (m, p, o) in enumerate(steps)])
        return await _wait(group.future, timeout)

    def _idle(self) -> bool:
        """The worker waits for work and no pass or job runs anywhere: a step that arrives now
        would be run at once as a pass of its own."""
        return (self._direct_ok and self._wakeup is not None and not self._wakeup.done()
                and self._wake_at == 1 and not self._pending and not self._in_flight
                and self._last_size <= 1 and not self._closed and self.inline_max_batch >= 1)

    def _run_now(self, step: QueuedStep) -> np.ndarray:
        """Run a pass of one step right here, in the caller's coroutine (the B=1 latency path):
        its action, or its error raised (TimeoutError if it finished past its deadline).

        NOTE: until the event loop's next round, later steps are queued: steps that became
        ready together (a burst of requests) then share the worker's next pass instead of each
        running alone, and that pass's size turns the direct path off while load lasts."""
        loop = asyncio.get_running_loop()
        self._direct_ok = False
        loop.call_soon(self._allow_direct)
        started = time.perf_counter()
        (result,) = self._execute([step])
        if self.on_batch is not None:
            self.on_batch(1, time.perf_counter() - started)
        if isinstance(result, BaseException):
            raise result
        if loop.time() > step.deadline:
            raise TimeoutError
        return result

    def _allow_direct(self) -> None:
        self._direct_ok = True

    async def submit_block(self, model: LoadedModel, plans: list[StepPlan],
                           obs: dict[str, np.ndarray | list[str]], timeout: float | None
                           ) -> np.ndarray:
        """Actions (B, ...) for B validated steps of one model version whose observations are
        stacked (field -> (B, ...), or B strings): the ActBatch path. Queued as blocks of at most
        max_batch_size rows; fails as a whole, as submit_many does."""
        if self._closed:
            raise Unavailable("server is shutting down; reconnect to another replica")
        if timeout is not None and timeout <= 0:
            raise TimeoutError
        loop = asyncio.get_running_loop()
        B, size = len(plans), self.max_batch_size
        chunks = [(i, min(i + size, B)) for i in range(0, B, size)]
        group = _Group(len(chunks), loop.create_future())
        deadline = math.inf if timeout is None else loop.time() + timeout
        blocks = []
        for k, (a, b) in enumerate(chunks):
            rows = plans[a:b]
            obs_rows = obs if len(chunks) == 1 else {n: v[a:b] for n, v in obs.items()}
            blocks.append(QueuedBlock(
                model, _plan_inputs(rows, stack_batch(model.backend.obs_spec, obs_rows)),
                np.array([p.deterministic for p in rows]), [p.rng for p in rows],
                _Member(group, k), deadline))
        self._enqueue(blocks)
        parts = await _wait(group.future, timeout)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def run_sync(self, fn: Callable, *args: object) -> asyncio.Future:
        """Run `fn(*args)` on the model thread (re-encoding, warm-up), in order with the passes."""
        if self._closed:
            raise Unavailable("server is shutting down; reconnect to another replica")
        future = asyncio.get_running_loop().create_future()
        self._put(_Job(fn, args, future))
        return future

    # ---- queue --------------------------------------------------------------------------------
    def _enqueue(self, items: list[Queued]) -> None:
        self._pending.extend(items)
        self._queued += sum(item.size for item in items)
        if self._queued >= self._wake_at:
            self._wake()

    def _put(self, item: _Job) -> None:
        self._pending.append(item)
        self._queued += 1
        self._wake()

    def _popleft(self) -> Queued | _Job:
        item = self._pending.popleft()
        self._queued -= item.size if not isinstance(item, _Job) else 1
        return item

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _wait_for(self, count: int, timeout: float | None) -> None:
        """Until `count` steps are pending, a job arrives, `stop` is called or `timeout` passes."""
        if self._queued >= count or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        self._wake_at = count
        timer = None if timeout is None else loop.call_later(timeout, _finish, wakeup)
        try:
            await wakeup
        finally:
            self._wakeup, self._wake_at = None, 1
            if timer is not None:
                timer.cancel()

    def _take_steps(self) -> list[Queued]:
        """The leading queued steps and blocks (up to max_batch_size steps, and always the first),
        stopping at a job; an entry to retry alone is taken alone."""
        pending = self._pending
        if pending[0].alone:
            return [self._popleft()]
        batch: list[Queued] = [self._popleft()]
        steps = batch[0].size
        while (pending and not isinstance(pending[0], _Job) and not pending[0].alone
               and steps + pending[0].size <= self.max_batch_size):
            steps += pending[0].size
            batch.append(self._popleft())
        return batch

    # ---- worker -------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for(1, None)
            if not self._pending:
                if self._closed:
                    await self._drain()  # a failed pass may queue its steps again
                    if not self._pending:
                        return
                continue
            if isinstance(self._pending[0], _Job):
                await self._drain()
                await self._run_job(self._popleft())
                continue
            target = min(self.max_batch_size, self._last_size)
            if self._queued < target and self.max_wait_s > 0 and not self._closed:
                await self._wait_for(target, self.max_wait_s)
            batch = self._take_steps()
            live = [s for s in batch if not s.future.done()]  # skip steps whose caller gave up
            self._last_size = size = sum(s.size for s in batch)
            if not live:
                continue
            if self.pipeline_depth > 1 and size > self.inline_max_batch and _pipelined(live):
                await self._send_pass(live)
                continue
            await self._drain()
            started = time.perf_counter()
            if size <= self.inline_max_batch:
                results = self._execute(live)
            else:
                results = await loop.run_in_executor(self._executor, self._execute, live)
            if self.on_batch is not None:
                self.on_batch(sum(s.size for s in live), time.perf_counter() - started)
            _deliver(live, results, loop.time())

    # ---- pipelined passes ---------------------------------------------------------------------
    async def _send_pass(self, live: list[Queued]) -> None:
        """Send one pass to a pipelined backend; its answer is received on the model thread and
        delivered from there, while this loop goes on batching."""
        while len(self._in_flight) >= self.pipeline_depth:
            await asyncio.wait([self._in_flight[0]])
            self._in_flight.popleft()
        steps = live
        backend = steps[0].model.backend
        try:
            batch = _Pass(steps)
        except Exception:  # noqa: BLE001 - a step that does not stack: find it, alone
            self._retry_alone(steps)
            return
        loop = asyncio.get_running_loop()
        try:
            backend.send(batch.inputs)
        except Unavailable as e:  # the worker is gone
            _deliver(steps, [e] * len(steps), loop.time())
            return
        except Exception:  # noqa: BLE001 - e.g. an input that does not pickle: isolate
            self._retry_alone(steps)
            return
        started = time.perf_counter()
        received = loop.run_in_executor(self._executor, _receive, backend, batch)
        received.add_done_callback(lambda f: self._on_received(steps, f.result(), started))
        self._in_flight.append(received)

    def _on_received(self, steps: list[Queued], results: list | BaseException,
                     started: float) -> None:
        if self.on_batch is not None:
            self.on_batch(sum(s.size for s in steps), time.perf_counter() - started)
        if isinstance(results, Unavailable):  # the model itself is gone: no retries
            results = [results] * len(steps)
        elif isinstance(results, BaseException):
            self._retry_alone(steps)
            return
        _deliver(steps, results, asyncio.get_running_loop().time())

    def _retry_alone(self, steps: list[Queued]) -> None:
        """Isolate: queue each step (or block) of a failed pass first, to run by itself."""
        for s in reversed(steps):
            s.alone = True
            self._pending.appendleft(s)
            self._queued += s.size
        self._wake()

    async def _drain(self) -> None:
        """Until no pipelined pass is in flight (before a job or a pass that waits for itself)."""
        while self._in_flight:
            await asyncio.wait([self._in_flight.popleft()])

    async def _run_job(self, job: _Job) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, job.fn, *job.args)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            if not job.future.done():
                job.future.set_exception(e)
            return
        if not job.future.done():
            job.future.set_result(result)

    # ---- model pass ---------------------------------------------------------------------------
    def _execute(self, steps: list[Queued]) -> list[np.ndarray | BaseException]:
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(steps):
            groups.setdefault(s.model.version, []).append(i)
        out: list[np.ndarray | BaseException] = [RuntimeError("not run")] * len(steps)
        for indices in groups.values():
            group = [steps[i] for i in indices]
            try:
                results = _forward(group)
            except Unavailable as e:  # the model itself is gone (a dead worker): no retries
                results = [e] * len(group)
            except Exception:
                if len(group) == 1:
                    s = group[0]
                    session = s.plan.session_id if isinstance(s, QueuedStep) else "(a batch)"
                    log.exception("model step failed", extra={"session": session})
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


def _finish(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def _wait(future: asyncio.Future, timeout: float | None):
    """The future's result, failed with TimeoutError after `timeout` seconds."""
    timer = None
    if timeout is not None:
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        if timer is not None:
            timer.cancel()


def _pipelined(steps: list[Queued]) -> bool:
    """All of one model version, on a backend that pipelines."""
    model = steps[0].model
    return model.backend.pipelined and all(s.model is model for s in steps)


def _receive(backend: Backend, batch: _Pass) -> list[np.ndarray] | BaseException:
    """On the model thread: the answer to a pipelined pass, sampled per session (or the error)."""
    try:
        return batch.results(backend.receive())
    except Exception as e:  # noqa: BLE001 - handled on the event loop (`_on_received`)
        return e


def _deliver(steps: list[Queued], results: list, now: float) -> None:
    """Resolve each step's future with its action or error; a step past its deadline times out."""
    for step, result in zip(steps, results, strict=True):
        if step.future.done():
            continue
        if now > step.deadline:
            step.future.set_exception(TimeoutError())
        elif isinstance(result, BaseException):
            step.future.set_exception(result)
        else:
            step.future.set_result(result)


def _forward(steps: list[Queued]) -> list[np.ndarray]:
    """One batched forward pass for steps of one model version, then per-session sampling."""
    backend = steps[0].model.backend
    if len(steps) == 1 and isinstance(steps[0], QueuedStep):  # the B=1 latency path
        p = steps[0].plan
        inputs = StepInputs(
            obs=stack_observations(backend.obs_spec, [steps[0].obs]),
            prev_action=np.asarray(p.prev_action)[None],
            prev_reward=np.array([p.prev_reward], dtype=np.float32),
            new_episode=np.array([p.new_episode], dtype=bool),
            positions=np.array([p.position], dtype=np.int64),
            slot_ids=np.array([p.slot], dtype=np.int64),
            starts=np.array([p.start], dtype=np.int64),
        )
        params = backend.step(inputs)
        return [np.asarray(params.select((p.deterministic,), (p.rng,))[0])]
    batch = _Pass(steps)
    return batch.results(backend.step(batch.inputs))


class _Pass:
    """The inputs of one pass over single steps and blocks of one model version, rows in
    ascending slot order (evenly spaced slots read the KV cache as a view, not a gather), and
    how to hand its actions back: one row per single step, a (b, ...) slice per block."""

    def __init__(self, steps: list[Queued]) -> None:
        singles = [s for s in steps if isinstance(s, QueuedStep)]
        parts: list[tuple[StepInputs, np.ndarray, list[np.random.Generator]]] = []
        if singles:
            plans = [s.plan for s in singles]
            obs = stack_observations(steps[0].model.backend.obs_spec, [s.obs for s in singles])
            parts.append((_plan_inputs(plans, obs), np.array([p.deterministic for p in plans]),
                          [p.rng for p in plans]))
        parts += [(s.inputs, s.deterministic, s.rngs) for s in steps if isinstance(s, QueuedBlock)]
        # rows: the single steps (in queue order), then each block's rows
        self.rows: list[int | slice] = []
        offset = len(singles)
        index = {id(s): i for i, s in enumerate(singles)}
        for s in steps:
            if isinstance(s, QueuedStep):
                self.rows.append(index[id(s)])
            else:
                self.rows.append(slice(offset, offset + s.size))
                offset += s.size
        inputs, self.deterministic, self.rngs = (
            parts[0] if len(parts) == 1 else _concatenate(parts))
        slots = inputs.slot_ids
        self.order: np.ndarray | None = None
        if len(slots) > 1 and (np.diff(slots) < 0).any():
            self.order = order = np.argsort(slots, kind="stable")
            inputs = _take(inputs, order)
            self.deterministic = self.deterministic[order]
            self.rngs = [self.rngs[i] for i in order]
        self.inputs = inputs

    def results(self, params: ActionParams) -> list[np.ndarray]:
        """Each session's action, drawn with its own Generator (or its mode if deterministic),
        handed back per queue entry: () int64 | (dim,) float32 per step, (b, ...) per block."""
        actions = params.select(self.deterministic, self.rngs)  # (N,) int64 | (N, dim) float32
        if self.order is not None:
            unsorted = np.empty_like(actions)
            unsorted[self.order] = actions
            actions = unsorted
        return [actions[r] if isinstance(r, slice) else actions[r, ...] for r in self.rows]


def _plan_inputs(plans: list[StepPlan], obs: dict[str, np.ndarray]) -> StepInputs:
    """Pass inputs for B planned steps whose observations are already stacked (B, ...)."""
    return StepInputs(
        obs=obs,  # field -> (B, ...)
        prev_action=np.stack([p.prev_action for p in plans]),  # (B,) or (B, dim)
        prev_reward=np.array([p.prev_reward for p in plans], dtype=np.float32),  # (B,)
        new_episode=np.array([p.new_episode for p in plans], dtype=bool),  # (B,)
        positions=np.array([p.position for p in plans], dtype=np.int64),  # (B,)
        slot_ids=np.array([p.slot for p in plans], dtype=np.int64),  # (B,)
        starts=np.array([p.start for p in plans], dtype=np.int64),  # (B,)
    )


def _concatenate(parts: list[tuple[StepInputs, np.ndarray, list[np.random.Generator]]]
                 ) -> tuple[StepInputs, np.ndarray, list[np.random.Generator]]:
    xs = [p[0] for p in parts]
    inputs = StepInputs(
        obs={k: np.concatenate([x.obs[k] for x in xs]) for k in xs[0].obs},
        **{f: np.concatenate([getattr(x, f) for x in xs])
           for f in ("prev_action", "prev_reward", "new_episode", "positions", "slot_ids",
                     "starts")})
    return inputs, np.concatenate([p[1] for p in parts]), [g for p in parts for g in p[2]]


def _take(inputs: StepInputs, order: np.ndarray) -> StepInputs:
    return StepInputs(
        obs={k: v[order] for k, v in inputs.obs.items()},
        **{f: getattr(inputs, f)[order]
           for f in ("prev_action", "prev_reward", "new_episode", "positions", "slot_ids",
                     "starts")})
