"""k-episode trials: the unit of in-context adaptation (RL^2 style), with episode-start flags.

`TrialEnv` makes one gymnasium episode out of `episodes_per_trial` inner episodes of the same task.
The hidden task is resampled once per trial (via the inner env's `sample_task`), inner episode ends
show up as `info["new_episode"]` instead of `terminated`, so the sequence model keeps its context
(KV cache) across them and only the trial end resets it. Exercise it with:
`.venv/bin/python -m pytest tests/unit/test_trials.py -q`.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

SUCCESS_KEYS = ("success", "is_success")


def episode_success(info: dict[str, Any]) -> float | None:
    """The inner env's success flag as a float, if it reports one."""
    for key in SUCCESS_KEYS:
        if key in info:
            return float(info[key])
    return None


class TrialEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One episode of this wrapper = one trial of `episodes_per_trial` inner episodes, one task.

    reset(): samples the trial's task (`env.unwrapped.sample_task(rng)` if it exists) with the
    wrapper's own generator, seeded by `reset(seed=...)`, then resets the inner env.
    step(): when an inner episode ends before the k-th, the inner env is reset (same task) and the
    new episode's first observation is returned with the last step's reward, terminated=False,
    truncated=False and info["new_episode"]=True. After the k-th the trial ends as the inner
    episode did. info always has "new_episode" and "episode_index" (0-based, of the returned obs);
    steps that end an inner episode add "episode_return", "episode_number" (1-based) and, when the
    inner env reports success, "episode_success".
    """

    def __init__(self, env: gym.Env, episodes_per_trial: int) -> None:
        # RecordConstructorArgs lets gymnasium rebuild the stack from `env.spec` (env_checker too).
        gym.utils.RecordConstructorArgs.__init__(self, episodes_per_trial=episodes_per_trial)
        gym.Wrapper.__init__(self, env)
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        self.episodes_per_trial = episodes_per_trial
        # NOTE: gym.Wrapper.np_random forwards to the inner env, which is only seeded *after* the
        # task is sampled; a generator of our own keeps trials reproducible from reset(seed=...).
        self.trial_rng = np.random.default_rng()
        self.episode_index = 0
        self.episode_return = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self.trial_rng = np.random.default_rng(seed)
        sample_task = getattr(self.env.unwrapped, "sample_task", None)
        if callable(sample_task):
            sample_task(self.trial_rng)
        obs, info = self.env.reset(seed=seed, options=options)
        self.episode_index = 0
        self.episode_return = 0.0
        return obs, {**info, "new_episode": False, "episode_index": 0}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_return += float(reward)
        info = {**info, "new_episode": False, "episode_index": self.episode_index}
        if not (terminated or truncated):
            return obs, reward, terminated, truncated, info
        info["episode_return"] = self.episode_return
        info["episode_number"] = self.episode_index + 1
        success = episode_success(info)
        if success is not None:
            info["episode_success"] = success
        if self.episode_index + 1 >= self.episodes_per_trial:
            return obs, reward, terminated, truncated, info  # trial over
        # Same task, next episode: the inner reset does not resample the task.
        obs, reset_info = self.env.reset()
        self.episode_index += 1
        self.episode_return = 0.0
        info = {**reset_info, **info, "new_episode": True, "episode_index": self.episode_index}
        return obs, reward, False, False, info


class ScaleReward(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """Multiply every reward by a constant, e.g. to build the reward-scale barrier experiment."""

    def __init__(self, env: gym.Env, scale: float) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        gym.RewardWrapper.__init__(self, env)
        self.scale = float(scale)

    def reward(self, reward: SupportsFloat) -> float:
        return self.scale * float(reward)
