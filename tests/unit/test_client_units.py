"""Client pieces without a server: status-code mapping, backoff schedule, channel options, and the
gymnasium adapter's checks and conversions.

    .venv/bin/python -m pytest -q tests/unit/test_client_units.py
"""

from __future__ import annotations

import itertools

import grpc
import gymnasium as gym
import numpy as np
import pytest

from polyskill_client import errors
from polyskill_client.channel import ChannelConfig
from polyskill_client.gym_adapter import check_env, decode, encode
from polyskill_client.retry import RetryPolicy
from polyskill_client.specs import ActionSpec, ModelInfo, TensorSpec

MODEL = ModelInfo(
    name="m", version=3, aliases=("champion",),
    observation_spec=(TensorSpec("cell", "int64", (), "discrete", nvec=(5,)),
                      TensorSpec("pos", "float32", (3,), "vector", low=-1.0, high=1.0),
                      TensorSpec("rgb", "uint8", (8, 8, 3), "image", 0.0, 255.0)),
    action_spec=ActionSpec("continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0)),
    context_length=16, backend="torch-cpu")
SPACE = gym.spaces.Dict({"cell": gym.spaces.Discrete(5),
                         "pos": gym.spaces.Box(-1, 1, (3,), np.float32),
                         "rgb": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
ACTIONS = gym.spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize("code, cls", [
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
    (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
    (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
    (grpc.StatusCode.INTERNAL, errors.Internal),
    (grpc.StatusCode.CANCELLED, errors.Cancelled),
])
def test_each_code_maps_to_its_class_and_keeps_the_message(code, cls) -> None:
    e = errors.error_for(code, "do this next")
    assert type(e) is cls and e.code == code and e.message == "do this next"
    assert str(e) == f"{code.name}: do this next"


def test_unmapped_code_keeps_its_code() -> None:
    e = errors.error_for(grpc.StatusCode.DATA_LOSS, "x")
    assert type(e) is errors.PolyskillError and e.code == grpc.StatusCode.DATA_LOSS


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    waits = list(itertools.islice(RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.5,
                                              jitter=0.0).backoffs(), 6))
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    jittered = list(itertools.islice(RetryPolicy(jitter=0.2).backoffs(), 50))
    assert all(0.04 - 1e-9 <= w <= 1.2 for w in jittered)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=0)


def test_channel_config() -> None:
    cfg = ChannelConfig("h:1", token="abc", keepalive_s=30, max_reconnect_backoff_s=0.5)
    assert cfg.metadata == (("authorization", "Bearer abc"),) and not cfg.secure
    opts = dict(cfg.options())
    assert opts["grpc.max_reconnect_backoff_ms"] == 500 and opts["grpc.keepalive_time_ms"] == 30000
    assert ChannelConfig("h:1", root_certificates=b"pem").secure
    with pytest.raises(ValueError, match="go together"):
        ChannelConfig("h:1", client_certificate=b"cert")
    with pytest.raises(ValueError, match="host:port"):
        ChannelConfig("")


def test_check_env_accepts_a_matching_env_and_lists_every_difference() -> None:
    check_env(MODEL, SPACE, ACTIONS)
    wrong = gym.spaces.Dict({"cell": gym.spaces.Discrete(4),
                             "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
                             "extra": gym.spaces.Box(-1, 1, (1,), np.float32)})
    with pytest.raises(errors.SpecMismatch) as info:
        check_env(MODEL, wrong, gym.spaces.Discrete(2))
    text = str(info.value)
    assert "model 'm' version 3" in text and "lacks field(s) ['rgb']" in text
    assert "no field(s) ['extra']" in text and "'cell': env gives discrete shape [] n=[4]" in text
    assert "'pos': env gives vector shape [2]" in text
    assert "action: env has Discrete(2), model has continuous dim=2" in text
    with pytest.raises(errors.SpecMismatch, match="bounds"):
        check_env(MODEL, SPACE, gym.spaces.Box(-2, 2, (2,), np.float32))
    with pytest.raises(errors.SpecMismatch, match="FlattenObservation"):
        check_env(MODEL, gym.spaces.Dict({**SPACE.spaces, "pos": gym.spaces.Box(0, 1, (3, 1))}),
                  ACTIONS)


def test_encode_casts_to_the_model_dtypes_and_decode_gives_env_actions() -> None:
    obs = encode(MODEL, {"cell": 2, "pos": [0.1, 0.2, 0.3], "rgb": np.zeros((8, 8, 3))})
    assert obs["cell"].dtype == np.int64 and obs["pos"].dtype == np.float32
    assert obs["rgb"].dtype == np.uint8
    with pytest.raises(errors.SpecMismatch, match="'pos' has shape \\[2\\]"):
        encode(MODEL, {"cell": 2, "pos": [0.1, 0.2], "rgb": np.zeros((8, 8, 3))})
    with pytest.raises(errors.SpecMismatch, match="lacks field 'rgb'"):
        encode(MODEL, {"cell": 2, "pos": [0.1, 0.2, 0.3]})
    assert decode(MODEL, np.array([0.5, -0.5], np.float32)).dtype == np.float32
    discrete = ModelInfo("d", 1, (), (), ActionSpec("discrete", n=3), 8, "x")
    assert decode(discrete, np.array(2)) == 2 and type(decode(discrete, np.array(2))) is int
    assert MODEL.zero_action().tolist() == [0.0, 0.0] and discrete.zero_action() == 0
