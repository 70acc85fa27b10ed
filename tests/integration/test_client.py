"""The client library against real servers on loopback: sync and asyncio, streaming and unary,
every error class mapped to its exception, reconnect after a restart, TLS + token, clean exit.

    .venv/bin/python -m pytest -q tests/integration/test_client.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from server_helpers import SMALL, dict_checkpoint

from polyskill.server.config import ServerConfig
from polyskill.server.testing import ServerThread, make_checkpoint
from polyskill_client import (
    NO_RETRY,
    AsyncPolicyClient,
    DeadlineExceeded,
    FailedPrecondition,
    GymSession,
    InvalidArgument,
    NotFound,
    PolicyClient,
    PolyskillError,
    ResourceExhausted,
    RetryPolicy,
    SessionLost,
    SpecMismatch,
    Unauthenticated,
    Unavailable,
)

pytestmark = pytest.mark.timeout(60)


def observations(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"pos": rng.uniform(-1, 1, 3).astype(np.float32), "cell": np.array(t % 5),
             "doors": np.array([t % 2, t % 3])} for t in range(n)]


BAD = {"pos": np.zeros(2, np.float32), "cell": np.array(1), "doors": np.array([0, 0])}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return dict_checkpoint(str(tmp_path_factory.mktemp("ckpt") / "dict"))


@pytest.fixture(scope="module")
def server(ckpt: str):
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, max_sessions=16)) as srv:
        yield srv


def run_sync(address: str, streaming: bool, steps: int = 8) -> list[tuple[int, int, int]]:
    """(action, step, model_version) per step of one deterministic two-episode session."""
    out = []
    with PolicyClient(address) as client:
        with client.open_session(deterministic=True, streaming=streaming) as session:
            assert sorted(session.model.field_names) == ["cell", "doors", "pos"]
            for t, obs in enumerate(observations(steps)):
                r = session.act(obs, reward=float(t), new_episode=t == steps // 2)
                assert r.action.dtype == np.int64 and r.action.shape == () and r.latency_s > 0
                out.append((int(r.action), r.step, r.model_version))
            assert session.close() == steps
            assert session.close() is None  # idempotent
    return out


async def run_async(address: str, streaming: bool, steps: int = 8) -> list[tuple[int, int, int]]:
    out = []
    async with AsyncPolicyClient(address) as client:
        assert (await client.model_info()).action_spec.n == 3
        async with await client.open_session(deterministic=True, streaming=streaming) as session:
            for t, obs in enumerate(observations(steps)):
                r = await session.act(obs, reward=float(t), new_episode=t == steps // 2)
                out.append((int(r.action), r.step, r.model_version))
    return out


def test_sync_and_async_streaming_and_unary_give_the_same_actions(server) -> None:
    reference = run_sync(server.address, streaming=True)
    assert [s for _, s, _ in reference] == list(range(8)) and {v for *_, v in reference} == {1}
    assert run_sync(server.address, streaming=False) == reference
    assert asyncio.run(run_async(server.address, streaming=True)) == reference
    assert asyncio.run(run_async(server.address, streaming=False)) == reference


def test_bare_array_observation_and_gym_session(tmp_path: Path) -> None:
    env = gym.make("Pendulum-v1")
    ckpt = make_checkpoint(str(tmp_path / "pend"), env.observation_space, env.action_space,
                           **SMALL)
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0)) as srv, PolicyClient(srv.address) as c:
        with c.open_session(seed=3) as session:
            agent = GymSession(session, env)
            obs, _ = env.reset(seed=0)
            reward = 0.0
            for _ in range(5):
                action = agent.step(obs, reward)
                assert action.dtype == np.float32 and action.shape == (1,)
                assert -2.0 <= action[0] <= 2.0
                obs, reward, *_ = env.step(action)
            raw = session.step(obs.astype(np.float64))  # a bare array is the field "obs"
            assert raw.shape == (1,)
            with pytest.raises(SpecMismatch, match="env gives vector shape \\[4\\]"):
                GymSession(session, gym.make("CartPole-v1"))


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("streaming", [True, False])
def test_every_error_class_sync(server, ckpt: str, streaming: bool) -> None:
    with PolicyClient(server.address, retry=NO_RETRY) as client:
        session = client.open_session(streaming=streaming)
        obs = observations(1)[0]
        with pytest.raises(InvalidArgument) as info:
            session.step(BAD)
        assert "'pos'" in info.value.message and "shape [3]" in info.value.message
        assert info.value.code.name == "INVALID_ARGUMENT" and "INVALID_ARGUMENT" in str(info.value)
        assert session.act(obs).step == 0  # the session continues after a rejected step
        with pytest.raises(DeadlineExceeded):
            session.step(obs, timeout=1e-6)
        with pytest.raises(NotFound, match="'champion'"):
            client.open_session("champion")
        with pytest.raises(NotFound, match="'champion'"):
            client.model_info("champion")
        client.close_session(session.id)  # closed behind the session's back
        with pytest.raises(FailedPrecondition, match="closed"):
            session.step(obs)
        with pytest.raises(FailedPrecondition):
            client.close_session(session.id)
        session.close()
        with pytest.raises(FailedPrecondition, match="closed on this client"):
            session.step(obs)

    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, max_sessions=1)) as srv:
        with PolicyClient(srv.address) as client:
            client.open_session()
            with pytest.raises(ResourceExhausted, match="full"):
                client.open_session()
    with ServerThread(ServerConfig(port=0)) as srv:  # no model loaded
        started = time.monotonic()
        with PolicyClient(srv.address, retry=RetryPolicy(max_elapsed_s=0.3)) as client:
            with pytest.raises(Unavailable, match="no model is loaded"):
                client.open_session()
        assert 0.1 < time.monotonic() - started < 5, "UNAVAILABLE is retried up to max_elapsed_s"
    with ServerThread(ServerConfig(checkpoint=ckpt, port=0, auth_token="s3cret")) as srv:
        with PolicyClient(srv.address) as client:
            with pytest.raises(Unauthenticated, match="Bearer"):
                client.open_session()
        with PolicyClient(srv.address, token="s3cret") as client:
            with client.open_session(streaming=streaming) as session:
                assert session.act(obs).step == 0


@pytest.mark.parametrize("streaming", [True, False])
def test_every_error_class_async(server, streaming: bool) -> None:
    async def scenario() -> None:
        async with AsyncPolicyClient(server.address, retry=NO_RETRY) as client:
            session = await client.open_session(streaming=streaming)
            obs = observations(1)[0]
            with pytest.raises(InvalidArgument, match="'pos'"):
                await session.step(BAD)
            assert (await session.act(obs)).step == 0
            with pytest.raises(DeadlineExceeded):
                await session.step(obs, timeout=1e-6)
            with pytest.raises(NotFound, match="'champion'"):
                await client.open_session("champion")
            await client.close_session(session.id)
            with pytest.raises(FailedPrecondition, match="closed"):
                await session.step(obs)
            await session.close()
        async with AsyncPolicyClient("127.0.0.1:1", retry=NO_RETRY, timeout=2) as client:
            with pytest.raises(Unavailable):
                await client.open_session()

    asyncio.run(scenario())


def test_errors_are_all_polyskill_errors() -> None:
    for cls in (InvalidArgument, NotFound, SessionLost, FailedPrecondition, ResourceExhausted,
                Unavailable, DeadlineExceeded, Unauthenticated):
        assert issubclass(cls, PolyskillError)
    assert issubclass(SessionLost, NotFound)


# ---- reconnect ----------------------------------------------------------------------------------
def test_restart_loses_the_session_unless_reopen(ckpt: str) -> None:
    """UNAVAILABLE while the server is down is retried; the restarted server no longer knows the
    session: SessionLost by default, a fresh session (step 0, new episode) with reopen=True."""
    first = ServerThread(ServerConfig(checkpoint=ckpt, port=0)).start()
    port, obs = first.port, observations(1)[0]
    with PolicyClient(f"127.0.0.1:{port}", retry=RetryPolicy(max_elapsed_s=10)) as client:
        strict = client.open_session()
        lenient = client.open_session(reopen=True, streaming=False)
        for s in (strict, lenient):
            s.step(obs), s.step(obs)
        first.stop(grace=0.1)
        holder: dict[str, ServerThread] = {}
        restart = threading.Timer(0.5, lambda: holder.setdefault("srv", ServerThread(
            ServerConfig(checkpoint=ckpt, port=port)).start()))
        restart.start()
        try:
            started = time.monotonic()
            result = lenient.act(obs)  # retried until the server is back, then reopened
            assert time.monotonic() - started >= 0.3
            assert result.step == 0 and lenient.reopens == 1
            assert lenient.act(obs).step == 1
            with pytest.raises(SessionLost, match="reopen=True") as info:
                strict.step(obs)
            assert "unknown session" in info.value.message
        finally:
            restart.join()
            client.close()
            holder["srv"].stop()


def test_unavailable_after_retry_budget() -> None:
    with PolicyClient("127.0.0.1:1", retry=RetryPolicy(max_elapsed_s=0.2)) as client:
        with pytest.raises(Unavailable):
            client.model_info()


# ---- TLS + token --------------------------------------------------------------------------------
def test_tls_and_token(ckpt: str, tmp_path: Path) -> None:
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    config = ServerConfig(checkpoint=ckpt, port=0, tls_cert=str(cert), tls_key=str(key),
                          auth_token="t0ken")
    with ServerThread(config) as srv:
        target = f"localhost:{srv.port}"
        with PolicyClient(target, root_certificates=str(cert), token="t0ken") as client:
            with client.open_session() as session:
                assert session.act(observations(1)[0]).step == 0
        with PolicyClient(target, root_certificates=str(cert), retry=NO_RETRY) as client:
            with pytest.raises(Unauthenticated):
                client.open_session()
        with PolicyClient(target, token="t0ken", retry=NO_RETRY) as client:  # plaintext to TLS
            with pytest.raises(Unavailable):
                client.open_session()


# ---- exit ---------------------------------------------------------------------------------------
def test_process_with_an_open_stream_exits_promptly(server) -> None:
    """A program that never closes its client or streaming session still exits (atexit closes)."""
    code = ("import numpy as np, sys; from polyskill_client import PolicyClient\n"
            f"c = PolicyClient({server.address!r}); s = c.open_session()\n"
            "obs = {'pos': np.zeros(3, np.float32), 'cell': np.array(0),"
            " 'doors': np.zeros(2, int)}\n"
            "print(s.step(obs)); sys.exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
