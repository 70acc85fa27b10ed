"""The synchronous client: `PolicyClient` (one channel) and `Session` (one robot / one trial).

    with PolicyClient("localhost:50051") as client:
        with client.open_session(model="champion", seed=1) as session:
            action = session.step(obs)                                  # first step of a trial
            action = session.step(obs, reward=r)                        # reward for the previous
            action = session.step(obs, reward=r, new_episode=True)      # same task, next episode

Steps stream over one ActStream by default (`streaming=False` for one unary call per step). Errors
arrive as the typed exceptions of `errors.py`; UNAVAILABLE is retried with backoff (`retry=`);
a session the server lost raises `SessionLost` unless it was opened with `reopen=True`.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from ._base import (
    SessionOptions,
    build_batch_request,
    build_request,
    check_late,
    lost,
    opened,
    session_ids,
    to_batch_result,
    to_result,
)
from ._proto.polyskill.v1 import policy_pb2 as pb
from ._proto.polyskill.v1 import policy_pb2_grpc
from .channel import ChannelConfig
from .errors import (
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    PolyskillError,
    SessionLost,
    Unavailable,
    from_rpc_error,
)
from .retry import RetryPolicy
from .specs import BatchResult, ModelInfo, StepResult

log = logging.getLogger("polyskill_client")
T = TypeVar("T")
_END = object()  # ends the request iterator (the client finished writing)
_EOF = object()  # the server ended the stream


class _Stream:
    """One ActStream driven from sync code: requests through a queue, responses read by a reader
    thread into another queue. NOTE: the reader always drains the stream, because a sync client
    that leaves a bidi stream unread hangs at interpreter exit; it also gives `step` a timeout."""

    def __init__(self, stub: policy_pb2_grpc.PolicyServiceStub,
                 metadata: tuple[tuple[str, str], ...]) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._responses: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call = stub.ActStream(iter(self._requests.get, _END), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name="polyskill-stream", daemon=True)
        self._reader.start()
        self.broken = False

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
            self._responses.put(_EOF)
        except grpc.RpcError as e:
            self._responses.put(e)

    def step(self, request: pb.ActRequest, timeout: float | None) -> pb.ActResponse:
        started = time.monotonic()
        self._requests.put(request)
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            self.close(cancel=True)
            raise DeadlineExceeded(
                f"no answer within {timeout:.3g} s (client deadline); the stream was cancelled, "
                "so the step may or may not have counted on the server") from None
        if isinstance(item, pb.ActResponse):
            check_late(started, timeout)
            return item
        self.close(cancel=True)
        if isinstance(item, grpc.RpcError):
            raise from_rpc_error(item)
        raise Unavailable("the server ended the step stream")

    def close(self, cancel: bool = False, wait_s: float = 2.0) -> None:
        self.broken = True
        self._requests.put(_END)
        if cancel:
            self._call.cancel()
        self._reader.join(wait_s)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(wait_s)


class Session:
    """One server session: a context (KV cache) that spans the episodes of one task. Not thread
    safe: one thread steps a session; open one session per robot or env instance."""

    def __init__(self, client: PolicyClient, session_id: str, model: ModelInfo,
                 options: SessionOptions, timeout: float | None) -> None:
        self.client = client
        self.id = session_id
        self.model = model
        self.options = options
        self.timeout = timeout
        self.reopens = 0
        """How many times the session was re-opened after the server lost it (reopen=True)."""
        self.last: StepResult | None = None
        self.closed = False
        self._stream: _Stream | None = None

    # ---- steps -----------------------------------------------------------------------------
    def step(self, obs: dict[str, Any] | Any, reward: float = 0.0, new_episode: bool = False,
             timeout: float | None = None) -> np.ndarray:
        """Send observation o_t (and the reward for the previous action); return the action."""
        return self.act(obs, reward, new_episode, timeout).action

    def act(self, obs: dict[str, Any] | Any, reward: float = 0.0, new_episode: bool = False,
            timeout: float | None = None) -> StepResult:
        """As `step`, returning the action with its model version, step index and latency."""
        if self.closed:
            raise FailedPrecondition(f"session {self.id!r} was closed on this client")
        timeout = self.timeout if timeout is None else timeout
        started = time.perf_counter()
        request = build_request(self.id, obs, reward, new_episode)
        reopened = False
        while True:
            try:
                response = self.client._retry(lambda: self._send(request, timeout))
                break
            except NotFound as e:
                if isinstance(e, SessionLost):
                    raise
                if not self.options.reopen or reopened:
                    raise lost(self.id, e) from None
                self._reopen(str(e))
                reopened = True
                request.session_id, request.new_episode = self.id, True
        self.last = to_result(response, time.perf_counter() - started)
        return self.last

    def _send(self, request: pb.ActRequest, timeout: float | None) -> pb.ActResponse:
        if not self.options.streaming:
            return self.client._stub.Act(request, timeout=timeout,
                                         metadata=self.client.config.metadata)
        if self._stream is None or self._stream.broken:
            self._stream = _Stream(self.client._stub, self.client.config.metadata)
        return self._stream.step(request, timeout)

    def _reopen(self, reason: str) -> None:
        old = self.id
        self._close_stream()
        self.id, self.model = self.client._open(self.options, self.timeout)
        self.reopens += 1
        log.warning("session %s lost (%s); reopened as %s with an empty context", old, reason,
                    self.id)

    # ---- lifecycle -------------------------------------------------------------------------
    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> int | None:
        """End the stream and close the session on the server; returns its step count (None if
        the server already forgot it). Safe to call twice."""
        if self.closed:
            return None
        self.closed = True
        self._close_stream()
        with self.client._lock:
            self.client._sessions.discard(self)
        try:  # NOTE: no retries and a short deadline: closing must not stall on a dead server
            return int(self.client._stub.CloseSession(
                pb.CloseSessionRequest(session_id=self.id), timeout=2.0,
                metadata=self.client.config.metadata).steps)
        except grpc.RpcError as e:
            error = from_rpc_error(e)
            if isinstance(error, NotFound | FailedPrecondition | Unavailable | DeadlineExceeded):
                return None
            raise error from None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({self.id!r}, model={self.model.name}@{self.model.version})"


class PolicyClient:
    """A connection to a policy server. Thread safe: threads may share one client, each with its
    own sessions. Close it (or use `with`) to end every open session and the channel."""

    def __init__(self, target: str | ChannelConfig, *, token: str | None = None,
                 tls: bool = False, root_certificates: str | bytes | None = None,
                 client_certificate: str | bytes | None = None,
                 client_key: str | bytes | None = None, timeout: float | None = 10.0,
                 retry: RetryPolicy | None = None) -> None:
        """`target` is host:port (or a full ChannelConfig); `timeout` is the default deadline of
        every call and step, in seconds (None = wait forever); `retry` governs UNAVAILABLE."""
        self.config = target if isinstance(target, ChannelConfig) else ChannelConfig(
            target, tls=tls, root_certificates=root_certificates,
            client_certificate=client_certificate, client_key=client_key, token=token)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._channel = self.config.sync_channel()
        self._stub = policy_pb2_grpc.PolicyServiceStub(self._channel)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.closed = False
        _LIVE.add(self)

    def _retry(self, fn: Callable[[], T]) -> T:
        """Call `fn`, retrying UNAVAILABLE with backoff; every gRPC error becomes typed."""
        started = time.monotonic()
        backoffs = self.retry.backoffs()
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                error: PolyskillError = from_rpc_error(e)
            except PolyskillError as e:
                error = e
            if not isinstance(error, Unavailable):
                raise error from None
            wait = next(backoffs)
            if time.monotonic() - started + wait > self.retry.max_elapsed_s:
                raise error from None
            time.sleep(wait)

    def model_info(self, model: str = "") -> ModelInfo:
        """The specs of a loaded model ("" = default alias, "champion", or a version "7")."""
        return ModelInfo.from_proto(self._retry(lambda: self._stub.GetModelInfo(
            pb.GetModelInfoRequest(model=model), timeout=self.timeout,
            metadata=self.config.metadata)))

    def _open(self, options: SessionOptions, timeout: float | None) -> tuple[str, ModelInfo]:
        return opened(self._retry(lambda: self._stub.OpenSession(
            options.request(), timeout=timeout, metadata=self.config.metadata)))

    def open_session(self, model: str = "", *, deterministic: bool = False, seed: int = 0,
                     labels: dict[str, str] | None = None, streaming: bool = True,
                     reopen: bool = False, timeout: float | None = -1.0) -> Session:
        """Open a session pinned to `model`; see `SessionOptions` for the arguments.
        `timeout` is the session's default step deadline (-1 = the client's)."""
        if self.closed:
            raise FailedPrecondition("the client was closed")
        options = SessionOptions(model, deterministic, seed, dict(labels or {}), streaming,
                                 reopen)
        timeout = self.timeout if timeout == -1.0 else timeout
        session_id, info = self._open(options, timeout)
        session = Session(self, session_id, info, options, timeout)
        with self._lock:
            self._sessions.add(session)
        return session

    def act_batch(self, sessions: Sequence[Session | str], observations: dict[str, Any] | Any,
                  rewards: Sequence[float] | None = None,
                  new_episodes: Sequence[bool] | None = None,
                  timeout: float | None = -1.0) -> BatchResult:
        """One step of EACH listed session in one call (a vectorised simulator): row i of every
        observation field (and of `rewards`, `new_episodes`) is sessions[i]'s. All or nothing:
        on an error no session advanced. Returns the actions stacked the same way."""
        timeout = self.timeout if timeout == -1.0 else timeout
        started = time.perf_counter()
        request = build_batch_request(session_ids(sessions), observations, rewards, new_episodes)
        response = self._retry(lambda: self._stub.ActBatch(
            request, timeout=timeout, metadata=self.config.metadata))
        return to_batch_result(response, time.perf_counter() - started)

    def close_session(self, session_id: str) -> int:
        """Close a session by id; returns the number of steps it took."""
        return int(self._retry(lambda: self._stub.CloseSession(
            pb.CloseSessionRequest(session_id=session_id), timeout=self.timeout,
            metadata=self.config.metadata)).steps)

    def close(self) -> None:
        """Close every open session (streams first) and the channel. Safe to call twice."""
        if self.closed:
            return
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        self.closed = True
        self._channel.close()
        _LIVE.discard(self)

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE: weakref.WeakSet[PolicyClient] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Close clients the program forgot, so their open streams do not hang interpreter exit."""
    for client in list(_LIVE):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass

