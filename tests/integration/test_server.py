"""The gRPC server on loopback: parity with the local policy, every error class, session state
untouched by bad requests, idle expiry, health, reflection, auth, metrics, graceful shutdown.

    .venv/bin/python -m pytest -q tests/integration/test_server.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import gymnasium as gym
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from server_helpers import (
    SyncStream,
    act_request,
    cartpole_checkpoint,
    dict_checkpoint,
    pendulum_checkpoint,
    stub,
)

from polyskill.agent.checkpoint import load_network
from polyskill.agent.policy import Policy, StepInputs
from polyskill.server.config import ServerConfig
from polyskill.server.testing import ServerThread
from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client.tensors import from_numpy, to_numpy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ckpt")
    return {"cartpole": cartpole_checkpoint(str(root / "cartpole")),
            "pendulum": pendulum_checkpoint(str(root / "pendulum")),
            "dict": dict_checkpoint(str(root / "dict"))}


@pytest.fixture(scope="module")
def dict_server(ckpts: dict[str, str]):
    with ServerThread(ServerConfig(checkpoint=ckpts["dict"], port=0, max_sessions=8)) as srv:
        yield srv


def code_of(fn, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value.code(), info.value.details()


# ---- parity -------------------------------------------------------------------------------------
def local_trial(ckpt: str, env_id: str, deterministic: bool, seed: int, episodes: int,
                cap: int) -> list[tuple[np.ndarray, np.ndarray, float, bool]]:
    """Run the in-process policy: (obs, action, reward for previous, new_episode) per step."""
    net = load_network(ckpt)
    policy = Policy(net, num_slots=1)
    rng = np.random.default_rng(seed)
    env = gym.make(env_id)
    prev_action = np.zeros(() if net.action_spec.kind == "discrete" else net.action_spec.dim,
                           np.int64 if net.action_spec.kind == "discrete" else np.float32)
    prev_reward, pos, out = 0.0, 0, []
    for ep in range(episodes):
        obs, _ = env.reset(seed=100 + ep)
        new_episode = True
        for _ in range(cap):
            params = policy.step(StepInputs(
                obs={"obs": obs[None].astype(np.float32)}, prev_action=prev_action[None],
                prev_reward=np.array([prev_reward], np.float32),
                new_episode=np.array([new_episode]), positions=np.array([pos])))
            action = params.select(np.array([deterministic]), [rng])[0]
            out.append((obs, np.asarray(action), prev_reward, new_episode))
            obs, prev_reward, term, trunc, _ = env.step(action)
            prev_action, pos, new_episode = np.asarray(action), pos + 1, False
            if term or trunc:
                break
    return out


@pytest.mark.parametrize("env_id, name, process", [
    ("CartPole-v1", "cartpole", False), ("Pendulum-v1", "pendulum", False),
    ("Pendulum-v1", "pendulum", True)])
def test_parity_with_local_policy_over_a_multi_episode_trial(ckpts, env_id: str, name: str,
                                                             process: bool) -> None:
    """Served actions equal the in-process policy's, step by step, with sessions batched together:
    deterministic and seeded-sampling sessions run at once from 4 threads (`process`: the model
    in its own worker process, --model-process)."""
    ckpt = ckpts[name]
    trials = {(det, seed): local_trial(ckpt, env_id, det, seed, episodes=3, cap=30)
              for det, seed in [(True, 1), (True, 2), (False, 3), (False, 4)]}
    served: dict = {}
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, model_process=process)) as srv:
        channel, client = stub(srv.address)

        def run(key: tuple[bool, int]) -> None:
            det, seed = key
            sid = client.OpenSession(pb.OpenSessionRequest(deterministic=det, seed=seed)).session_id
            stream, actions = SyncStream(client), []
            for obs, _, reward, new_episode in trials[key]:
                resp = stream.step(act_request(sid, obs.astype(np.float32), reward, new_episode))
                actions.append(to_numpy(resp.action))
                assert resp.step == len(actions) - 1 and resp.model_version == 1
            stream.close()
            served[key] = actions

        threads = [threading.Thread(target=run, args=(k,)) for k in trials]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
        channel.close()
    for key, steps in trials.items():
        assert len(served[key]) == len(steps)
        for t, ((_, local, _, _), remote) in enumerate(zip(steps, served[key], strict=True)):
            np.testing.assert_allclose(remote, local, rtol=0, atol=1e-5, err_msg=f"{key} step {t}")


# ---- errors -------------------------------------------------------------------------------------
GOOD = {"pos": np.array([0.1, -0.2, 0.3], np.float32), "cell": np.array(2),
        "doors": np.array([1, 2])}


@pytest.mark.parametrize("bad, field, words", [
    ({k: v for k, v in GOOD.items() if k != "cell"}, "cell", ["missing ['cell']", "expects"]),
    ({**GOOD, "extra": np.zeros(1, np.float32)}, "extra", ["unexpected ['extra']"]),
    ({**GOOD, "pos": np.zeros(2, np.float32)}, "pos", ["shape [3]", "got [2]"]),
    ({**GOOD, "cell": np.array(2.0, np.float32)}, "cell", ["integer", "discrete dtype int64"]),
    ({**GOOD, "pos": np.array([0.1, np.nan, 0.0], np.float32)}, "pos", ["NaN", "finite"]),
    ({**GOOD, "pos": np.array([0.1, np.inf, 0.0], np.float32)}, "pos", ["NaN or inf"]),
    ({**GOOD, "cell": np.array(5)}, "cell", ["n = 5"]),
    ({**GOOD, "doors": np.array([1, 3])}, "doors", ["n = [2, 3]"]),
    ({**GOOD, "cell": np.array(-1)}, "cell", ["[0, "]),
])
def test_invalid_observations_name_the_field_and_spec(dict_server, bad, field, words) -> None:
    channel, client = stub(dict_server.address)
    sid = client.OpenSession(pb.OpenSessionRequest()).session_id
    code, details = code_of(client.Act, act_request(sid, bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"'{field}'" in details and all(w in details for w in words), details
    client.CloseSession(pb.CloseSessionRequest(session_id=sid))
    channel.close()


def test_byte_length_and_dtype_name_errors(dict_server) -> None:
    channel, client = stub(dict_server.address)
    sid = client.OpenSession(pb.OpenSessionRequest()).session_id
    obs = {k: from_numpy(v) for k, v in GOOD.items()}
    obs["pos"] = pb.Tensor(dtype="float32", shape=[3], data=b"\0" * 8)
    code, details = code_of(client.Act, pb.ActRequest(session_id=sid, observation=obs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'pos'" in details and "8 bytes" in details
    obs["pos"] = pb.Tensor(dtype="f32", shape=[3], data=b"\0" * 12)
    code, details = code_of(client.Act, pb.ActRequest(session_id=sid, observation=obs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown dtype 'f32'" in details
    channel.close()


def test_session_errors_not_found_closed_full_unknown_model(ckpts) -> None:
    with ServerThread(ServerConfig(checkpoint=ckpts["dict"], port=0, max_sessions=2)) as srv:
        channel, client = stub(srv.address)
        code, details = code_of(client.Act, act_request("nope", GOOD))
        assert code == grpc.StatusCode.NOT_FOUND and "unknown session 'nope'" in details
        a = client.OpenSession(pb.OpenSessionRequest()).session_id
        client.OpenSession(pb.OpenSessionRequest())
        code, details = code_of(client.OpenSession, pb.OpenSessionRequest())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "full (2 sessions)" in details
        client.Act(act_request(a, GOOD))
        assert client.CloseSession(pb.CloseSessionRequest(session_id=a)).steps == 1
        code, details = code_of(client.Act, act_request(a, GOOD))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "closed" in details
        code, _ = code_of(client.CloseSession, pb.CloseSessionRequest(session_id=a))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        client.OpenSession(pb.OpenSessionRequest())  # the closed session's slot is free again
        code, details = code_of(client.GetModelInfo, pb.GetModelInfoRequest(model="champion"))
        assert code == grpc.StatusCode.NOT_FOUND and "'champion'" in details
        assert client.GetModelInfo(pb.GetModelInfoRequest(model="1")).version == 1
        channel.close()


def test_no_model_is_unavailable() -> None:
    with ServerThread(ServerConfig(port=0)) as srv:
        channel, client = stub(srv.address)
        for call, req in [(client.OpenSession, pb.OpenSessionRequest()),
                          (client.GetModelInfo, pb.GetModelInfoRequest())]:
            code, details = code_of(call, req)
            assert code == grpc.StatusCode.UNAVAILABLE and "no model is loaded" in details
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        channel.close()


def test_bad_requests_change_no_session_state(dict_server) -> None:
    """Session B gets a rejected request before every step; its steps and actions equal A's."""
    channel, client = stub(dict_server.address)
    a, b = (client.OpenSession(pb.OpenSessionRequest(seed=42)).session_id for _ in range(2))
    rng = np.random.default_rng(0)
    bads = [{**GOOD, "pos": np.zeros(2, np.float32)}, {**GOOD, "cell": np.array(9)},
            {"pos": GOOD["pos"]}, {**GOOD, "pos": np.full(3, np.nan, np.float32)}]
    for t in range(12):
        obs = {"pos": rng.uniform(-1, 1, 3).astype(np.float32), "cell": np.array(t % 5),
               "doors": np.array([t % 2, t % 3])}
        ra = client.Act(act_request(a, obs, reward=float(t), new_episode=t == 6))
        code, _ = code_of(client.Act, act_request(b, bads[t % len(bads)], reward=99.0))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        if t == 5:  # a bad request on a stream ends that stream; the session continues
            stream = SyncStream(client)
            code, _ = code_of(stream.step, act_request(b, bads[0]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        rb = client.Act(act_request(b, obs, reward=float(t), new_episode=t == 6))
        assert rb.step == ra.step == t
        assert to_numpy(rb.action) == to_numpy(ra.action)
    channel.close()


def test_idle_session_expires_and_frees_its_slot(ckpts) -> None:
    config = ServerConfig(checkpoint=ckpts["dict"], port=0, max_sessions=1, idle_timeout_s=0.3)
    with ServerThread(config) as srv:
        channel, client = stub(srv.address)
        sid = client.OpenSession(pb.OpenSessionRequest()).session_id
        client.Act(act_request(sid, GOOD))
        time.sleep(1.0)
        code, details = code_of(client.Act, act_request(sid, GOOD))
        assert code == grpc.StatusCode.NOT_FOUND and "expired" in details
        client.OpenSession(pb.OpenSessionRequest())  # slot freed
        channel.close()


# ---- stock clients: health, reflection ----------------------------------------------------------
def test_health_and_reflection_answer_stock_clients(dict_server) -> None:
    channel = grpc.insecure_channel(dict_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "polyskill.v1.PolicyService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    assert "polyskill.v1.PolicyService" in services and "grpc.health.v1.Health" in services
    fd = db.FindFileContainingSymbol("polyskill.v1.PolicyService")
    assert fd.name == "polyskill/v1/policy.proto"
    methods = {m.name for m in fd.service[0].method}
    assert methods == {"OpenSession", "Act", "ActStream", "ActBatch", "ActBatchStream",
                       "CloseSession", "GetModelInfo"}
    channel.close()


# ---- auth, metrics ------------------------------------------------------------------------------
def test_bearer_token_required_when_configured(ckpts) -> None:
    with ServerThread(ServerConfig(checkpoint=ckpts["dict"], port=0, auth_token="s3cret")) as srv:
        channel, client = stub(srv.address)
        code, details = code_of(client.OpenSession, pb.OpenSessionRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
        code, _ = code_of(client.OpenSession, pb.OpenSessionRequest(),
                          metadata=(("authorization", "Bearer nope"),))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        good = (("authorization", "Bearer s3cret"),)
        sid = client.OpenSession(pb.OpenSessionRequest(), metadata=good).session_id
        stream = SyncStream(client, metadata=good)
        assert stream.step(act_request(sid, GOOD)).step == 0
        stream.close()
        code, _ = code_of(SyncStream(client).step, act_request(sid, GOOD))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)  # probes need no token
        assert health.Check(health_pb2.HealthCheckRequest()).status == 1
        channel.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint(ckpts) -> None:
    port = free_port()
    with ServerThread(ServerConfig(checkpoint=ckpts["dict"], port=0, metrics_port=port)) as srv:
        channel, client = stub(srv.address)
        sid = client.OpenSession(pb.OpenSessionRequest()).session_id
        for _ in range(3):
            client.Act(act_request(sid, GOOD))
        code_of(client.Act, act_request(sid, {"pos": GOOD["pos"]}))
        code_of(client.Act, act_request("nope", GOOD))
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        channel.close()
    assert "polyskill_step_latency_seconds_count 3.0" in text
    assert 'polyskill_rejected_requests_total{code="INVALID_ARGUMENT"} 1.0' in text
    assert 'polyskill_rejected_requests_total{code="NOT_FOUND"} 1.0' in text
    assert "polyskill_active_sessions 1.0" in text and "polyskill_batch_size_bucket" in text
    assert "polyskill_cache_bytes" in text


# ---- CLI and graceful shutdown ------------------------------------------------------------------
def test_cli_serves_and_drains_on_sigterm(ckpts) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "polyskill.server.app", "--checkpoint", ckpts["dict"],
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "POLYSKILL_MAX_SESSIONS": "3"})
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, (line, proc.stderr.read() if proc.poll() else "")
        channel, client = stub(line.split()[-1])
        sid = client.OpenSession(pb.OpenSessionRequest()).session_id
        assert client.Act(act_request(sid, GOOD)).step == 0
        [client.OpenSession(pb.OpenSessionRequest()) for _ in range(2)]
        code, _ = code_of(client.OpenSession, pb.OpenSessionRequest())  # env var took effect
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "draining" in proc.stderr.read()
    finally:
        proc.kill() if proc.poll() is None else None


def test_malformed_model_uri_is_a_clear_error() -> None:
    out = subprocess.run([sys.executable, "-m", "polyskill.server.app", "--model",
                          "models:/polyskill"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "models:/NAME@ALIAS" in out.stderr
