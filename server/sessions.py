"""The session table: ids, KV-cache slot allocation, step positions, pinned versions, expiry.

Bookkeeping only - integers and numpy, no torch, no grpc - so it is unit-tested with exact ids
(tests/unit/test_sessions.py). A step is two-phase: `begin_step` hands the batcher a `StepPlan`
without changing the session; `commit_step` applies it once the model produced an action, and
`abort_step` drops it. So a rejected or failed step leaves the session exactly as it was (its
cache entry at that position is simply overwritten by the next attempt).

NOTE: a slot is released only when no step of its session is in flight; otherwise a closed or
expired session's late step could write into the cache slot of the session that reused it.
"""

from __future__ import annotations

import heapq
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import ResourceExhausted, ServingError, SessionClosed, SessionNotFound

MAX_TOMBSTONES = 100_000


class StepInFlight(ServingError):
    code = "ABORTED"


class RawStep(NamedTuple):
    """One input token as received, kept so the context can be re-encoded (model swap, eviction).

    NOTE: NamedTuples, not frozen dataclasses, for the per-step records: a frozen dataclass's
    __init__ (object.__setattr__ per field) was 6 % of the server's CPU under ActBatch load."""

    obs: dict[str, np.ndarray | str]
    prev_action: np.ndarray  # () int64 or (dim,) float32
    prev_reward: float
    new_episode: bool
    position: int


class StepPlan(NamedTuple):
    """What the batcher needs to run one session step: cache slot, positions, previous action."""

    session_id: str
    slot: int
    position: int  # step index within the session, from 0
    start: int  # position of the first token cached in the slot (0 unless re-encoded)
    prev_action: np.ndarray
    prev_reward: float
    new_episode: bool
    deterministic: bool
    rng: np.random.Generator
    model_version: int


@dataclass
class Session:
    session_id: str
    slot: int
    model_version: int
    deterministic: bool
    seed: int
    rng: np.random.Generator
    prev_action: np.ndarray
    history: deque[RawStep]
    labels: dict[str, str] = field(default_factory=dict)
    alias: str = ""  # the alias it was opened with ("" = pinned to an explicit version)
    position: int = 0  # steps taken = index of the next step
    start: int = 0
    last_used: float = 0.0
    in_flight: bool = False
    closed: bool = False


class SessionTable:
    def __init__(
        self,
        max_sessions: int,
        idle_timeout_s: float,
        history_steps: int,
        tombstone_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.history_steps = history_steps
        self.tombstone_ttl_s = tombstone_ttl_s
        self.clock = clock
        self.new_id = id_factory or (lambda: secrets.token_hex(8))
        self._sessions: dict[str, Session] = {}
        self._free: list[int] = list(range(max_sessions))  # heap: lowest free slot first
        self._tombstones: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id -> (why, when)
        self._held: set[int] = set()  # slots of closed sessions whose step is still in flight

    # ---- queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def slots_in_use(self) -> int:
        return self.max_sessions - len(self._free)

    def versions_in_use(self) -> set[int]:
        return {s.model_version for s in self._sessions.values()}

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        tomb = self._tombstones.get(session_id)
        if tomb is None:
            raise SessionNotFound(f"unknown session {session_id!r}; open one with OpenSession")
        why, _ = tomb
        if why == "closed":
            raise SessionClosed(f"session {session_id!r} was closed; open a new session to act")
        raise SessionNotFound(
            f"session {session_id!r} expired after {self.idle_timeout_s:g} s without a step; "
            "open a new session (raise the server's idle_timeout_s for slower loops)"
        )

    # ---- lifecycle ----------------------------------------------------------------------------
    def open(
        self, model_version: int, zero_action: np.ndarray, deterministic: bool = False,
        seed: int = 0, labels: dict[str, str] | None = None, alias: str = "",
    ) -> Session:
        if not self._free:
            raise ResourceExhausted(
                f"server is full ({self.max_sessions} sessions); close unused sessions, wait for "
                "idle ones to expire, or retry on another replica"
            )
        session_id = self.new_id()
        while session_id in self._sessions or session_id in self._tombstones:
            session_id = self.new_id()
        if not seed:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        session = Session(
            session_id=session_id, slot=heapq.heappop(self._free), model_version=model_version,
            deterministic=deterministic, seed=seed, rng=np.random.default_rng(seed),
            prev_action=zero_action.copy(), history=deque(maxlen=self.history_steps),
            labels=dict(labels or {}), alias=alias, last_used=self.clock(),
        )
        self._sessions[session_id] = session
        return session

    def close(self, session_id: str) -> int:
        """Close and forget a session; returns its step count."""
        session = self.get(session_id)
        self._remove(session, "closed")
        return session.position

    def expire(self) -> list[str]:
        """Drop sessions idle longer than the timeout (not those with a step in flight)."""
        now = self.clock()
        self._prune_tombstones(now)
        idle = [s for s in self._sessions.values()
                if not s.in_flight and now - s.last_used > self.idle_timeout_s]
        for session in idle:
            self._remove(session, "expired")
        return [s.session_id for s in idle]

    # ---- steps --------------------------------------------------------------------------------
    def begin_step(self, session_id: str, reward: float, new_episode: bool) -> StepPlan:
        """Plan the next step; the session is unchanged until commit_step."""
        return self.begin(self.get(session_id), reward, new_episode)

    def begin(self, session: Session, reward: float, new_episode: bool) -> StepPlan:
        """begin_step for a session already looked up (ActBatch looks up all rows first)."""
        session_id = session.session_id
        if session.in_flight:
            raise StepInFlight(f"session {session_id!r} already has a step in flight; send its "
                               "steps one at a time (wait for each action)")
        session.in_flight = True
        first = session.position == 0
        return StepPlan(
            session_id=session_id, slot=session.slot, position=session.position,
            start=session.start, prev_action=session.prev_action,
            prev_reward=0.0 if first else float(reward), new_episode=first or bool(new_episode),
            deterministic=session.deterministic, rng=session.rng,
            model_version=session.model_version,
        )

    def commit_step(self, plan: StepPlan, action: np.ndarray, obs: dict[str, np.ndarray | str]
                    ) -> None:
        session = self._sessions.get(plan.session_id)
        if session is None:  # closed or expired while the step ran
            self._release_held(plan.slot)
            return
        session.history.append(RawStep(obs, plan.prev_action, plan.prev_reward,
                                       plan.new_episode, plan.position))
        session.prev_action = action
        session.position = plan.position + 1
        session.last_used = self.clock()
        session.in_flight = False

    def abort_step(self, plan: StepPlan) -> None:
        session = self._sessions.get(plan.session_id)
        if session is None:
            self._release_held(plan.slot)
            return
        session.in_flight = False
        session.last_used = self.clock()

    def begin_migration(self, session_id: str) -> Session:
        """Reserve a session for re-encoding onto another version (like a step in flight)."""
        session = self.get(session_id)
        if session.in_flight:
            raise StepInFlight(f"session {session_id!r} already has a step in flight; send its "
                               "steps one at a time (wait for each action)")
        session.in_flight = True
        return session

    def end_migration(self, session: Session, version: int | None, start: int = 0) -> None:
        """Finish a migration: repin to `version` with cache start `start` (None = it failed)."""
        if self._sessions.get(session.session_id) is not session:  # closed meanwhile
            self._release_held(session.slot)
            return
        session.in_flight = False
        if version is not None:
            session.model_version, session.start = version, start

    def touch(self, session_id: str) -> None:
        self.get(session_id).last_used = self.clock()

    # ---- internals ----------------------------------------------------------------------------
    def _remove(self, session: Session, why: str) -> None:
        del self._sessions[session.session_id]
        session.closed = True
        self._tombstones[session.session_id] = (why, self.clock())
        if len(self._tombstones) > MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)
        if session.in_flight:
            self._held.add(session.slot)  # freed by commit_step/abort_step
        else:
            heapq.heappush(self._free, session.slot)

    def _release_held(self, slot: int) -> None:
        if slot in self._held:
            self._held.discard(slot)
            heapq.heappush(self._free, slot)

    def _prune_tombstones(self, now: float) -> None:
        while self._tombstones:
            _, (_, when) = next(iter(self._tombstones.items()))
            if now - when <= self.tombstone_ttl_s:
                break
            self._tombstones.popitem(last=False)
