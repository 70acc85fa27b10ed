"""The gRPC servicer: proto <-> domain objects, then delegate to the engine.

Thin on purpose: decoding (strict, via polyskill_client.tensors), error mapping (ServingError.code
-> grpc status, with the engine's actionable message) and metrics. No model or session logic here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc

from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc
from polyskill_client.tensors import TensorError, decode_observation, from_numpy

from .engine import Engine, StepResult
from .errors import InvalidArgument, ServingError
from .models import LoadedModel

log = logging.getLogger("polyskill.server.service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name


def model_info(engine: Engine, model: LoadedModel) -> pb.ModelInfo:
    backend = model.backend
    obs_spec = [
        pb.TensorSpec(
            name=f.name, dtype="string" if f.kind == "text" else f.dtype, shape=f.shape,
            kind=f.kind, low=f.low, high=f.high, nvec=f.nvec, max_length=f.max_length,
            vocab=f.vocab,
        )
        for f in backend.obs_spec.fields
    ]
    a = backend.action_spec
    return pb.ModelInfo(
        name=model.name, version=model.version, aliases=engine.models.aliases_of(model.version),
        observation_spec=obs_spec,
        action_spec=pb.ActionSpec(kind=a.kind, n=a.n, dim=a.dim, low=a.low, high=a.high),
        context_length=backend.context_length, backend=backend.name,
    )


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.metrics = engine.metrics

    async def _fail(self, context: grpc.aio.ServicerContext, error: ServingError) -> None:
        self.metrics.rejected.labels(error.code).inc()
        await context.abort(grpc.StatusCode[error.code], str(error))

    # ---- unary --------------------------------------------------------------------------------
    async def OpenSession(self, request: pb.OpenSessionRequest, context: grpc.aio.ServicerContext
                          ) -> pb.OpenSessionResponse:
        try:
            session, model = self.engine.open_session(
                request.model, request.deterministic, request.seed, dict(request.labels))
        except ServingError as e:
            await self._fail(context, e)
        return pb.OpenSessionResponse(session_id=session.session_id,
                                      model=model_info(self.engine, model))

    async def GetModelInfo(self, request: pb.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        try:
            model = self.engine.models.resolve(request.model)
        except ServingError as e:
            await self._fail(context, e)
        return model_info(self.engine, model)

    async def CloseSession(self, request: pb.CloseSessionRequest,
                           context: grpc.aio.ServicerContext) -> pb.CloseSessionResponse:
        try:
            steps = self.engine.close_session(request.session_id)
        except ServingError as e:
            await self._fail(context, e)
        return pb.CloseSessionResponse(steps=steps)

    async def Act(self, request: pb.ActRequest, context: grpc.aio.ServicerContext
                  ) -> pb.ActResponse:
        try:
            return await self._step(request, request.session_id, context)
        except ServingError as e:
            await self._fail(context, e)

    # ---- streaming ----------------------------------------------------------------------------
    async def ActStream(self, request_iterator: AsyncIterator[pb.ActRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ActResponse]:
        session_id = ""
        try:
            async for request in request_iterator:
                if not session_id:
                    session_id = request.session_id
                    if not session_id:
                        raise InvalidArgument("the first request of a stream must set session_id")
                elif request.session_id and request.session_id != session_id:
                    raise InvalidArgument(
                        f"a stream carries one session ({session_id!r}); got a request for "
                        f"{request.session_id!r}: open one stream per session")
                yield await self._step(request, session_id, context)
        except ServingError as e:
            await self._fail(context, e)

    # ---- batches ------------------------------------------------------------------------------
    async def ActBatch(self, request: pb.ActBatchRequest, context: grpc.aio.ServicerContext
                       ) -> pb.ActBatchResponse:
        try:
            return await self._step_batch(request, context)
        except ServingError as e:
            await self._fail(context, e)

    async def ActBatchStream(self, request_iterator: AsyncIterator[pb.ActBatchRequest],
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.ActBatchResponse]:
        try:
            async for request in request_iterator:
                yield await self._step_batch(request, context)
        except ServingError as e:
            await self._fail(context, e)

    async def _step_batch(self, request: pb.ActBatchRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ActBatchResponse:
        started = time.perf_counter()
        try:
            obs: dict = decode_observation(request.observations)
        except TensorError as e:
            raise InvalidArgument(f"{e}; see GetModelInfo for the observation spec") from None
        for name, strings in request.texts.items():
            if name in obs:
                raise InvalidArgument(f"field {name!r} is in both observations and texts")
            obs[name] = list(strings.values)
        if any(isinstance(v, str) for v in obs.values()):
            raise InvalidArgument("a text field of a batch goes in `texts` (B strings), not in "
                                  "`observations`")
        result = await self.engine.act_batch(
            list(request.session_ids), obs, list(request.rewards), list(request.new_episodes),
            self._timeout(context))
        self.metrics.steps.inc(len(result.steps))
        self.metrics.act_batch_latency.observe(time.perf_counter() - started)
        return pb.ActBatchResponse(actions=from_numpy(result.actions),
                                   model_versions=result.model_versions, steps=result.steps)

    # ---- shared -------------------------------------------------------------------------------
    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        timeout = self.engine.config.step_timeout_s
        remaining = context.time_remaining()
        return timeout if remaining is None else min(timeout, max(remaining, 0.0))

    async def _step(self, request: pb.ActRequest, session_id: str,
                    context: grpc.aio.ServicerContext) -> pb.ActResponse:
        started = time.perf_counter()
        try:
            obs = decode_observation(request.observation)
        except TensorError as e:
            self.engine.sessions.get(session_id)  # an unknown session is NOT_FOUND first
            raise InvalidArgument(f"{e}; see GetModelInfo for the observation spec") from None
        result: StepResult = await self.engine.act(session_id, obs, request.reward,
                                                   request.new_episode, self._timeout(context))
        self.metrics.steps.inc()
        self.metrics.step_latency.observe(time.perf_counter() - started)
        return pb.ActResponse(action=from_numpy(result.action), model_version=result.model_version,
                              step=result.step)
