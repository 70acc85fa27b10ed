"""numpy <-> `polyskill.v1.Tensor` codec, shared by the server and the client library.

A Tensor is (dtype name, shape, raw little-endian C-order bytes); text travels as dtype "string"
with empty shape and UTF-8 bytes. Decoding is strict: an unknown dtype name, a negative dimension or
a byte length that does not match shape x itemsize raises `TensorError` naming the field, so a bad
request is rejected before it reaches the model.

    python -c "from polyskill_client.tensors import *; print(to_numpy(from_numpy([1.5, 2.0])))"
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._proto.polyskill.v1 import policy_pb2

STRING = "string"
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                 "uint8", "uint16", "uint32", "uint64", "bool")
}
"""Accepted dtype names -> little-endian numpy dtypes."""
_NATIVE = {name: dt.newbyteorder("=") for name, dt in DTYPES.items()}
# NOTE: hot-path lookups (one per step each way): dtype -> name without `dtype.name` (a Python
# property), and whether an array's bytes are already little-endian as they are.
_NAME_OF_LE = {dt: name for name, dt in DTYPES.items()}


class TensorError(ValueError):
    """A Tensor message that cannot be decoded (or a value that cannot be encoded)."""


def _where(name: str) -> str:
    return f"field {name!r}: " if name else ""


def from_numpy(value: Any) -> policy_pb2.Tensor:
    """Encode an array-like (or a str, as a text tensor) into a Tensor message."""
    if isinstance(value, str):
        return policy_pb2.Tensor(dtype=STRING, data=value.encode("utf-8"))
    arr = value if type(value) is np.ndarray else np.asarray(value)
    name = _NAME_OF_LE.get(arr.dtype)
    if name is not None:  # already little-endian: tobytes() writes C order
        return policy_pb2.Tensor(dtype=name, shape=arr.shape, data=arr.tobytes())
    name = arr.dtype.name
    if name not in DTYPES:
        raise TensorError(f"cannot encode dtype {arr.dtype}; supported: {', '.join(DTYPES)}")
    data = np.ascontiguousarray(arr, dtype=DTYPES[name]).tobytes()
    return policy_pb2.Tensor(dtype=name, shape=arr.shape, data=data)


def to_numpy(tensor: policy_pb2.Tensor, name: str = "") -> np.ndarray | str:
    """Decode a Tensor into a numpy array in native byte order (a str for dtype "string").

    `name` is the observation field, used in error messages. The result does not alias the
    message's bytes (it is a fresh array), so callers may keep it.
    """
    if tensor.dtype == STRING:
        if len(tensor.shape):
            raise TensorError(f"{_where(name)}a string tensor must have empty shape, "
                              f"got {list(tensor.shape)}")
        try:
            return tensor.data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TensorError(f"{_where(name)}string data is not valid UTF-8 ({e})") from None
    dtype = DTYPES.get(tensor.dtype)
    if dtype is None:
        raise TensorError(f"{_where(name)}unknown dtype {tensor.dtype!r}; use one of "
                          f"{', '.join([*DTYPES, STRING])}")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{_where(name)}negative dimension in shape {list(shape)}")
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"{_where(name)}data has {len(tensor.data)} bytes but dtype {tensor.dtype} shape "
            f"{list(shape)} needs {expected} (little-endian, C order)"
        )
    arr = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    return arr.astype(_NATIVE[tensor.dtype], copy=True)


def decode_observation(observation: Any) -> dict[str, np.ndarray | str]:
    """A `map<string, Tensor>` -> {field: array or str}; errors name the field."""
    return {key: to_numpy(t, key) for key, t in observation.items()}


def encode_observation(obs: dict[str, Any] | Any, key: str = "obs") -> dict[str, policy_pb2.Tensor]:
    """{field: array-like or str} (or one bare array, stored under `key`) -> Tensor map."""
    if not isinstance(obs, dict):
        obs = {key: obs}
    return {k: from_numpy(v) for k, v in obs.items()}
