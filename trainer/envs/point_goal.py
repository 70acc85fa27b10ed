"""Point-robot meta-task with continuous actions: find a hidden goal on a semicircle by its reward.

The continuous-control analogue of the dark room (and a small stand-in for Meta-World's reach with
the goal hidden): a point starts at the origin of the plane and moves by its action; the goal is
a point on the upper half of the unit circle, drawn once per trial and never observed. The dense
reward -distance tells the agent only how far it is, so the first episode of a trial has to
probe, and later ones can head straight for the goal (PEARL's "point robot" task).
Exercise it with: `.venv/bin/python -m pytest tests/unit/test_envs.py -q -k point`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class PointGoalEnv(gym.Env[np.ndarray, np.ndarray]):
    """Observation: the position (x, y), Box(-2, 2, (2,), float32). Action: Box(-1, 1, (2,)), a
    move of `max_move` times the action per step (clipped to the observation box). Reward:
    -reward_scale * distance to the goal after the move. Episodes last `max_steps` steps (no early
    end); `success` is 1.0 when the last position is within `goal_radius` of the goal."""

    metadata = {"render_modes": []}
    task_name = "point_goal"

    def __init__(
        self,
        max_steps: int = 20,
        max_move: float = 0.1,
        goal_radius: float = 0.2,
        reward_scale: float = 1.0,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if max_move <= 0 or goal_radius <= 0:
            raise ValueError(f"max_move and goal_radius must be > 0, got {max_move}, {goal_radius}")
        self.max_steps, self.max_move = max_steps, max_move
        self.goal_radius, self.reward_scale = goal_radius, reward_scale
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.goal: np.ndarray | None = None  # (2,) float64
        self.pos = np.zeros(2)
        self.num_steps = 0

    def sample_task(self, rng: np.random.Generator) -> None:
        """A new hidden goal, uniform in angle on the upper unit semicircle. Once per trial."""
        angle = rng.uniform(0.0, np.pi)
        self.goal = np.array([np.cos(angle), np.sin(angle)])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.goal is None:
            self.sample_task(self.np_random)
        self.pos = np.zeros(2)
        self.num_steps = 0
        return self.pos.astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        assert self.goal is not None, "call reset() before step()"
        self.pos = np.clip(self.pos + self.max_move * np.clip(a, -1.0, 1.0), -2.0, 2.0)
        self.num_steps += 1
        distance = float(np.linalg.norm(self.pos - self.goal))
        truncated = self.num_steps >= self.max_steps
        info: dict[str, Any] = {}
        if truncated:
            info["success"] = float(distance <= self.goal_radius)
        return self.pos.astype(np.float32), -self.reward_scale * distance, False, truncated, info
