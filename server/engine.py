"""The serving engine: sessions + models + batcher behind a small async domain API (no protobuf).

`service.py` translates gRPC to these calls; tests and benchmarks may call them directly. Every
check that can reject a step runs here, before the step is queued, so a bad request changes no
session's state and never reaches a batch shared with other sessions.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from polyskill.agent.spaces import FieldSpec, ObsSpec, SpaceError, validate_observation

from .batcher import Batcher
from .config import ServerConfig
from .errors import DeadlineExceeded, InvalidArgument, ServingError, Unavailable
from .follower import ModelFollower
from .metrics import Metrics
from .models import LoadedModel, ModelStore
from .sessions import Session, SessionTable

log = logging.getLogger("polyskill.server.engine")


@dataclass(frozen=True)
class StepResult:
    action: np.ndarray  # () int64 or (dim,) float32
    model_version: int
    step: int


@dataclass(frozen=True)
class BatchResult:
    """One step of each of B sessions, rows in the request's order."""

    actions: np.ndarray  # (B,) int64 or (B, dim) float32
    model_versions: list[int]
    steps: list[int]


def describe_field(f: FieldSpec) -> str:
    """A one-line spec a person can build a valid Tensor from."""
    if f.kind == "text":
        return f"{f.name!r}: text (dtype string, shape [], UTF-8)"
    text = f"{f.name!r}: {f.kind} dtype {f.dtype} shape {list(f.shape)}"
    if f.nvec:
        text += f" values in [0, n) with n = {list(f.nvec) if len(f.nvec) > 1 else f.nvec[0]}"
    if f.low is not None or f.high is not None:
        text += f" bounds [{f.low}, {f.high}]"
    if f.kind == "vector":
        text += " finite"
    return text


def check_observation(spec: ObsSpec, obs: dict[str, np.ndarray | str]) -> None:
    """Raise InvalidArgument naming the field and its expected spec."""
    if set(obs) != set(spec.names):
        missing = [n for n in spec.names if n not in obs]
        extra = sorted(k for k in obs if k not in spec.names)
        expected = "; ".join(describe_field(f) for f in spec.fields)
        raise InvalidArgument(
            f"observation keys {sorted(obs)} do not match the model's {spec.names}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
            + f". The model expects: {expected}"
        )
    for f in spec.fields:
        value = obs[f.name]
        # NOTE: fast path for the common field (a finite float vector of the right shape), the
        # same checks as validate_observation's; anything else takes the full path and its errors.
        if (f.kind == "vector" and type(value) is np.ndarray and value.shape == f.shape
                and value.dtype.kind == "f" and np.isfinite(value).all()):
            continue
        try:
            validate_observation(ObsSpec((f,)), {f.name: value})
        except SpaceError as e:
            raise InvalidArgument(f"{e}; expected {describe_field(f)}") from None


def check_observation_batch(spec: ObsSpec, obs: dict[str, np.ndarray | list[str]], batch: int
                            ) -> list[dict[str, np.ndarray | str]]:
    """B stacked observations -> B per-step observations (row views), each checked like one
    step's; an error names the row. Whole-batch checks first, so a valid batch costs no per-row
    validation for float vector fields."""
    if set(obs) != set(spec.names):
        check_observation(spec, {k: None for k in obs})  # raises naming the keys
    for name, value in obs.items():
        is_text = isinstance(value, list)
        rows = len(value) if is_text else (value.shape[0] if value.ndim else 0)
        if rows != batch:
            shape = f"{len(value)} strings" if is_text else list(value.shape)
            raise InvalidArgument(f"observation field {name!r} holds {shape} but the request "
                                  f"lists {batch} sessions: stack one row per session (axis 0)")
    rows = [{name: value[i] for name, value in obs.items()} for i in range(batch)]
    checked = {f.name for f in spec.fields
               if f.kind == "vector" and obs[f.name].shape[1:] == f.shape
               and obs[f.name].dtype.kind == "f" and np.isfinite(obs[f.name]).all()}
    if len(checked) < len(spec.fields):
        rest = ObsSpec(tuple(f for f in spec.fields if f.name not in checked))
        for i, row in enumerate(rows):
            try:
                check_observation(rest, {k: row[k] for k in rest.names})
            except InvalidArgument as e:
                raise InvalidArgument(f"row {i}: {e}") from None
    return rows


UNKNOWN_CONTEXT_HISTORY = 1024


class Engine:
    def __init__(self, config: ServerConfig, models: ModelStore, batcher: Batcher,
                 metrics: Metrics) -> None:
        self.config = config
        self.models = models
        self.batcher = batcher
        self.metrics = metrics
        history = config.history_steps
        if not history and len(models):
            history = max(models.get(v).backend.context_length for v in models.versions)
        # NOTE: started before any version is loaded (registry empty or down), the context length
        # is unknown: keep a generous history so a later re-encode still sees a full window.
        self.sessions = SessionTable(config.max_sessions, config.idle_timeout_s,
                                     history or UNKNOWN_CONTEXT_HISTORY, config.tombstone_ttl_s)
        self.draining = False
        self._reaper: asyncio.Task | None = None
        self.follower: ModelFollower | None = None
        self._follow_task: asyncio.Task | None = None
        if models.source is not None and getattr(models.source, "follow", False):
            self.follower = ModelFollower(models, models.source, self.sessions.versions_in_use,
                                          config.max_sessions, config.device, config.poll_s,
                                          on_change=self._update_gauges)

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.batcher.start()
        loop = asyncio.get_running_loop()
        self._reaper = loop.create_task(self._reap(), name="session-reaper")
        if self.follower is not None:
            self._follow_task = loop.create_task(self.follower.run(), name="model-follower")
        self._update_gauges()

    async def stop(self) -> None:
        self.draining = True
        for task in (self._reaper, self._follow_task):
            if task is not None:
                task.cancel()
        await self.batcher.stop()
        self.models.close()  # worker processes of --model-process stop with the server

    async def _reap(self) -> None:
        period = min(1.0, self.config.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            for session_id in self.sessions.expire():
                log.info("session expired", extra={"session": session_id})
            self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.active_sessions.set(len(self.sessions))
        self.metrics.cache_bytes.set(sum(self.models.get(v).backend.cache_bytes
                                         for v in self.models.versions))

    # ---- API ----------------------------------------------------------------------------------
    def open_session(self, model_ref: str, deterministic: bool, seed: int,
                     labels: dict[str, str]) -> tuple[Session, LoadedModel]:
        self._check_not_draining()
        model = self.models.resolve(model_ref)
        alias = "" if model_ref.strip().isdigit() else (model_ref.strip()
                                                         or self.models.default_alias)
        session = self.sessions.open(model.version, model.backend.zero_action(), deterministic,
                                     seed, labels, alias=alias)
        self._update_gauges()
        log.info("session opened", extra={"session": session.session_id, "slot": session.slot,
                                          "model_version": model.version, "labels": labels})
        return session, model

    async def act(self, session_id: str, obs: dict[str, np.ndarray | str], reward: float,
                  new_episode: bool, timeout: float | None) -> StepResult:
        self._check_not_draining()
        session = self.sessions.get(session_id)
        if self.config.migrate == "reencode" and session.alias and not session.in_flight:
            await self._migrate(session)
        model = self.models.get(session.model_version)
        check_observation(model.backend.obs_spec, obs)
        if not math.isfinite(reward):
            raise InvalidArgument(f"reward must be a finite number, got {reward}")
        plan = self.sessions.begin_step(session_id, reward, new_episode)
        try:
            action = await self.batcher.submit(model, plan, obs, timeout)
        except TimeoutError:
            self.sessions.abort_step(plan)
            raise DeadlineExceeded(
                f"step {plan.position} of session {session_id!r} did not finish within "
                f"{timeout:.3g} s; the step did not count, resend it (or raise the deadline)"
            ) from None
        except BaseException:
            self.sessions.abort_step(plan)
            raise
        self.sessions.commit_step(plan, action, obs)
        return StepResult(action, model.version, plan.position)

    async def act_batch(self, session_ids: list[str], obs: dict[str, np.ndarray | list[str]],
                        rewards: list[float], new_episodes: list[bool], timeout: float | None
                        ) -> BatchResult:
        """One step of each of B sessions, all or nothing: if any step is rejected or fails, no
        session advances (the error names the row and its session)."""
        self._check_not_draining()
        B = len(session_ids)
        _check_batch_lists(session_ids, rewards, new_episodes)
        rewards = rewards or [0.0] * B
        new_episodes = new_episodes or [False] * B
        sessions: list[Session] = []
        try:  # NOTE: one try around the loop, not per row: this is ~2 us of every step
            for sid in session_ids:
                sessions.append(self.sessions.get(sid))
        except ServingError as e:
            raise _at_row(e, len(sessions), session_ids) from None
        if self.config.migrate == "reencode":
            for session in sessions:
                if session.alias and not session.in_flight:
                    await self._migrate(session)
        models = {s.model_version: self.models.get(s.model_version) for s in sessions}
        specs = {m.backend.obs_spec for m in models.values()}
        if len(specs) > 1:  # NOTE: versions of one registered model share their specs
            raise InvalidArgument("the listed sessions are pinned to models with different "
                                  "observation specs; send one request per model")
        rows = check_observation_batch(specs.pop(), obs, B)
        plans: list = []
        try:
            try:
                begin = self.sessions.begin
                for session, reward, new in zip(sessions, rewards, new_episodes, strict=True):
                    plans.append(begin(session, reward, new))
            except ServingError as e:
                raise _at_row(e, len(plans), session_ids) from None
            if len(models) == 1:  # the common case: one block, observations stay stacked
                actions = await self.batcher.submit_block(models.popitem()[1], plans, obs,
                                                          timeout)
            else:
                actions = np.stack(await self.batcher.submit_many(
                    [(models[p.model_version], p, r) for p, r in zip(plans, rows, strict=True)],
                    timeout))
        except TimeoutError:
            for plan in plans:
                self.sessions.abort_step(plan)
            raise DeadlineExceeded(
                f"the batch of {B} steps did not finish within {timeout:.3g} s; no session "
                "advanced, resend it (or raise the deadline)") from None
        except BaseException:
            for plan in plans:
                self.sessions.abort_step(plan)
            raise
        commit = self.sessions.commit_step
        for i, (plan, r) in enumerate(zip(plans, rows, strict=True)):
            commit(plan, actions[i, ...], r)  # (), or (dim,): a view of the row
        return BatchResult(actions, [p.model_version for p in plans], [p.position for p in plans])

    async def _migrate(self, session: Session) -> None:
        """Move a session onto the version its alias points to now, re-encoding its recent raw
        steps into its slot of the new version's cache (on the model thread, between batches)."""
        try:
            target = self.models.resolve(session.alias)
        except ServingError:
            return  # alias gone: stay on the pinned version
        if target.version == session.model_version:
            return
        history = list(session.history)
        start = history[0].position if history else session.position
        old = session.model_version
        self.sessions.begin_migration(session.session_id)
        try:
            await self.batcher.run_sync(target.backend.reencode, session.slot, history)
        except BaseException:
            self.sessions.end_migration(session, None)
            raise
        self.sessions.end_migration(session, target.version, start)
        log.info("session re-encoded", extra={"session": session.session_id, "from": old,
                                              "model_version": target.version,
                                              "steps": len(history)})

    def close_session(self, session_id: str) -> int:
        steps = self.sessions.close(session_id)
        self._update_gauges()
        log.info("session closed", extra={"session": session_id, "steps": steps})
        return steps

    def _check_not_draining(self) -> None:
        if self.draining:
            raise Unavailable("server is shutting down; open a session on another replica")


def _check_batch_lists(session_ids: list[str], rewards: list[float], new_episodes: list[bool]
                       ) -> None:
    B = len(session_ids)
    if not B:
        raise InvalidArgument("session_ids is empty: list the sessions to step")
    if len(set(session_ids)) != B:
        dup = Counter(session_ids).most_common(1)[0][0]
        raise InvalidArgument(f"session {dup!r} is listed twice: a request steps each session "
                              "at most once")
    for name, values in (("rewards", rewards), ("new_episodes", new_episodes)):
        if values and len(values) != B:
            raise InvalidArgument(f"{name} holds {len(values)} values for {B} sessions: send "
                                  "one per session, or none")
    bad = [i for i, r in enumerate(rewards) if not math.isfinite(r)]
    if bad:
        raise InvalidArgument(f"row {bad[0]}: reward must be a finite number, got "
                              f"{rewards[bad[0]]}")


def _at_row(error: ServingError, row: int, session_ids: list[str]) -> ServingError:
    """The same error, its message prefixed by the row and session it is about."""
    return type(error)(f"row {row} (session {session_ids[row]!r}): {error}")
