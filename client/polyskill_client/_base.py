"""What the sync and asyncio sessions share: request building, result decoding, session options
and the wording of a lost session. No I/O here."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._proto.polyskill.v1 import policy_pb2 as pb
from .errors import DeadlineExceeded, NotFound, SessionLost
from .specs import BatchResult, ModelInfo, StepResult
from .tensors import encode_observation, from_numpy, to_numpy


@dataclass(frozen=True)
class SessionOptions:
    """How to open (and, with `reopen`, re-open) a session."""

    model: str = ""
    """Model alias ("champion") or version number ("7"); empty = the server's default."""
    deterministic: bool = False
    seed: int = 0
    """Sampling seed (ignored when deterministic); 0 = the server picks one."""
    labels: dict[str, str] = field(default_factory=dict)
    streaming: bool = True
    """One ActStream for all steps (lower latency); False = one unary Act call per step."""
    reopen: bool = False
    """If the server lost the session (restart, idle expiry), open a new one and resend the step
    as the first of a new episode instead of raising SessionLost. The new session starts with an
    empty context: the agent adapts again from scratch, and `step` indices restart at 0."""

    def request(self) -> pb.OpenSessionRequest:
        return pb.OpenSessionRequest(model=self.model, deterministic=self.deterministic,
                                     seed=self.seed, labels=self.labels)


def build_request(session_id: str, obs: dict[str, Any] | Any, reward: float,
                  new_episode: bool) -> pb.ActRequest:
    """A numpy observation (dict of fields, or one array for the single field "obs") -> request."""
    return pb.ActRequest(session_id=session_id, observation=encode_observation(obs),
                         reward=float(reward), new_episode=bool(new_episode))


def build_batch_request(session_ids: Sequence[str], observations: dict[str, Any] | Any,
                        rewards: Sequence[float] | None, new_episodes: Sequence[bool] | None
                        ) -> pb.ActBatchRequest:
    """B sessions' observations stacked on axis 0 (a dict of fields, or one (B, ...) array for
    the single field "obs"; a text field is a list of B strings) -> request."""
    if not isinstance(observations, dict):
        observations = {"obs": observations}
    arrays, texts = {}, {}
    for name, value in observations.items():
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            texts[name] = pb.Strings(values=value)
        else:
            arrays[name] = from_numpy(value)
    return pb.ActBatchRequest(
        session_ids=list(session_ids), observations=arrays, texts=texts,
        rewards=[] if rewards is None else [float(r) for r in rewards],
        new_episodes=[] if new_episodes is None else [bool(n) for n in new_episodes])


def to_batch_result(response: pb.ActBatchResponse, latency_s: float) -> BatchResult:
    actions = to_numpy(response.actions, "actions")
    assert isinstance(actions, np.ndarray)
    return BatchResult(actions, np.asarray(response.model_versions, dtype=np.int64),
                       np.asarray(response.steps, dtype=np.int64), latency_s)


def session_ids(sessions: Sequence[Any]) -> list[str]:
    """Sessions (objects with `.id`) or their ids -> ids."""
    return [s if isinstance(s, str) else s.id for s in sessions]


def to_result(response: pb.ActResponse, latency_s: float) -> StepResult:
    action = to_numpy(response.action, "action")
    assert isinstance(action, np.ndarray)
    return StepResult(action, int(response.model_version), int(response.step), latency_s)


def lost(session_id: str, error: NotFound) -> SessionLost:
    return SessionLost(
        f"session {session_id!r} is gone from the server ({error.message}); its context is lost. "
        "Open a new session, or open it with reopen=True to let the client do so")


def opened(response: pb.OpenSessionResponse) -> tuple[str, ModelInfo]:
    return response.session_id, ModelInfo.from_proto(response.model)


def check_late(started: float, timeout: float | None) -> None:
    """A deadline is a deadline: an answer that came after it is not used (it did count)."""
    if timeout is not None and time.monotonic() - started > timeout:
        raise DeadlineExceeded(
            f"the answer came after the {timeout:.3g} s client deadline; the step counted on the "
            "server, its action was not used")
