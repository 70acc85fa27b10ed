"""Hot swap inside one server (a scripted model source, no registry): pinned sessions stay on
their version, `migrate=reencode` moves a live session onto the new version from its stored
recent steps, and its next action equals a fresh session's fed the same steps on that version.
Run for both backends (torch, onnx)."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path

import grpc
import gymnasium as gym
import numpy as np
import pytest
from server_helpers import SMALL, SyncStream, act_request, stub

from polyskill.agent.checkpoint import load_network
from polyskill.agent.policy import Policy, StepInputs
from polyskill.server.config import ServerConfig
from polyskill.server.models import DEFAULT_ALIAS, LoadedModel, ModelStore, load_backend
from polyskill.server.testing import ServerThread, make_checkpoint
from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client.tensors import to_numpy


class ScriptedSource:
    """Versions from local checkpoints; the test moves `champion` by assigning `.current`."""

    follow = True

    def __init__(self, paths: dict[int, str], backend: str) -> None:
        self.paths, self.backend, self.current = paths, backend, 1

    def poll(self, num_slots: int, device: str, loaded: Collection[int] = ()
             ) -> tuple[list[LoadedModel], dict[str, int]]:
        v = self.current
        new = [] if v in loaded else [LoadedModel(
            "m", v, load_backend(self.backend, self.paths[v], num_slots, device))]
        return new, {DEFAULT_ALIAS: v, "champion": v}


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    env = gym.make("Pendulum-v1")  # continuous actions: compare floats, not argmaxes
    root = tmp_path_factory.mktemp("swap")
    return {v: make_checkpoint(str(root / f"v{v}"), env.observation_space, env.action_space,
                               seed=v, **SMALL) for v in (1, 2)}


def fresh_session_action(path: str, obs: list[np.ndarray], actions: list[np.ndarray]
                         ) -> np.ndarray:
    """The deterministic action of a fresh context on `path` fed the same 7 raw steps (the same
    previous actions, which a served fresh session could not reproduce: it would take its own)."""
    policy = Policy(load_network(path), 1)
    prev = [np.zeros(1, np.float32), *actions]
    for i in range(7):
        params = policy.step(StepInputs(
            obs={"obs": obs[i][None]}, prev_action=prev[i][None],
            prev_reward=np.array([0.1 * i if i else 0.0], np.float32),
            new_episode=np.array([i == 0]), positions=np.array([i])))
    return params.select(np.ones(1, bool), [])[0]


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("migrate", ["pin", "reencode"])
def test_swap_pins_or_reencodes(paths: dict[int, str], backend: str, migrate: str) -> None:
    source = ScriptedSource(paths, backend)
    store = ModelStore(source=source)
    store.apply(source, 8, "cpu")
    config = ServerConfig(port=0, max_sessions=8, poll_s=0.1, migrate=migrate, backend=backend)
    rng = np.random.default_rng(0)
    obs = [rng.uniform(-1, 1, 3).astype(np.float32) for _ in range(7)]
    with ServerThread(config, store) as srv:
        channel, client = stub(srv.address)
        live = client.OpenSession(pb.OpenSessionRequest(deterministic=True)).session_id
        pinned = client.OpenSession(pb.OpenSessionRequest(deterministic=True, model="1"))
        stream = SyncStream(client)
        actions = []
        for i in range(6):
            r = stream.step(act_request(live, obs[i], reward=0.1 * i))
            assert r.model_version == 1
            actions.append(to_numpy(r.action))

        source.current = 2  # the alias moves: v2 loads beside v1
        _wait(lambda: client.GetModelInfo(pb.GetModelInfoRequest()).version == 2)
        assert client.GetModelInfo(pb.GetModelInfoRequest(model="champion")).version == 2
        out = stream.step(act_request(live, obs[6], reward=0.6))
        pinned_out = client.Act(act_request(pinned.session_id, obs[0]))
        assert pinned_out.model_version == 1  # opened on an explicit version: never migrates
        if migrate == "pin":
            assert out.model_version == 1
        else:
            assert out.model_version == 2 and out.step == 6
            ref = fresh_session_action(paths[2], obs, actions)
            np.testing.assert_allclose(to_numpy(out.action), ref, atol=1e-4)

        # v1 is unloaded once no session uses it and no alias points to it
        stream.close()
        client.CloseSession(pb.CloseSessionRequest(session_id=live))
        client.CloseSession(pb.CloseSessionRequest(session_id=pinned.session_id))
        _wait(lambda: srv.server.engine.models.versions == [2])
        with pytest.raises(grpc.RpcError) as err:
            client.GetModelInfo(pb.GetModelInfoRequest(model="1"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        channel.close()


def test_registry_down_keeps_serving(paths: dict[int, str]) -> None:
    source = ScriptedSource(paths, "torch")
    store = ModelStore(source=source)
    store.apply(source, 4, "cpu")

    def broken(*args: object) -> None:
        raise ConnectionError("registry unreachable")

    source.poll = broken
    with ServerThread(ServerConfig(port=0, max_sessions=4, poll_s=0.05), store) as srv:
        channel, client = stub(srv.address)
        sid = client.OpenSession(pb.OpenSessionRequest()).session_id
        _wait(lambda: srv.server.engine.follower.failures >= 3)
        assert client.Act(act_request(sid, np.zeros(3, np.float32))).model_version == 1
        channel.close()


def test_serve_cli_options_exist(tmp_path: Path) -> None:
    import argparse

    from polyskill.server.app import add_serve_arguments
    from polyskill.server.config import config_from_args

    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    cfg = config_from_args(p.parse_args(["--model", "models:/polyskill@champion", "--poll-s",
                                         "2", "--migrate", "reencode", "--backend", "onnx"]))
    assert (cfg.poll_s, cfg.migrate, cfg.backend) == (2.0, "reencode", "onnx")
    with pytest.raises(ValueError, match="migrate must be pin or reencode"):
        ServerConfig(migrate="always")


def test_health_turns_serving_when_the_first_version_arrives(paths: dict[int, str]) -> None:
    """Started before the registry has a champion (or while it is down): NOT_SERVING and
    UNAVAILABLE steps, then SERVING as soon as the follower loads a version."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    source = ScriptedSource(paths, "torch")
    real_poll = source.poll
    source.poll = lambda *a: ([], {})  # nothing registered yet
    store = ModelStore(source=source)
    with ServerThread(ServerConfig(port=0, max_sessions=4, poll_s=0.05), store) as srv:
        channel, client = stub(srv.address)
        health = health_pb2_grpc.HealthStub(channel)

        def status() -> int:
            return health.Check(health_pb2.HealthCheckRequest()).status

        assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as err:
            client.OpenSession(pb.OpenSessionRequest())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        source.poll = real_poll  # the first champion is registered
        _wait(lambda: status() == health_pb2.HealthCheckResponse.SERVING)
        sid = client.OpenSession(pb.OpenSessionRequest()).session_id
        assert client.Act(act_request(sid, np.zeros(3, np.float32))).model_version == 1
        channel.close()
