"""Plain-Python views of the server's ModelInfo and step results (no protobuf in user code).

`ModelInfo.from_proto(msg)` converts what OpenSession / GetModelInfo return; the gym adapter checks
env spaces against these specs, and `ModelInfo.zero_action()` is a neutral safe action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._proto.polyskill.v1 import policy_pb2 as pb


@dataclass(frozen=True)
class TensorSpec:
    """One observation field: enough to build a valid Tensor for it (see policy.proto)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    kind: str  # vector | image | discrete | multidiscrete | text
    low: float | None = None
    high: float | None = None
    nvec: tuple[int, ...] = ()
    max_length: int = 0
    vocab: tuple[str, ...] = ()

    @staticmethod
    def from_proto(msg: pb.TensorSpec) -> TensorSpec:
        return TensorSpec(
            name=msg.name, dtype=msg.dtype, shape=tuple(int(d) for d in msg.shape), kind=msg.kind,
            low=msg.low if msg.HasField("low") else None,
            high=msg.high if msg.HasField("high") else None,
            nvec=tuple(int(n) for n in msg.nvec), max_length=int(msg.max_length),
            vocab=tuple(msg.vocab))

    def describe(self) -> str:
        if self.kind == "text":
            return f"{self.name!r}: text (str)"
        text = f"{self.name!r}: {self.kind} {self.dtype} shape {list(self.shape)}"
        if self.nvec:
            text += f" n={list(self.nvec) if len(self.nvec) > 1 else self.nvec[0]}"
        if self.low is not None or self.high is not None:
            text += f" bounds [{self.low}, {self.high}]"
        return text


@dataclass(frozen=True)
class ActionSpec:
    kind: str  # discrete | continuous
    n: int = 0
    dim: int = 0
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @staticmethod
    def from_proto(msg: pb.ActionSpec) -> ActionSpec:
        return ActionSpec(kind=msg.kind, n=int(msg.n), dim=int(msg.dim), low=tuple(msg.low),
                          high=tuple(msg.high))

    def describe(self) -> str:
        if self.kind == "discrete":
            return f"discrete n={self.n}"
        return f"continuous dim={self.dim} low={list(self.low)} high={list(self.high)}"


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model version: what a session is pinned to and what its steps must look like."""

    name: str
    version: int
    aliases: tuple[str, ...]
    observation_spec: tuple[TensorSpec, ...]
    action_spec: ActionSpec
    context_length: int
    backend: str

    @staticmethod
    def from_proto(msg: pb.ModelInfo) -> ModelInfo:
        return ModelInfo(
            name=msg.name, version=int(msg.version), aliases=tuple(msg.aliases),
            observation_spec=tuple(TensorSpec.from_proto(f) for f in msg.observation_spec),
            action_spec=ActionSpec.from_proto(msg.action_spec),
            context_length=int(msg.context_length), backend=msg.backend)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.observation_spec]

    def zero_action(self) -> np.ndarray:
        """Action 0 (discrete) or the middle of the bounds (continuous): a neutral default."""
        a = self.action_spec
        if a.kind == "discrete":
            return np.array(0, np.int64)
        mid = (np.asarray(a.low, np.float64) + np.asarray(a.high, np.float64)) / 2
        return mid.astype(np.float32)


@dataclass(frozen=True)
class StepResult:
    """One answered step: the action and where it came from."""

    action: np.ndarray
    """() int64 for discrete actions, (dim,) float32 for continuous ones."""
    model_version: int
    step: int
    """Index of this step within the session, from 0 (restarts at 0 after a reopen)."""
    latency_s: float = field(default=0.0, compare=False)
    """Client-side wall time of the call, retries included."""


@dataclass(frozen=True)
class BatchResult:
    """One answered ActBatch: row i belongs to the i-th session of the request."""

    actions: np.ndarray
    """(B,) int64 for discrete actions, (B, dim) float32 for continuous ones."""
    model_versions: np.ndarray  # (B,) int64
    steps: np.ndarray  # (B,) int64: each session's step index
    latency_s: float = field(default=0.0, compare=False)
