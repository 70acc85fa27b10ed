"""Bernoulli multi-armed bandit meta-task: one pull per episode, the good arm is the hidden task.

An agent that adapts in context pulls arms over a trial of k episodes and then keeps pulling the
good one. Exercise it with: `.venv/bin/python -m pytest tests/unit/test_envs.py -q`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BanditEnv(gym.Env[np.ndarray, np.int64]):
    """One pull per episode; arm `good_arm` pays with `p_good`, every other arm with `p_bad`.

    The hidden good arm changes only in `sample_task` (called by `TrialEnv` at a trial start), never
    in `reset`, so it stays fixed across the episodes of a trial. If `sample_task` was never called,
    the first `reset` samples it once from the env's own `np_random`.
    """

    metadata = {"render_modes": []}
    task_name = "bandit"

    def __init__(
        self,
        num_arms: int = 5,
        p_good: float = 0.8,
        p_bad: float = 0.2,
        reward_scale: float = 1.0,
    ) -> None:
        if num_arms < 2:
            raise ValueError(f"num_arms must be >= 2, got {num_arms}")
        if not (0.0 <= p_bad <= 1.0 and 0.0 <= p_good <= 1.0):
            raise ValueError(f"probabilities must be in [0, 1], got {p_good=} {p_bad=}")
        self.num_arms = num_arms
        self.p_good = p_good
        self.p_bad = p_bad
        self.reward_scale = reward_scale
        # NOTE: the observation carries no information; only the reward reveals the task.
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_arms)
        self.good_arm: int | None = None

    def sample_task(self, rng: np.random.Generator) -> None:
        """Pick a new hidden good arm (uniform). Called once per trial."""
        self.good_arm = int(rng.integers(self.num_arms))

    def _obs(self) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)  # (1,)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.good_arm is None:
            self.sample_task(self.np_random)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arm = int(action)
        if not 0 <= arm < self.num_arms:
            raise ValueError(f"action must be in [0, {self.num_arms}), got {action}")
        assert self.good_arm is not None, "call reset() before step()"
        good = arm == self.good_arm
        p = self.p_good if good else self.p_bad
        reward = self.reward_scale * float(self.np_random.random() < p)
        return self._obs(), reward, True, False, {"success": float(good)}
