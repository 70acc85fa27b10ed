"""Tensor codec: exact round trips and strict, field-naming errors."""

import numpy as np
import pytest

from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client.tensors import TensorError, decode_observation, from_numpy, to_numpy


@pytest.mark.parametrize("value", [np.arange(6, dtype=np.float32).reshape(2, 3),
                                   np.array(3, dtype=np.int64), np.zeros((2, 2, 3), np.uint8),
                                   np.array([True, False]), np.array([1.5], np.float64)])
def test_round_trip(value: np.ndarray) -> None:
    t = from_numpy(value)
    assert t.dtype == value.dtype.name and list(t.shape) == list(value.shape)
    out = to_numpy(t)
    assert out.dtype == value.dtype and np.array_equal(out, value)


def test_little_endian_on_the_wire() -> None:
    assert from_numpy(np.array([1], dtype=">i4")).data == b"\x01\x00\x00\x00"


def test_text() -> None:
    assert to_numpy(from_numpy("go to the red ball")) == "go to the red ball"


@pytest.mark.parametrize("tensor, match", [
    (pb.Tensor(dtype="float33", shape=[1], data=b"\0" * 4), "field 'pos': unknown dtype 'float33'"),
    (pb.Tensor(dtype="float32", shape=[3], data=b"\0" * 8), "field 'pos': data has 8 bytes but"),
    (pb.Tensor(dtype="float32", shape=[-1], data=b""), "negative dimension"),
    (pb.Tensor(dtype="string", shape=[2], data=b"ab"), "empty shape"),
    (pb.Tensor(dtype="string", data=b"\xff"), "not valid UTF-8"),
])
def test_strict_errors(tensor: pb.Tensor, match: str) -> None:
    with pytest.raises(TensorError, match=match):
        decode_observation({"pos": tensor})
