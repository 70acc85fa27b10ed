"""The asyncio client: the same API as `client.py` with `await`, for many sessions in one thread.

    async with AsyncPolicyClient("localhost:50051") as client:
        async with await client.open_session(seed=1) as session:
            action = await session.step(obs)

Same semantics as the sync client: streaming by default, typed errors, UNAVAILABLE retried with
backoff, `SessionLost` unless `reopen=True`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
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


class _AioStream:
    """One ActStream: write a request, read exactly its response."""

    def __init__(self, stub: policy_pb2_grpc.PolicyServiceStub,
                 metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = stub.ActStream(metadata=metadata)
        self.broken = False

    async def step(self, request: pb.ActRequest, timeout: float | None) -> pb.ActResponse:
        started = time.monotonic()
        try:
            await self._call.write(request)
            response = await asyncio.wait_for(self._call.read(), timeout)
        except TimeoutError:
            await self.close(cancel=True)
            raise DeadlineExceeded(
                f"no answer within {timeout:.3g} s (client deadline); the stream was cancelled, "
                "so the step may or may not have counted on the server") from None
        except (grpc.RpcError, asyncio.InvalidStateError) as e:
            await self.close(cancel=True)
            if isinstance(e, grpc.RpcError):
                raise from_rpc_error(e) from None
            raise Unavailable(f"the step stream ended ({e})") from None
        if response is grpc.aio.EOF:
            await self.close(cancel=True)
            raise Unavailable("the server ended the step stream")
        check_late(started, timeout)
        return response

    async def close(self, cancel: bool = False) -> None:
        if self.broken:
            return
        self.broken = True
        if cancel:
            self._call.cancel()
            return
        try:
            await self._call.done_writing()
            await asyncio.wait_for(self._drain(), 2.0)
        except (grpc.RpcError, TimeoutError, asyncio.InvalidStateError):
            self._call.cancel()

    async def _drain(self) -> None:
        while await self._call.read() is not grpc.aio.EOF:
            pass


class AsyncSession:
    """One server session, stepped from one task at a time."""

    def __init__(self, client: AsyncPolicyClient, session_id: str, model: ModelInfo,
                 options: SessionOptions, timeout: float | None) -> None:
        self.client = client
        self.id = session_id
        self.model = model
        self.options = options
        self.timeout = timeout
        self.reopens = 0
        self.last: StepResult | None = None
        self.closed = False
        self._stream: _AioStream | None = None

    async def step(self, obs: dict[str, Any] | Any, reward: float = 0.0,
                   new_episode: bool = False, timeout: float | None = None) -> np.ndarray:
        """Send observation o_t (and the reward for the previous action); return the action."""
        return (await self.act(obs, reward, new_episode, timeout)).action

    async def act(self, obs: dict[str, Any] | Any, reward: float = 0.0,
                  new_episode: bool = False, timeout: float | None = None) -> StepResult:
        if self.closed:
            raise FailedPrecondition(f"session {self.id!r} was closed on this client")
        timeout = self.timeout if timeout is None else timeout
        started = time.perf_counter()
        request = build_request(self.id, obs, reward, new_episode)
        reopened = False
        while True:
            try:
                response = await self.client._retry(lambda: self._send(request, timeout))
                break
            except NotFound as e:
                if isinstance(e, SessionLost):
                    raise
                if not self.options.reopen or reopened:
                    raise lost(self.id, e) from None
                await self._reopen(str(e))
                reopened = True
                request.session_id, request.new_episode = self.id, True
        self.last = to_result(response, time.perf_counter() - started)
        return self.last

    async def _send(self, request: pb.ActRequest, timeout: float | None) -> pb.ActResponse:
        if not self.options.streaming:
            return await self.client._stub.Act(request, timeout=timeout,
                                               metadata=self.client.config.metadata)
        if self._stream is None or self._stream.broken:
            self._stream = _AioStream(self.client._stub, self.client.config.metadata)
        return await self._stream.step(request, timeout)

    async def _reopen(self, reason: str) -> None:
        old = self.id
        await self._close_stream()
        self.id, self.model = await self.client._open(self.options, self.timeout)
        self.reopens += 1
        log.warning("session %s lost (%s); reopened as %s with an empty context", old, reason,
                    self.id)

    async def _close_stream(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None

    async def close(self) -> int | None:
        """End the stream and close the session; returns its step count (None if unknown)."""
        if self.closed:
            return None
        self.closed = True
        await self._close_stream()
        self.client._sessions.discard(self)
        try:  # NOTE: no retries and a short deadline: closing must not stall on a dead server
            response = await self.client._stub.CloseSession(
                pb.CloseSessionRequest(session_id=self.id), timeout=2.0,
                metadata=self.client.config.metadata)
            return int(response.steps)
        except grpc.RpcError as e:
            error = from_rpc_error(e)
            if isinstance(error, NotFound | FailedPrecondition | Unavailable | DeadlineExceeded):
                return None
            raise error from None

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncPolicyClient:
    """asyncio twin of `PolicyClient` (same arguments). Create it inside the running loop."""

    def __init__(self, target: str | ChannelConfig, *, token: str | None = None,
                 tls: bool = False, root_certificates: str | bytes | None = None,
                 client_certificate: str | bytes | None = None,
                 client_key: str | bytes | None = None, timeout: float | None = 10.0,
                 retry: RetryPolicy | None = None) -> None:
        self.config = target if isinstance(target, ChannelConfig) else ChannelConfig(
            target, tls=tls, root_certificates=root_certificates,
            client_certificate=client_certificate, client_key=client_key, token=token)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._channel = self.config.aio_channel()
        self._stub = policy_pb2_grpc.PolicyServiceStub(self._channel)
        self._sessions: set[AsyncSession] = set()
        self.closed = False

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        backoffs = self.retry.backoffs()
        while True:
            try:
                return await fn()
            except grpc.RpcError as e:
                error: PolyskillError = from_rpc_error(e)
            except PolyskillError as e:
                error = e
            if not isinstance(error, Unavailable):
                raise error from None
            wait = next(backoffs)
            if time.monotonic() - started + wait > self.retry.max_elapsed_s:
                raise error from None
            await asyncio.sleep(wait)

    async def model_info(self, model: str = "") -> ModelInfo:
        return ModelInfo.from_proto(await self._retry(lambda: self._stub.GetModelInfo(
            pb.GetModelInfoRequest(model=model), timeout=self.timeout,
            metadata=self.config.metadata)))

    async def _open(self, options: SessionOptions, timeout: float | None
                    ) -> tuple[str, ModelInfo]:
        return opened(await self._retry(lambda: self._stub.OpenSession(
            options.request(), timeout=timeout, metadata=self.config.metadata)))

    async def open_session(self, model: str = "", *, deterministic: bool = False, seed: int = 0,
                           labels: dict[str, str] | None = None, streaming: bool = True,
                           reopen: bool = False, timeout: float | None = -1.0) -> AsyncSession:
        """As `PolicyClient.open_session`."""
        if self.closed:
            raise FailedPrecondition("the client was closed")
        options = SessionOptions(model, deterministic, seed, dict(labels or {}), streaming,
                                 reopen)
        timeout = self.timeout if timeout == -1.0 else timeout
        session_id, info = await self._open(options, timeout)
        session = AsyncSession(self, session_id, info, options, timeout)
        self._sessions.add(session)
        return session

    async def act_batch(self, sessions: Sequence[AsyncSession | str],
                        observations: dict[str, Any] | Any,
                        rewards: Sequence[float] | None = None,
                        new_episodes: Sequence[bool] | None = None,
                        timeout: float | None = -1.0) -> BatchResult:
        """As `PolicyClient.act_batch`."""
        timeout = self.timeout if timeout == -1.0 else timeout
        started = time.perf_counter()
        request = build_batch_request(session_ids(sessions), observations, rewards, new_episodes)
        response = await self._retry(lambda: self._stub.ActBatch(
            request, timeout=timeout, metadata=self.config.metadata))
        return to_batch_result(response, time.perf_counter() - started)

    async def close_session(self, session_id: str) -> int:
        response = await self._retry(lambda: self._stub.CloseSession(
            pb.CloseSessionRequest(session_id=session_id), timeout=self.timeout,
            metadata=self.config.metadata))
        return int(response.steps)

    async def close(self) -> None:
        if self.closed:
            return
        for session in list(self._sessions):
            await session.close()
        self.closed = True
        await self._channel.close()

    async def __aenter__(self) -> AsyncPolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
