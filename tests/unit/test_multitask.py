"""MultiTaskEnv: merged spaces, clear errors, task sampling and its composition with TrialEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from polyskill.trainer.envs.multitask import MultiTaskEnv, TaskSpec, merge_observation_spaces
from polyskill.trainer.trials import TrialEnv

BANDIT = TaskSpec("bandit", "polyskill/Bandit-v0", {"num_arms": 5})
DARK = TaskSpec("dark", "polyskill/DarkRoom-v0", {"size": 5}, reward_scale=10.0)


def test_pads_1d_boxes_at_the_end() -> None:
    env = MultiTaskEnv([BANDIT, DARK])
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (2,)
    np.testing.assert_array_equal(space.low, [0.0, 0.0])
    np.testing.assert_array_equal(space.high, [4.0, 4.0])
    obs, info = env.reset(seed=0, options={"task": "bandit"})
    assert info["task"] == "bandit" and obs.shape == (2,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, info = env.reset(options={"task": "dark"})
    np.testing.assert_array_equal(obs, [2.0, 2.0])
    _, r, _, _, info = env.step(0)
    assert info["task"] == "dark" and r in (0.0, 10.0)


def test_padding_bounds_include_zero() -> None:
    a = gym.spaces.Box(1.0, 2.0, (3,), np.float32)
    b = gym.spaces.Box(-1.0, 5.0, (1,), np.float32)
    merged = merge_observation_spaces([a, b], ["a", "b"])
    np.testing.assert_array_equal(merged.low, [-1.0, 0.0, 0.0])
    np.testing.assert_array_equal(merged.high, [5.0, 2.0, 2.0])


def test_dict_spaces_merge_per_key() -> None:
    a = gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (2,)), "m": gym.spaces.Discrete(3)})
    b = gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (4,)), "m": gym.spaces.Discrete(3)})
    merged = merge_observation_spaces([a, b], ["a", "b"])
    assert merged["x"].shape == (4,) and merged["m"] == gym.spaces.Discrete(3)
    c = gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (2,))})
    with pytest.raises(ValueError, match="'a'.*'c'.*keys"):
        merge_observation_spaces([a, c], ["a", "c"])


def test_incompatible_action_spaces_name_both_tasks() -> None:
    other = TaskSpec("bandit3", "polyskill/Bandit-v0", {"num_arms": 3})
    with pytest.raises(ValueError, match="'bandit'.*Discrete\\(5\\).*'bandit3'.*Discrete\\(3\\)"):
        MultiTaskEnv([BANDIT, other])


def test_cartpole_with_builtin_is_a_clear_error() -> None:
    cart = TaskSpec("cartpole", "CartPole-v1")
    with pytest.raises(ValueError, match="action spaces of tasks 'bandit'.*'cartpole'"):
        MultiTaskEnv([BANDIT, cart])
    # A matching action space makes the mix work: the bandit's (1,) obs is padded to (4,).
    bandit2 = TaskSpec("bandit2", "polyskill/Bandit-v0", {"num_arms": 2})
    env = MultiTaskEnv([bandit2, cart])
    assert env.observation_space.shape == (4,)
    obs, _ = env.reset(seed=0, options={"task": "bandit2"})
    np.testing.assert_array_equal(obs, np.zeros(4, np.float32))
    # Observations that cannot be padded (a float Box vs a MultiDiscrete) are a clear error.
    with pytest.raises(ValueError, match="observation spaces of tasks 'a'.*'b'.*incompatible"):
        merge_observation_spaces(
            [gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiDiscrete([3, 3])], ["a", "b"]
        )


def test_weights_and_fixed_task() -> None:
    env = MultiTaskEnv([BANDIT, TaskSpec("dark", "polyskill/DarkRoom-v0", weight=3.0)])
    env.reset(seed=0)
    counts = {"bandit": 0, "dark": 0}
    for _ in range(400):
        _, info = env.reset()  # standalone: each reset picks a task
        counts[info["task"]] += 1
    assert 0.65 < counts["dark"] / 400 < 0.85
    fixed = MultiTaskEnv([BANDIT, DARK], fixed_task="dark")
    for _ in range(10):
        fixed.sample_task(np.random.default_rng())
        assert fixed.reset()[1]["task"] == "dark"
    with pytest.raises(ValueError, match="unknown task"):
        MultiTaskEnv([BANDIT, DARK], fixed_task="nope")


def test_trial_is_one_task_and_tasks_change_across_trials() -> None:
    env = TrialEnv(MultiTaskEnv([BANDIT, DARK]), episodes_per_trial=3)
    seen = set()
    for trial in range(20):
        _, info = env.reset(seed=0 if trial == 0 else None)
        task = info["task"]
        inner = env.unwrapped.envs[env.unwrapped.current].unwrapped
        hidden = inner.good_arm if task == "bandit" else tuple(inner.goal)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(0)
            assert info["task"] == task
            now = inner.good_arm if task == "bandit" else tuple(inner.goal)
            assert now == hidden
            done = terminated or truncated
        seen.add(task)
    assert seen == {"bandit", "dark"}


def test_multitask_passes_env_checker() -> None:
    check_env(MultiTaskEnv([BANDIT, DARK]), skip_render_check=True)
