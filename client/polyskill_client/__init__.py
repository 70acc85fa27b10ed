"""Polyskill client: step a served in-context RL policy from robots and simulators.

Depends only on grpcio, protobuf and numpy. The gymnasium adapter and `polyskill drive` need the
`gym` extra (`pip install "./client[gym]"`) and are imported on first use.

    from polyskill_client import PolicyClient
    with PolicyClient("localhost:50051") as client, client.open_session(seed=1) as session:
        action = session.step(obs)
"""

from __future__ import annotations

from typing import Any

from .aio import AsyncPolicyClient, AsyncSession
from .channel import ChannelConfig
from .client import PolicyClient, Session
from .errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PolyskillError,
    ResourceExhausted,
    SessionLost,
    SpecMismatch,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from .retry import NO_RETRY, RetryPolicy
from .specs import ActionSpec, BatchResult, ModelInfo, StepResult, TensorSpec

_GYM = {"GymSession", "check_env"}


def __getattr__(name: str) -> Any:
    """`GymSession` and `check_env` import gymnasium, so they load only when asked for."""
    if name in _GYM:
        from . import gym_adapter

        return getattr(gym_adapter, name)
    raise AttributeError(f"module 'polyskill_client' has no attribute {name!r}")


__all__ = [
    "NO_RETRY", "ActionSpec", "AsyncPolicyClient", "AsyncSession", "BatchResult", "Cancelled",
    "ChannelConfig",
    "DeadlineExceeded", "FailedPrecondition", "GymSession", "Internal", "InvalidArgument",
    "ModelInfo", "NotFound", "PermissionDenied", "PolicyClient", "PolyskillError",
    "ResourceExhausted", "RetryPolicy", "Session", "SessionLost", "SpecMismatch", "StepResult",
    "TensorSpec", "Unauthenticated", "Unavailable", "Unimplemented", "check_env",
]
