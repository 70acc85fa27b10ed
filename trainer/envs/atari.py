"""Atari games (ale-py; the ROMs ship in its wheel) as gymnasium envs: `polyskill/Atari-v0`.

Every game gets the same spaces, so games mix in one MultiTaskEnv with no padding:
- actions: the full 18-action ALE set (`full_action_space=True`), whatever the game's minimal
  set; actions a game does not use act as its nearest equivalent (ALE's own rule).
- observations: gymnasium's AtariPreprocessing - 4-frame skip with max-pooling of the last two
  frames, up to 30 no-op starts, grayscale, 84x84 - kept as a uint8 HxWxC image: (84, 84, 1), or
  (84, 84, k) with `frame_stack=k` (oldest frame first). One frame is the default: the
  transformer's context is the memory.
- rewards: unclipped (the game's score changes): scales differ by orders of magnitude across
  games, which is what the scale-invariant AMAGO-2 update is for. `reward_scale` in a TaskSpec
  still rescales on purpose.
Sticky actions (v5: repeat probability 0.25) are on; an episode is the whole game (no life-loss
terminal), cut at `max_episode_steps` agent steps. There is no hidden task to resample.
Needs the `suites` extra (`ale-py`).
Exercise it with: `.venv/bin/python -m pytest -q tests/integration/test_suites.py -k atari`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from .multitask import TaskSpec

SCREEN = 84
DEFAULT_GAMES = ("Pong", "Breakout", "SpaceInvaders", "Seaquest", "Qbert")


class AtariEnv(gym.Env):
    """One ALE game, preprocessed to (84, 84, frame_stack) uint8 with 18 actions."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        game: str = "Pong",
        frame_stack: int = 1,
        max_episode_steps: int = 27_000,
        sticky_actions: float = 0.25,
    ) -> None:
        try:
            import ale_py
            import cv2  # noqa: F401  (AtariPreprocessing resizes with it)
        except ImportError as e:
            raise ImportError(
                "Atari games need the `suites` extra: pip install -e '.[suites]' "
                f"(ale-py>=0.10, opencv-python-headless); import failed: {e}"
            ) from e
        gym.register_envs(ale_py)
        env_id = f"ALE/{game}-v5"
        if env_id not in gym.registry:
            raise ValueError(f"unknown Atari game {game!r} (no gymnasium id {env_id})")
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        base = gym.make(
            env_id,
            frameskip=1,  # AtariPreprocessing skips frames itself (and max-pools)
            full_action_space=True,
            repeat_action_probability=sticky_actions,
            max_num_frames_per_episode=max_episode_steps * 4,
            disable_env_checker=True,
        )
        self.inner = gym.wrappers.AtariPreprocessing(
            base, noop_max=30, frame_skip=4, screen_size=SCREEN, grayscale_obs=True,
            grayscale_newaxis=True, terminal_on_life_loss=False, scale_obs=False,
        )  # fmt: skip
        self.game = game
        self.frame_stack = frame_stack
        self.frames: deque[np.ndarray] = deque(maxlen=frame_stack)
        shape = (SCREEN, SCREEN, frame_stack)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(18)

    def _stacked(self) -> np.ndarray:
        return np.concatenate(list(self.frames), axis=-1)  # (84, 84, k)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        frame, info = self.inner.reset(seed=seed, options=options)  # (84, 84, 1)
        for _ in range(self.frame_stack):
            self.frames.append(frame)
        return self._stacked(), dict(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self.inner.step(int(action))
        self.frames.append(frame)
        return self._stacked(), float(reward), bool(terminated), bool(truncated), dict(info)

    def close(self) -> None:
        self.inner.close()
        super().close()


def atari_tasks(
    games: Sequence[str] = DEFAULT_GAMES, frame_stack: int = 1, **kwargs: Any
) -> list[TaskSpec]:
    """TaskSpecs named `atari_<game>`, sharing the 18-action set and the image shape."""
    return [
        TaskSpec(f"atari_{g}", "polyskill/Atari-v0", {"game": g, "frame_stack": frame_stack,
                                                      **kwargs})
        for g in games
    ]  # fmt: skip
