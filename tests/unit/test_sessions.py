"""Session bookkeeping with exact ids: slots, positions, two-phase steps, expiry, tombstones."""

import itertools

import numpy as np
import pytest

from polyskill.server.errors import ResourceExhausted, SessionClosed, SessionNotFound
from polyskill.server.sessions import SessionTable, StepInFlight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def table(max_sessions: int = 3, history: int = 4) -> tuple[SessionTable, Clock]:
    clock = Clock()
    ids = (f"s{i}" for i in itertools.count())
    return SessionTable(max_sessions, idle_timeout_s=10.0, history_steps=history,
                        tombstone_ttl_s=100.0, clock=clock, id_factory=lambda: next(ids)), clock


ZERO = np.zeros((), np.int64)


def step(t: SessionTable, sid: str, action: int, reward: float = 1.0, new_episode: bool = False):
    plan = t.begin_step(sid, reward, new_episode)
    t.commit_step(plan, np.array(action), {"obs": np.zeros(2)})
    return plan


def test_slots_are_lowest_free_first_and_reused_after_close() -> None:
    t, _ = table()
    assert [t.open(1, ZERO).slot for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ResourceExhausted, match="server is full"):
        t.open(1, ZERO)
    assert t.close("s1") == 0
    assert t.open(1, ZERO).slot == 1
    assert (len(t), t.slots_in_use) == (3, 3)


def test_first_step_forces_new_episode_zero_reward_and_zero_action() -> None:
    t, _ = table()
    t.open(7, ZERO, deterministic=True, seed=5)
    p0 = step(t, "s0", action=2, reward=9.0, new_episode=False)
    assert (p0.position, p0.prev_reward, p0.new_episode, int(p0.prev_action)) == (0, 0.0, True, 0)
    assert (p0.slot, p0.model_version, p0.deterministic) == (0, 7, True)
    p1 = t.begin_step("s0", 0.5, False)
    assert (p1.position, p1.prev_reward, p1.new_episode, int(p1.prev_action)) == (1, 0.5, False, 2)


def test_aborted_step_changes_nothing() -> None:
    t, clock = table()
    t.open(1, ZERO)
    step(t, "s0", action=1)
    before = t.get("s0")
    snapshot = (before.position, int(before.prev_action), len(before.history))
    plan = t.begin_step("s0", 3.0, True)
    with pytest.raises(StepInFlight):
        t.begin_step("s0", 3.0, True)
    t.abort_step(plan)
    s = t.get("s0")
    assert (s.position, int(s.prev_action), len(s.history)) == snapshot
    assert t.begin_step("s0", 3.0, False).position == 1


def test_history_keeps_recent_raw_steps() -> None:
    t, _ = table(history=2)
    t.open(1, ZERO)
    for a in range(5):
        step(t, "s0", action=a)
    hist = t.get("s0").history
    assert [h.position for h in hist] == [3, 4]
    assert [int(h.prev_action) for h in hist] == [2, 3]


def test_closed_then_not_found_and_failed_precondition() -> None:
    t, _ = table()
    t.open(1, ZERO)
    step(t, "s0", 0)
    assert t.close("s0") == 1
    with pytest.raises(SessionClosed, match="was closed"):
        t.begin_step("s0", 0.0, False)
    with pytest.raises(SessionNotFound, match="unknown session 'nope'"):
        t.get("nope")


def test_idle_expiry_frees_slot_but_not_while_in_flight() -> None:
    t, clock = table()
    t.open(1, ZERO)
    t.open(1, ZERO)
    plan = t.begin_step("s1", 0.0, False)
    clock.now = 11.0
    assert t.expire() == ["s0"]
    with pytest.raises(SessionNotFound, match="expired after 10 s"):
        t.get("s0")
    t.commit_step(plan, np.array(1), {})
    clock.now = 22.0
    assert t.expire() == ["s1"]
    assert t.slots_in_use == 0


def test_slot_of_session_closed_mid_step_is_held_until_the_step_ends() -> None:
    t, _ = table(max_sessions=1)
    t.open(1, ZERO)
    plan = t.begin_step("s0", 0.0, False)
    t.close("s0")
    with pytest.raises(ResourceExhausted):
        t.open(1, ZERO)  # slot 0 still being written by the in-flight step
    t.commit_step(plan, np.array(1), {})
    assert t.open(1, ZERO).slot == 0


def test_tombstones_are_forgotten_after_ttl() -> None:
    t, clock = table()
    t.open(1, ZERO)
    t.close("s0")
    clock.now = 101.0
    t.expire()
    with pytest.raises(SessionNotFound, match="unknown"):
        t.get("s0")
