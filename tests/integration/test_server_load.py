"""200 concurrent sessions stepping over ActStream against a real loopback server: zero errors,
one in-order response per request, and steps really batched together.

    .venv/bin/python -m pytest -q tests/integration/test_server_load.py
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from server_helpers import cartpole_checkpoint

from polyskill.server.config import ServerConfig
from polyskill.server.testing import ServerThread
from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
from polyskill_client.tensors import encode_observation, to_numpy

SESSIONS, STEPS = 200, 15


async def drive(address: str) -> list[list[int]]:
    async with grpc.aio.insecure_channel(address) as channel:
        client = pb_grpc.PolicyServiceStub(channel)

        async def one(i: int) -> list[int]:
            sid = (await client.OpenSession(pb.OpenSessionRequest(seed=i + 1))).session_id
            rng = np.random.default_rng(i)
            call = client.ActStream()
            steps = []
            for t in range(STEPS):
                obs = rng.normal(size=4).astype(np.float32)
                await call.write(pb.ActRequest(session_id=sid, observation=encode_observation(obs),
                                               reward=1.0, new_episode=t == 8))
                resp = await call.read()
                assert int(to_numpy(resp.action)) in (0, 1)
                steps.append(resp.step)
            await call.done_writing()
            assert await call.read() == grpc.aio.EOF
            closed = await client.CloseSession(pb.CloseSessionRequest(session_id=sid))
            assert closed.steps == STEPS
            return steps

        return await asyncio.gather(*(one(i) for i in range(SESSIONS)))


@pytest.mark.timeout(60)
def test_200_concurrent_streamed_sessions_zero_errors(tmp_path) -> None:
    ckpt = cartpole_checkpoint(str(tmp_path / "ckpt"))
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, max_sessions=SESSIONS)) as srv:
        results = asyncio.run(drive(srv.address))
        metrics = srv.server.metrics
        batches = metrics.batch_size.collect()[0].samples
        rejected = metrics.rejected.collect()[0].samples
    assert results == [list(range(STEPS))] * SESSIONS
    count = next(s.value for s in batches if s.name.endswith("_count"))
    total = next(s.value for s in batches if s.name.endswith("_sum"))
    assert total == SESSIONS * STEPS
    assert count < total / 4, f"steps were not batched: {count} passes for {total} steps"
    assert not [s for s in rejected if s.value], rejected
