"""ActBatch: one step of many sessions per call, against a real server on loopback.

A batch must act exactly as the same sessions stepped one by one, and be all or nothing: a bad
row (or an unknown, closed or repeated session) is rejected naming its row, and no session of the
request advances.

    .venv/bin/python -m pytest -q tests/integration/test_act_batch.py
"""

from __future__ import annotations

import asyncio

import gymnasium as gym
import numpy as np
import pytest
from server_helpers import SMALL, dict_checkpoint, stub

from polyskill.server.config import ServerConfig
from polyskill.server.testing import ServerThread, make_checkpoint
from polyskill_client import (
    AsyncPolicyClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PolicyClient,
)
from polyskill_client._base import build_batch_request

pytestmark = pytest.mark.timeout(60)
B, T = 4, 6


def batch_obs(t: int, rows: int = B) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(t)
    return {"pos": rng.uniform(-1, 1, (rows, 3)).astype(np.float32),
            "cell": (np.arange(rows) + t) % 5,
            "doors": np.stack([np.arange(rows) % 2, (np.arange(rows) + t) % 3], axis=1)}


def row(obs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in obs.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    ckpt = dict_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "dict"))
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, max_sessions=16)) as srv:
        yield srv


def rewards(t: int) -> list[float]:
    return [float(t * 10 + i) for i in range(B)]


def test_batch_acts_exactly_as_sessions_stepped_one_by_one(server: ServerThread) -> None:
    seeds = [11, 12, 13, 14]
    with PolicyClient(server.address) as client:
        batched = [client.open_session(seed=s) for s in seeds]  # sampled, not deterministic
        alone = [client.open_session(seed=s) for s in seeds]
        for t in range(T):
            obs, new = batch_obs(t), [t == 3 and i % 2 == 0 for i in range(B)]
            r = client.act_batch(batched, obs, rewards(t), new)
            assert r.actions.shape == (B,) and r.actions.dtype == np.int64
            assert r.steps.tolist() == [t] * B and (r.model_versions == 1).all()
            one = [s.act(row(obs, i), rewards(t)[i], new[i]) for i, s in enumerate(alone)]
            assert r.actions.tolist() == [int(x.action) for x in one]
        assert [s.close() for s in batched] == [T] * B


def test_a_bad_row_is_rejected_by_index_and_no_session_advances(server: ServerThread) -> None:
    with PolicyClient(server.address) as client:
        sessions = [client.open_session(deterministic=True) for _ in range(B)]
        client.act_batch(sessions, batch_obs(0))
        bad = batch_obs(1)
        bad["cell"][2] = 7  # out of range for Discrete(5)
        with pytest.raises(InvalidArgument, match="row 2") as e:
            client.act_batch(sessions, bad)
        assert "cell" in e.value.message
        bad = batch_obs(1)
        bad["pos"][1, 0] = np.nan
        with pytest.raises(InvalidArgument, match="row 1"):
            client.act_batch(sessions, bad)
        with pytest.raises(InvalidArgument, match="holds 4 but the request lists 3|lists 3"):
            client.act_batch(sessions[:3], batch_obs(1))
        with pytest.raises(InvalidArgument, match="listed twice"):
            client.act_batch([sessions[0], sessions[0]], batch_obs(1, rows=2))
        with pytest.raises(InvalidArgument, match="rewards holds 2 values for 4"):
            client.act_batch(sessions, batch_obs(1), rewards=[0.0, 1.0])
        with pytest.raises(InvalidArgument, match="row 3: reward must be a finite"):
            client.act_batch(sessions, batch_obs(1), rewards=[0.0, 0.0, 0.0, float("inf")])
        with pytest.raises(NotFound, match="row 1 .*nope"):
            client.act_batch([sessions[0], "nope"], batch_obs(1, rows=2))
        closed = client.open_session()
        closed.close()
        with pytest.raises(FailedPrecondition, match="row 1"):
            client.act_batch([sessions[0], closed], batch_obs(1, rows=2))
        # nothing above counted: the next good batch is everyone's step 1
        assert client.act_batch(sessions, batch_obs(1)).steps.tolist() == [1] * B
        assert sessions[0].act(row(batch_obs(2), 0)).step == 2


def test_stream_and_asyncio_client(server: ServerThread) -> None:
    with PolicyClient(server.address) as client:
        ids = [client.open_session(deterministic=True).id for _ in range(B)]
        _, raw = stub(server.address)
        requests = [build_batch_request(ids, batch_obs(t), rewards(t), None) for t in range(T)]
        answers = list(raw.ActBatchStream(iter(requests)))
        assert [list(a.steps) for a in answers] == [[t] * B for t in range(T)]

    async def run() -> list[int]:
        async with AsyncPolicyClient(server.address) as aclient:
            sessions = [await aclient.open_session(deterministic=True) for _ in range(B)]
            for t in range(T):
                r = await aclient.act_batch(sessions, batch_obs(t), rewards(t))
            return r.actions.tolist()

    # same deterministic model, same inputs: the asyncio client's batch ends where the stream did
    expected = np.frombuffer(answers[-1].actions.data, np.int64).tolist()
    assert asyncio.run(run()) == expected


def test_continuous_actions_and_text_fields(tmp_path) -> None:
    space = gym.spaces.Dict({"mission": gym.spaces.Text(20), "x": gym.spaces.Box(-1, 1, (2,))})
    ckpt = make_checkpoint(str(tmp_path / "text"), space, gym.spaces.Box(-2, 2, (3,)), **SMALL)
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0)) as srv, \
            PolicyClient(srv.address) as client:
        sessions = [client.open_session(deterministic=True) for _ in range(3)]
        obs = {"mission": ["go to the red ball", "open the door", "pick up a key"],
               "x": np.zeros((3, 2), np.float32)}
        r = client.act_batch(sessions, obs)
        assert r.actions.shape == (3, 3) and r.actions.dtype == np.float32
        assert (np.abs(r.actions) <= 2).all()
        one = sessions[0].act({"mission": "go to the red ball", "x": np.zeros(2, np.float32)})
        assert one.step == 1
        with pytest.raises(InvalidArgument, match="texts"):
            client.act_batch(sessions, {"mission": "one string", "x": obs["x"]})
