"""`--model-process`: the model in its own worker process steps exactly like the in-process
backend, fails clearly when it cannot load or dies, and stops with its model.

    .venv/bin/python -m pytest -q tests/integration/test_model_process.py
"""

from __future__ import annotations

import os
import signal

import grpc
import numpy as np
import pytest
from server_helpers import act_request, cartpole_checkpoint, stub

from polyskill.agent.policy import StepInputs
from polyskill.server.backends.process import ModelWorkerDied, ProcessBackend
from polyskill.server.config import ServerConfig
from polyskill.server.models import load_backend
from polyskill.server.sessions import RawStep
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
