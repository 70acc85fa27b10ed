"""Built-in meta-RL tasks: rewards, termination, registration, gymnasium's env checker."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from polyskill.trainer.envs import BanditEnv, DarkRoomEnv, PointGoalEnv, register_builtin_envs
from polyskill.trainer.envs.darkroom import MOVES


def test_bandit_good_arm_pays_more() -> None:
    env = BanditEnv(num_arms=4, p_good=0.9, p_bad=0.1, reward_scale=2.0)
    env.reset(seed=0)
    env.sample_task(np.random.default_rng(1))
    good = env.good_arm
    assert good is not None
    totals = np.zeros(4)
    for _ in range(200):
        for arm in range(4):
            env.reset()
            _, r, terminated, truncated, info = env.step(arm)
            assert terminated and not truncated
            assert info["success"] == float(arm == good)
            assert r in (0.0, 2.0)
            totals[arm] += r
    assert env.good_arm == good  # reset never resamples the task
    assert np.argmax(totals) == good
    assert totals[good] / 200 > 1.5 and np.delete(totals, good).max() / 200 < 0.5


def test_bandit_sample_task_changes_arm() -> None:
    env = BanditEnv(num_arms=5)
    rng = np.random.default_rng(0)
    arms = set()
    for _ in range(50):
        env.sample_task(rng)
        arms.add(env.good_arm)
    assert arms == set(range(5))


def _walk_to(env: DarkRoomEnv, goal: np.ndarray) -> list[int]:
    """Actions that walk from the start to `goal` (x first, then y)."""
    pos, actions = env.start.copy(), []
    while not np.array_equal(pos, goal):
        dx, dy = np.sign(goal - pos)
        a = next(i for i, m in enumerate(MOVES) if tuple(m) == ((dx, 0) if dx else (0, dy)))
        actions.append(a)
        pos = pos + MOVES[a]
    return actions


def test_darkroom_reaching_goal_rewards_and_terminates() -> None:
    env = DarkRoomEnv(size=5, max_steps=15, reward_scale=3.0)
    env.sample_task(np.random.default_rng(3))
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [2.0, 2.0])
    assert env.goal is not None and not np.array_equal(env.goal, env.start)
    actions = _walk_to(env, env.goal)
    for i, a in enumerate(actions):
        obs, r, terminated, truncated, info = env.step(a)
        last = i == len(actions) - 1
        assert terminated == last and not truncated
        assert r == (3.0 if last else 0.0)
    np.testing.assert_array_equal(obs, env.goal.astype(np.float32))
    assert info["success"] == 1.0


def test_darkroom_truncates_and_stays_in_bounds() -> None:
    env = DarkRoomEnv(size=5, max_steps=15)
    env.reset(seed=0)
    env.goal = np.array([0, 0])
    for step in range(15):
        obs, r, terminated, truncated, info = env.step(4)  # right, into the wall
        assert env.observation_space.contains(obs) and r == 0.0 and not terminated
        assert truncated == (step == 14)
    assert obs[0] == 4.0 and info["success"] == 0.0


def test_darkroom_goal_never_start() -> None:
    env = DarkRoomEnv(size=3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        env.sample_task(rng)
        assert not np.array_equal(env.goal, env.start)


def test_point_goal_heading_for_the_goal_beats_standing_still() -> None:
    """The reward is -distance after each move; a trial keeps its goal across resets; the
    episode runs max_steps and reports success only at its end."""
    env = PointGoalEnv(max_steps=20, reward_scale=2.0)
    env.sample_task(np.random.default_rng(3))
    goal = env.goal.copy()
    assert np.linalg.norm(goal) == pytest.approx(1.0) and goal[1] >= 0.0

    def play(policy) -> tuple[float, dict]:
        obs, _ = env.reset(seed=0)
        total, info, truncated = 0.0, {}, False
        while not truncated:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            assert not terminated and env.observation_space.contains(obs)
            total += reward
        return total, info

    still, still_info = play(lambda obs: np.zeros(2, np.float32))
    assert still == pytest.approx(-2.0 * 20)  # distance 1 from the origin for 20 steps
    assert still_info["success"] == 0.0
    heading, info = play(lambda obs: np.clip((goal - obs) * 10, -1, 1).astype(np.float32))
    assert heading > still / 2 and info["success"] == 1.0
    np.testing.assert_array_equal(env.goal, goal)  # reset keeps the trial's goal
    with pytest.raises(ValueError, match="2 finite numbers"):
        env.step(np.array([np.nan, 0.0]))


@pytest.mark.parametrize(
    "env_id", ["polyskill/Bandit-v0", "polyskill/DarkRoom-v0", "polyskill/PointGoal-v0"]
)
def test_make_and_env_checker(env_id: str) -> None:
    env = gym.make(env_id, reward_scale=5.0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.reward_scale == 5.0
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_register_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_builtin_envs()
        register_builtin_envs()
    assert "polyskill/Bandit-v0" in gym.registry and "polyskill/DarkRoom-v0" in gym.registry
