"""Continuous batching: steps that arrive together share a pass, results do not depend on batching,
and a step that breaks its batch fails alone."""

from __future__ import annotations

import asyncio
import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.agent.network import AgentNetwork
from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space
from polyskill.server.backends.torch import TorchBackend
from polyskill.server.batcher import Batcher
from polyskill.server.models import LoadedModel
from polyskill.server.sessions import SessionTable

pytestmark = pytest.mark.timeout(30)


def model(num_slots: int, action_space: gym.Space | None = None) -> LoadedModel:
    torch.manual_seed(0)
    cfg = NetworkConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=8,
                        encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=16, dropout=0.0)
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    actions = action_spec_from_space(action_space or gym.spaces.Discrete(3))
    net = AgentNetwork(cfg, obs_spec_from_space(space), actions)
    return LoadedModel("m", 1, TorchBackend(net, num_slots))


async def run_sessions(num: int, steps: int, together: bool, bad_at: int | None = None,
                       inline_max_batch: int = 16,
                       threads: set[tuple[str, bool]] | None = None):
    m = model(num)
    if threads is not None:  # record the thread each pass runs on
        step = m.backend.step

        def recording_step(inputs):
            threads.add((threading.current_thread().name, len(inputs.slot_ids) > 16))
            return step(inputs)

        m.backend.step = recording_step
    sizes: list[int] = []
    batcher = Batcher(max_batch_size=64, max_wait_ms=5.0, on_batch=lambda n, s: sizes.append(n),
                      inline_max_batch=inline_max_batch)
    batcher.start()
    table = SessionTable(num, 60.0, 8)
    sids = [table.open(1, m.backend.zero_action(), deterministic=False, seed=i + 1).session_id
            for i in range(num)]
    rng = np.random.default_rng(0)
    out: dict[str, list] = {s: [] for s in sids}

    async def one(sid: str, t: int) -> None:
        obs = {"obs": rng.uniform(-1, 1, 4).astype(np.float32)}
        if bad_at is not None and t == bad_at and sid == sids[0]:
            obs = {"obs": np.zeros(5, np.float32)}  # bypasses validation on purpose
        plan = table.begin_step(sid, 1.0, False)
        try:
            action = await batcher.submit(m, plan, obs, timeout=10)
        except Exception as e:
            table.abort_step(plan)
            out[sid].append(type(e).__name__)
            return
        table.commit_step(plan, action, obs)
        out[sid].append(int(action))

    for t in range(steps):
        if together:
            await asyncio.gather(*(one(s, t) for s in sids))
        else:
            for s in sids:
                await one(s, t)
    await batcher.stop()
    return out, sizes


def test_batched_and_unbatched_actions_are_identical() -> None:
    batched, sizes = asyncio.run(run_sessions(6, 10, together=True))
    single, single_sizes = asyncio.run(run_sessions(6, 10, together=False))
    assert list(batched.values()) == list(single.values())
    assert max(sizes) == 6 and set(single_sizes) == {1}


def test_big_passes_run_on_the_model_thread_unless_inline_max_batch_allows_them() -> None:
    on_thread: set[tuple[str, bool]] = set()
    inline: set[tuple[str, bool]] = set()
    a, sizes = asyncio.run(run_sessions(20, 4, together=True, threads=on_thread))
    b, _ = asyncio.run(run_sessions(20, 4, together=True, inline_max_batch=64, threads=inline))
    assert max(sizes) == 20 and list(a.values()) == list(b.values())
    # (thread, pass bigger than 16): only a lone first step may run on the loop by default
    assert on_thread <= {("polyskill-model_0", True), ("MainThread", False)}
    assert ("polyskill-model_0", True) in on_thread and {t for t, _ in inline} == {"MainThread"}


def test_a_step_that_breaks_its_batch_fails_alone() -> None:
    out, _ = asyncio.run(run_sessions(4, 3, together=True, bad_at=1))
    clean, _ = asyncio.run(run_sessions(4, 3, together=True))
    got, want = list(out.values()), list(clean.values())
    assert got[0][1] == "RuntimeError" and got[0][0] == want[0][0]
    assert got[1:] == want[1:]


def test_a_step_past_its_deadline_raises_timeout_and_the_batcher_keeps_going() -> None:
    async def go() -> int:
        m = model(2)
        batcher = Batcher(max_batch_size=8, max_wait_ms=0.0)
        batcher.start()
        table = SessionTable(2, 60.0, 8)
        sid = table.open(1, m.backend.zero_action(), deterministic=True).session_id
        obs = {"obs": np.zeros(4, np.float32)}
        plan = table.begin_step(sid, 0.0, False)
        with pytest.raises(TimeoutError):
            await batcher.submit(m, plan, obs, timeout=0.0)
        table.abort_step(plan)
        plan = table.begin_step(sid, 0.0, False)
        assert plan.position == 0  # the timed-out step did not count
        action = await batcher.submit(m, plan, obs, timeout=5.0)
        await batcher.stop()
        return int(action)

    assert asyncio.run(go()) in (0, 1, 2)


def test_run_sync_jobs_run_on_the_model_thread_in_queue_order() -> None:
    async def go() -> list[str]:
        m = model(2)
        batcher = Batcher(max_batch_size=8, max_wait_ms=0.0)
        batcher.start()
        table = SessionTable(2, 60.0, 8)
        sid = table.open(1, m.backend.zero_action(), deterministic=True).session_id
        events: list[str] = []
        plan = table.begin_step(sid, 0.0, False)
        step = asyncio.ensure_future(batcher.submit(m, plan, {"obs": np.zeros(4, np.float32)}, 5))
        job = batcher.run_sync(lambda: events.append(threading.current_thread().name))
        await asyncio.gather(step, job)
        await batcher.stop()
        return events

    (name,) = asyncio.run(go())
    assert name.startswith("polyskill-model")


def test_a_lone_step_runs_in_its_callers_task_unless_the_model_is_busy() -> None:
    """B=1 on an idle batcher skips the worker (no event-loop hops), with the same action; a step
    that arrives while a job holds the model thread goes through the queue and waits for it."""

    async def go() -> tuple[list[str], list[int], list[float], list[float]]:
        m, batcher, table, sids = started(2, 0.0)
        tasks, passes, job_ended = [], [], []
        step = m.backend.step

        def recording_step(inputs):
            tasks.append(asyncio.current_task().get_name())
            passes.append(time.perf_counter())
            return step(inputs)

        def slow_job() -> None:
            time.sleep(0.2)
            job_ended.append(time.perf_counter())

        m.backend.step = recording_step
        obs = {"obs": np.full(4, 0.5, np.float32)}
        actions: list[int] = []
        job = None
        for i, sid in enumerate(sids):  # session 0 on an idle batcher; session 1 behind a job
            if i == 1:
                job = batcher.run_sync(slow_job)
                await asyncio.sleep(0.05)  # the job now runs on the model thread
            plan = table.begin_step(sid, 0.0, False)
            action = await asyncio.create_task(batcher.submit(m, plan, obs, 5.0),
                                               name=f"caller-{i}")
            table.commit_step(plan, action, obs)
            actions.append(int(action))
        await job
        await batcher.stop()
        return tasks, actions, passes, job_ended

    tasks, actions, passes, job_ended = asyncio.run(go())
    assert tasks == ["caller-0", "batcher"]
    assert passes[1] >= job_ended[0]  # never concurrently with the job
    assert actions[0] == actions[1]  # deterministic sessions, same observation, same model


def test_a_lone_step_that_finishes_past_its_deadline_times_out_and_does_not_count() -> None:
    async def go() -> int:
        m, batcher, table, sids = started(1, 0.0)
        step = m.backend.step

        def slow_step(inputs):
            time.sleep(0.1)
            return step(inputs)

        obs = {"obs": np.zeros(4, np.float32)}
        m.backend.step = slow_step
        plan = table.begin_step(sids[0], 0.0, False)
        with pytest.raises(TimeoutError):  # the pass ran (inline), but past the deadline
            await batcher.submit(m, plan, obs, timeout=0.05)
        table.abort_step(plan)
        m.backend.step = step
        await asyncio.sleep(0)  # the next loop round: lone steps run inline again
        plan = table.begin_step(sids[0], 0.0, False)
        await batcher.submit(m, plan, obs, timeout=5.0)
        await batcher.stop()
        return plan.position

    assert asyncio.run(go()) == 0  # the timed-out step did not count


def test_sampling_matches_generator_choice() -> None:
    """The vectorised inverse-CDF sampler draws exactly what rng.choice(n, p=p) would."""
    from polyskill.agent.policy import ActionParams
    from polyskill.agent.spaces import ActionSpec

    rs = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for batch in (1, 3, 40):
            probs = rs.dirichlet(np.ones(5), size=batch).astype(dtype)
            deterministic = rs.random(batch) < 0.3
            got = ActionParams(ActionSpec(kind="discrete", n=5), probs=probs).select(
                deterministic, [np.random.default_rng(i) for i in range(batch)])
            want = probs.argmax(-1)
            for i in np.flatnonzero(~deterministic):
                want[i] = np.random.default_rng(i).choice(5, p=probs[i] / probs[i].sum())
            np.testing.assert_array_equal(got, want)


def _group_run(m: LoadedModel, batcher: Batcher, table: SessionTable, sids: list[str],
               obs: list[dict[str, np.ndarray]], timeout: float | None):
    plans = [table.begin_step(s, 1.0, False) for s in sids]
    return plans, batcher.submit_many(list(zip([m] * len(sids), plans, obs, strict=True)),
                                      timeout)


def test_submit_many_acts_as_single_steps_in_order_across_passes() -> None:
    """An ActBatch group bigger than max_batch_size is split over passes; row i still gets
    session i's action, the one it gets stepping alone."""

    async def go(grouped: bool) -> list[list[int]]:
        m = model(6)
        batcher = Batcher(max_batch_size=4, max_wait_ms=0.0)
        batcher.start()
        table = SessionTable(6, 60.0, 8)
        sids = [table.open(1, m.backend.zero_action(), seed=i + 1).session_id for i in range(6)]
        rng = np.random.default_rng(0)
        out = []
        for _ in range(5):
            obs = [{"obs": rng.uniform(-1, 1, 4).astype(np.float32)} for _ in sids]
            if grouped:
                plans, pending = _group_run(m, batcher, table, sids, obs, 5.0)
                actions = await pending
            else:
                plans = [table.begin_step(s, 1.0, False) for s in sids]
                actions = [await batcher.submit(m, p, o, 5.0)
                           for p, o in zip(plans, obs, strict=True)]
            for p, a, o in zip(plans, actions, obs, strict=True):
                table.commit_step(p, a, o)
            out.append([int(a) for a in actions])
        await batcher.stop()
        return out

    assert asyncio.run(go(True)) == asyncio.run(go(False))


def started(n: int, max_wait_ms: float) -> tuple[LoadedModel, Batcher, SessionTable, list[str]]:
    """A model, a running batcher (passes of up to 8) and n open deterministic sessions."""
    m = model(n)
    batcher = Batcher(max_batch_size=8, max_wait_ms=max_wait_ms)
    batcher.start()
    table = SessionTable(n, 60.0, 8)
    sids = [table.open(1, m.backend.zero_action(), deterministic=True).session_id
            for _ in range(n)]
    return m, batcher, table, sids


def test_submit_many_fails_as_a_whole_and_the_batcher_keeps_going() -> None:
    async def go() -> int:
        m, batcher, table, sids = started(4, 0.0)
        good = [{"obs": np.zeros(4, np.float32)} for _ in sids]
        bad = good[:2] + [{"obs": np.zeros(5, np.float32)}] + good[3:]  # bypasses validation
        plans, pending = _group_run(m, batcher, table, sids, bad, 5.0)
        with pytest.raises(RuntimeError, match="model failed"):
            await pending
        for p in plans:
            table.abort_step(p)
        blocker = batcher.run_sync(time.sleep, 0.3)  # the model thread is busy
        plans, pending = _group_run(m, batcher, table, sids, good, 0.05)
        with pytest.raises(TimeoutError):
            await pending
        for p in plans:
            table.abort_step(p)
        await blocker
        plans, pending = _group_run(m, batcher, table, sids, good, 5.0)
        actions = await pending
        assert [p.position for p in plans] == [0] * 4  # neither failure counted
        await batcher.stop()
        return len(actions)

    assert asyncio.run(go()) == 4


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3),
                                          gym.spaces.Box(-2, 2, (2,), np.float32)])
def test_blocks_act_as_single_steps_when_chunked_and_sharing_passes(action_space) -> None:
    """ActBatch's path: stacked blocks, one bigger than max_batch_size (so chunked), sharing
    passes with each other and with single steps, slots out of order (so the pass sorts them):
    every session gets exactly the actions it gets stepping alone."""
    n, blocks = 10, [[7, 2, 9, 4, 0, 5], [1, 8]]  # session indices per block; 3 and 6 alone

    async def go(together: bool) -> list[np.ndarray]:
        m = model(n, action_space)
        batcher = Batcher(max_batch_size=5, max_wait_ms=20.0 if together else 0.0)
        batcher.start()
        table = SessionTable(n, 60.0, 8)
        sids = [table.open(1, m.backend.zero_action(), seed=i + 1).session_id for i in range(n)]
        rng = np.random.default_rng(0)
        out = []
        for _ in range(4):
            obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
            plans = [table.begin_step(s, 1.0, False) for s in sids]
            if together:
                calls = [batcher.submit_block(m, [plans[i] for i in b], {"obs": obs[b]}, 5.0)
                         for b in blocks]
                calls += [batcher.submit(m, plans[i], {"obs": obs[i]}, 5.0) for i in (3, 6)]
                results = await asyncio.gather(*calls)
                actions: list = [None] * n
                for b, got in zip(blocks, results, strict=False):
                    assert got.shape[0] == len(b)
                    for i, a in zip(b, got, strict=True):
                        actions[i] = a
                actions[3], actions[6] = results[-2:]
            else:
                actions = [await batcher.submit(m, p, {"obs": obs[i]}, 5.0)
                           for i, p in enumerate(plans)]
            for i, (p, a) in enumerate(zip(plans, actions, strict=True)):
                table.commit_step(p, a, {"obs": obs[i]})
            out.append(np.stack(actions))
        await batcher.stop()
        return out

    for got, want in zip(asyncio.run(go(True)), asyncio.run(go(False)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_block_that_fails_fails_alone_and_whole() -> None:
    """A block that breaks its pass is retried alone and fails as a whole (ActBatch is all or
    nothing); a block and a single step that shared the pass still get their actions."""

    async def go() -> tuple[list, list]:
        m, batcher, table, sids = started(6, 20.0)
        plans = [table.begin_step(s, 1.0, False) for s in sids]
        good = {"obs": np.zeros((2, 4), np.float32)}
        bad = {"obs": np.zeros((3, 5), np.float32)}  # bypasses validation on purpose
        results = await asyncio.gather(
            batcher.submit_block(m, plans[:2], good, 5.0),
            batcher.submit_block(m, plans[2:5], bad, 5.0),
            batcher.submit(m, plans[5], {"obs": np.zeros(4, np.float32)}, 5.0),
            return_exceptions=True)
        await batcher.stop()
        return results, plans

    (good, bad, single), _ = asyncio.run(go())
    assert isinstance(bad, RuntimeError) and "model failed" in str(bad)
    assert good.shape == (2,) and single.shape == ()


def test_inline_max_batch_comes_from_the_environment_and_is_checked() -> None:
    from polyskill.server.config import ServerConfig

    assert ServerConfig.from_env({"POLYSKILL_INLINE_MAX_BATCH": "256"}).inline_max_batch == 256
    with pytest.raises(ValueError, match="inline_max_batch must be >= 0, got -1"):
        ServerConfig.from_env({"POLYSKILL_INLINE_MAX_BATCH": "-1"})
