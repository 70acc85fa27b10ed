"""Dark-room gridworld meta-task: find a hidden goal cell from an observation of position only.

The agent starts at the centre of a `size` x `size` grid and sees only its own (x, y); the goal is
revealed only by the reward, so across the episodes of a trial it should explore once, then walk
straight to the goal. Exercise it with: `.venv/bin/python -m pytest tests/unit/test_envs.py -q`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# action id -> (dx, dy); y grows "up".
MOVES = np.array([(0, 0), (0, 1), (0, -1), (-1, 0), (1, 0)], dtype=np.int64)  # (5, 2)
ACTION_NAMES = ("stay", "up", "down", "left", "right")


class DarkRoomEnv(gym.Env[np.ndarray, np.int64]):
    """A `size` x `size` grid; reward `reward_scale` on reaching the hidden goal, which ends it.

    Observation: Box(0, size - 1, (2,), float32) holding the integer cell (x, y). A float Box (not
    MultiDiscrete) so that it mixes with other vector tasks in `MultiTaskEnv` by zero-padding.
    Actions: Discrete(5) = stay, up, down, left, right; moves into a wall leave the agent in place.
    The episode is truncated after `max_steps` steps without reaching the goal (success 0.0).
    """

    metadata = {"render_modes": []}
    task_name = "darkroom"

    def __init__(self, size: int = 5, max_steps: int = 15, reward_scale: float = 1.0) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.size = size
        self.max_steps = max_steps
        self.reward_scale = reward_scale
        self.start = np.array([size // 2, size // 2], dtype=np.int64)  # (2,)
        self.observation_space = gym.spaces.Box(0.0, size - 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self.goal: np.ndarray | None = None  # (2,) int64
        self.pos = self.start.copy()
        self.num_steps = 0

    def sample_task(self, rng: np.random.Generator) -> None:
        """Pick a new hidden goal cell, uniform over all cells except the start. Once per trial."""
        cells = [(x, y) for x in range(self.size) for y in range(self.size)]
        cells.remove((int(self.start[0]), int(self.start[1])))
        self.goal = np.array(cells[int(rng.integers(len(cells)))], dtype=np.int64)

    def _obs(self) -> np.ndarray:
        return self.pos.astype(np.float32)  # (2,)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.goal is None:
            self.sample_task(self.np_random)
        self.pos = self.start.copy()
        self.num_steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not 0 <= a < len(MOVES):
            raise ValueError(f"action must be in [0, {len(MOVES)}), got {action}")
        assert self.goal is not None, "call reset() before step()"
        self.pos = np.clip(self.pos + MOVES[a], 0, self.size - 1)
        self.num_steps += 1
        reached = bool(np.array_equal(self.pos, self.goal))
        reward = self.reward_scale if reached else 0.0
        truncated = not reached and self.num_steps >= self.max_steps
        info: dict[str, Any] = {}
        if reached or truncated:
            info["success"] = float(reached)
        return self._obs(), reward, reached, truncated, info
