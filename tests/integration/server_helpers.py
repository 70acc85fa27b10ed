"""Shared pieces of the server integration tests: checkpoints, stubs, a sync stream driver."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import gymnasium as gym
import numpy as np

from polyskill.server.testing import make_checkpoint
from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
from polyskill_client.tensors import encode_observation

SMALL = dict(d_model=32, num_layers=2, num_heads=2, d_ff=64, context_length=16,
             encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=16)

DICT_SPACE = gym.spaces.Dict({
    "pos": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    "cell": gym.spaces.Discrete(5),
    "doors": gym.spaces.MultiDiscrete([2, 3]),
})


def cartpole_checkpoint(path: str) -> str:
    env = gym.make("CartPole-v1")
    return make_checkpoint(path, env.observation_space, env.action_space, **SMALL)


def pendulum_checkpoint(path: str) -> str:
    env = gym.make("Pendulum-v1")
    return make_checkpoint(path, env.observation_space, env.action_space, **SMALL)


def dict_checkpoint(path: str) -> str:
    return make_checkpoint(path, DICT_SPACE, gym.spaces.Discrete(3), **SMALL)


def stub(address: str, *interceptors: grpc.UnaryUnaryClientInterceptor
         ) -> tuple[grpc.Channel, pb_grpc.PolicyServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, pb_grpc.PolicyServiceStub(channel)


def act_request(session_id: str, obs: object, reward: float = 0.0,
                new_episode: bool = False) -> pb.ActRequest:
    return pb.ActRequest(session_id=session_id, observation=encode_observation(obs),
                         reward=reward, new_episode=new_episode)


class SyncStream:
    """Drive one ActStream step by step from sync code (requests fed through a queue)."""

    def __init__(self, stub: pb_grpc.PolicyServiceStub, metadata: tuple = ()) -> None:
        self._requests: queue.Queue[pb.ActRequest | None] = queue.Queue()
        self._responses: Iterator[pb.ActResponse] = stub.ActStream(
            iter(self._requests.get, None), metadata=metadata)

    def step(self, request: pb.ActRequest) -> pb.ActResponse:
        self._requests.put(request)
        return next(self._responses)

    def close(self) -> None:
        self._requests.put(None)
        for _ in self._responses:  # drain so the call ends (an unread stream hangs at exit)
            pass
