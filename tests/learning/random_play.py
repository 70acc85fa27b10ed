"""The chance level of a built-in meta-task: a uniformly random policy over whole trials."""

import gymnasium as gym
import numpy as np

import polyskill.trainer.envs  # noqa: F401 - registers the built-in tasks


def random_policy_return(env_id: str, num_trials: int, episodes: int, seed: int, **kwargs) -> float:
    """Mean return per trial of `episodes` episodes, each trial on a task drawn anew."""
    env = gym.make(env_id, **kwargs)
    space = env.action_space
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_trials):
        env.unwrapped.sample_task(rng)
        for _ in range(episodes):
            env.reset(seed=int(rng.integers(2**31)))
            done = False
            while not done:
                if isinstance(space, gym.spaces.Discrete):
                    action = int(rng.integers(space.n))
                else:
                    action = rng.uniform(space.low, space.high)
                _, reward, terminated, truncated, _ = env.step(action)
                total, done = total + reward, terminated or truncated
    return total / num_trials
