"""`--model-process`: the model in its own worker process steps exactly like the in-process
backend, fails clearly when it cannot load or dies, and stops with its model.

    .venv/bin/python -m pytest -q tests/integration/test_model_process.py
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import numpy as np
import pytest
from server_helpers import act_request, cartpole_checkpoint, stub

from polyskill.agent.policy import StepInputs
from polyskill.server.backends.process import ModelWorkerDied, ProcessBackend
from polyskill.server.batcher import Batcher
from polyskill.server.config import ServerConfig
from polyskill.server.models import LoadedModel, load_backend
from polyskill.server.sessions import RawStep, SessionTable
from polyskill.server.testing import ServerThread
from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return cartpole_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "cartpole"))


def _inputs(slots: list[int], t: int, rng: np.random.Generator) -> StepInputs:
    B = len(slots)
    return StepInputs(
        obs={"obs": rng.normal(size=(B, 4)).astype(np.float32)},
        prev_action=rng.integers(0, 2, B), prev_reward=rng.normal(size=B).astype(np.float32),
        new_episode=np.full(B, t == 0), positions=np.full(B, t, np.int64),
        slot_ids=np.array(slots, np.int64), starts=np.zeros(B, np.int64))


def test_worker_steps_and_reencodes_like_the_in_process_backend(ckpt: str) -> None:
    local = load_backend("torch", ckpt, 8, "cpu")
    remote = load_backend("torch", ckpt, 8, "cpu", process=True)
    try:
        assert isinstance(remote, ProcessBackend) and remote.pid != os.getpid()
        assert (remote.num_slots, remote.cache_bytes) == (local.num_slots, local.cache_bytes)
        assert remote.obs_spec == local.obs_spec and remote.action_spec == local.action_spec
        assert remote.name == "torch-cpu-process"
        rng = np.random.default_rng(0)
        # contiguous, strided (round-robin), scattered and single-slot batches, past the window
        patterns = [[0, 1, 2, 3], [4, 6], [5, 7], [1, 2, 4]]
        for t in range(20):
            inputs = _inputs(patterns[t % len(patterns)], t // len(patterns), rng)
            np.testing.assert_allclose(remote.step(inputs).probs, local.step(inputs).probs,
                                       rtol=0, atol=1e-6, err_msg=f"step {t}")
        history = [RawStep({"obs": rng.normal(size=4).astype(np.float32)}, np.array(p % 2),
                           0.5, p == 30, p) for p in range(30, 40)]
        local.reencode(3, history)
        remote.reencode(3, history)
        after = _inputs([3], 40, rng)
        after.starts = np.array([30])
        np.testing.assert_allclose(remote.step(after).probs, local.step(after).probs,
                                   rtol=0, atol=1e-6)
    finally:
        remote.close()
    assert remote._process.exitcode is not None  # the worker ended with its backend
    with pytest.raises(ModelWorkerDied, match="exited"):
        remote.step(_inputs([0], 0, np.random.default_rng(1)))


def test_a_load_error_in_the_worker_is_raised_in_the_server(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        ProcessBackend("torch", tmp_path / "nope", 4)


def test_served_with_a_worker_process_and_unavailable_once_it_dies(ckpt: str) -> None:
    """A served session acts through the worker; killing the worker turns later steps into
    UNAVAILABLE with a message that says so, and the rest of the server keeps answering."""
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, model_process=True)) as srv:
        backend = srv.server.engine.models.get(1).backend
        assert isinstance(backend, ProcessBackend)
        channel, client = stub(srv.address)
        sid = client.OpenSession(pb.OpenSessionRequest(deterministic=True)).session_id
        obs = np.zeros(4, np.float32)
        for _ in range(3):
            assert client.Act(act_request(sid, obs)).model_version == 1
        os.kill(backend.pid, signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as info:
            client.Act(act_request(sid, obs))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "model worker process" in info.value.details()
        assert client.GetModelInfo(pb.GetModelInfoRequest()).version == 1
        channel.close()


async def _batched_trial(backend, num: int, steps: int, max_batch: int, bad: tuple | None = None,
                         depth: int = 2) -> list[list]:
    """`num` sessions step together for `steps` ticks through a Batcher; `bad` = (tick, session
    index, how) breaks that step past validation on purpose: "shape" (fails as the pass is built)
    or "slot" (a cache slot that does not exist: fails in the model worker)."""
    m = LoadedModel("m", 1, backend)
    batcher = Batcher(max_batch_size=max_batch, max_wait_ms=2.0, pipeline_depth=depth)
    batcher.start()
    table = SessionTable(num, 60.0, backend.context_length)
    sids = [table.open(1, backend.zero_action(), deterministic=False, seed=i + 1).session_id
            for i in range(num)]
    out: dict[str, list] = {s: [] for s in sids}

    async def one(i: int, sid: str, t: int) -> None:
        obs = {"obs": np.full(4, np.sin(i + 0.1 * t), np.float32)}
        plan = table.begin_step(sid, 1.0, t == 0)
        sent = plan
        if bad is not None and bad[:2] == (t, i):
            if bad[2] == "shape":
                obs = {"obs": np.zeros(5, np.float32)}
            else:
                sent = plan._replace(slot=10_000)
        try:
            action = await batcher.submit(m, sent, obs, timeout=30)
        except Exception as e:  # noqa: BLE001 - recorded and compared
            table.abort_step(plan)
            out[sid].append(type(e).__name__)
            return
        table.commit_step(plan, action, obs)
        out[sid].append(int(action))

    for t in range(steps):
        await asyncio.gather(*(one(i, s, t) for i, s in enumerate(sids)))
    await batcher.stop()
    return list(out.values())  # per session, in opening order


@pytest.mark.parametrize("depth", [2, 1])
def test_pipelined_passes_act_like_the_in_process_model(ckpt: str, depth: int) -> None:
    """48 sessions in passes of 24: the second pass of a tick is sent while the first computes,
    and every action equals the in-process backend's (one pass per tick). Depth 1 turns
    pipelining off: each pass is a `step` that waits for its answer."""
    remote = load_backend("torch", ckpt, 48, "cpu", process=True)
    assert remote.pipelined
    outstanding: list[int] = []  # passes unanswered at each send
    send, receive, counts = remote.send, remote.receive, [0, 0]

    def counting_send(inputs: StepInputs) -> None:
        outstanding.append(counts[0] - counts[1])
        counts[0] += 1
        send(inputs)

    def counting_receive():
        try:
            return receive()
        finally:
            counts[1] += 1

    remote.send, remote.receive = counting_send, counting_receive
    try:
        got = asyncio.run(_batched_trial(remote, 48, 12, max_batch=24, depth=depth))
    finally:
        remote.close()
    want = asyncio.run(_batched_trial(load_backend("torch", ckpt, 48, "cpu"), 48, 12, 48))
    assert got == want
    if depth == 1:
        assert counts == [0, 0]
    else:
        assert counts[0] >= 24 and max(outstanding) >= 1  # passes overlapped in the worker
    assert ServerConfig.from_env({"POLYSKILL_PIPELINE_DEPTH": str(depth)}).pipeline_depth == depth
    with pytest.raises(ValueError, match="pipeline_depth must be >= 1, got 0"):
        ServerConfig.from_env({"POLYSKILL_PIPELINE_DEPTH": "0"})


@pytest.mark.parametrize("how", ["shape", "slot"])
def test_a_step_that_breaks_a_pipelined_pass_fails_alone(ckpt: str, how: str) -> None:
    remote = load_backend("torch", ckpt, 40, "cpu", process=True)
    try:
        got = asyncio.run(_batched_trial(remote, 40, 4, max_batch=40, bad=(2, 5, how)))
        clean = asyncio.run(_batched_trial(remote, 40, 0, max_batch=40))  # worker still serves
    finally:
        remote.close()
    want = asyncio.run(_batched_trial(load_backend("torch", ckpt, 40, "cpu"), 40, 4, 40))
    assert clean == [[]] * 40
    assert got[5][2] == "RuntimeError" and got[5][:2] == want[5][:2]
    assert got[:5] + got[6:] == want[:5] + want[6:]


def test_a_pipelined_pass_to_a_dead_worker_fails_as_unavailable(ckpt: str) -> None:
    remote = load_backend("torch", ckpt, 40, "cpu", process=True)
    os.kill(remote.pid, signal.SIGKILL)
    try:
        got = asyncio.run(_batched_trial(remote, 40, 2, max_batch=40))
    finally:
        remote.close()
    assert got == [["ModelWorkerDied", "ModelWorkerDied"]] * 40  # not a timeout, no retries
