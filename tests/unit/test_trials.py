"""TrialEnv: k episodes per trial, episode-start flags, per-episode stats, one task per trial."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from polyskill.trainer.envs import BanditEnv, DarkRoomEnv
from polyskill.trainer.trials import ScaleReward, TrialEnv


def test_bandit_trial_of_k_episodes() -> None:
    env = TrialEnv(BanditEnv(num_arms=3, p_good=1.0, p_bad=0.0), episodes_per_trial=4)
    _, info = env.reset(seed=0)
    assert info == {"new_episode": False, "episode_index": 0}
    good = env.unwrapped.good_arm
    for k in range(4):
        _, r, terminated, truncated, info = env.step(good)
        assert r == 1.0
        assert info["episode_number"] == k + 1 and info["episode_return"] == 1.0
        assert info["episode_success"] == 1.0
        last = k == 3
        assert terminated == last and not truncated
        assert info["new_episode"] == (not last)
        assert info["episode_index"] == (k if last else k + 1)
        assert env.unwrapped.good_arm == good  # fixed within the trial


def test_darkroom_trial_flags_and_returns() -> None:
    env = TrialEnv(DarkRoomEnv(size=5, max_steps=3), episodes_per_trial=2)
    obs, _ = env.reset(seed=1)
    env.unwrapped.goal = np.array([0, 0])  # staying at the centre never reaches it
    flags, indices, ends = [], [], []
    done = False
    while not done:
        obs, r, terminated, truncated, info = env.step(0)  # stay: never reaches the goal
        flags.append(info["new_episode"])
        indices.append(info["episode_index"])
        if "episode_return" in info:
            ends.append((info["episode_number"], info["episode_return"], info["episode_success"]))
        done = terminated or truncated
    assert flags == [False, False, True, False, False, False]
    assert indices == [0, 0, 1, 1, 1, 1]
    assert ends == [(1, 0.0, 0.0), (2, 0.0, 0.0)]
    assert truncated and not terminated  # the last inner episode was truncated
    np.testing.assert_array_equal(obs, [2.0, 2.0])


def test_new_episode_obs_is_first_obs_and_reward_is_last_step() -> None:
    env = TrialEnv(DarkRoomEnv(size=3, max_steps=10, reward_scale=2.0), episodes_per_trial=2)
    env.reset(seed=0)
    env.unwrapped.goal = np.array([2, 1])
    obs, r, terminated, truncated, info = env.step(4)  # right: reaches the goal
    assert info["new_episode"] and r == 2.0 and not terminated and not truncated
    assert info["episode_return"] == 2.0 and info["episode_success"] == 1.0
    np.testing.assert_array_equal(obs, [1.0, 1.0])  # back at the start
    obs, r, terminated, _, info = env.step(4)
    assert terminated and r == 2.0 and info["episode_number"] == 2


def test_task_changes_across_trials() -> None:
    env = TrialEnv(BanditEnv(num_arms=5), episodes_per_trial=3)
    arms = []
    for trial in range(30):
        env.reset(seed=trial if trial == 0 else None)
        arm = env.unwrapped.good_arm
        for _ in range(3):
            env.step(0)
            assert env.unwrapped.good_arm == arm
        arms.append(arm)
    assert len(set(arms)) > 1


def test_seeded_trials_are_reproducible() -> None:
    def arms(seed: int) -> list[int]:
        env = TrialEnv(DarkRoomEnv(), episodes_per_trial=1)
        env.reset(seed=seed)
        out = [tuple(env.unwrapped.goal)]
        for _ in range(5):
            env.reset()
            out.append(tuple(env.unwrapped.goal))
        return out

    assert arms(7) == arms(7)


def test_env_without_sample_task_and_scale_reward() -> None:
    env = TrialEnv(ScaleReward(gym.make("CartPole-v1"), 10.0), episodes_per_trial=2)
    env.reset(seed=0)
    episodes, total = 0, 0.0
    while True:
        _, r, terminated, truncated, info = env.step(0)
        assert r == 10.0
        total += r
        if "episode_number" in info:
            episodes += 1
        if terminated or truncated:
            break
    assert episodes == 2 and info["episode_return"] > 0


def test_trial_env_passes_env_checker() -> None:
    env = ScaleReward(TrialEnv(gym.make("polyskill/DarkRoom-v0"), episodes_per_trial=3), 2.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped")
        check_env(env, skip_render_check=True)
