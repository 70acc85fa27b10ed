"""POPGym memory tasks as gymnasium envs: `polyskill/POPGym-v0` with `env="RepeatFirstEasy"`.

POPGym's tasks have different observation and action spaces (Discrete, MultiDiscrete, Tuple and
Box observations; Discrete, MultiDiscrete and Box actions). One rule maps each onto a shared one:
- observation -> one flat float32 vector: Discrete(n) becomes an n-way one-hot, MultiDiscrete
  and Tuple the concatenation of their parts' encodings, Box its values. `MultiTaskEnv` then
  zero-pads the vectors at the end to the largest task's size.
- action -> Discrete(num_actions), the same N for every task of a mix (`popgym_tasks` sets it to
  the largest task's count). A task with n actions runs action a as a % n. MultiDiscrete actions
  are flattened row-major (Battleship's (row, col) -> row * cols + col); the pendulums' torque
  Box is cut into `torque_bins` evenly spaced values.
Rewards are POPGym's own: each task scales them so an episode's return lies in [-1, 1], so the
returns of a mix are already normalised per task (`reward_scale` in TaskSpec can still break that
on purpose). Tasks have no hidden parameter to resample: a new episode is a new sequence.
The navigation tasks (Labyrinth*) need the optional `mazelib` and are not in the default mix.
Needs the `suites` extra (`popgym`; it pulls no heavy dependency).
Exercise it with: `.venv/bin/python -m pytest -q tests/integration/test_suites.py -k popgym`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from .multitask import TaskSpec

TORQUE_BINS = 9
FAMILIES = (
    "Autoencode", "RepeatPrevious", "RepeatFirst", "CountRecall", "PositionOnlyCartPole",
    "VelocityOnlyCartPole", "NoisyPositionOnlyCartPole", "PositionOnlyPendulum",
    "NoisyPositionOnlyPendulum", "MultiarmedBandit", "HigherLower", "Battleship",
    "Concentration", "MineSweeper",
)  # fmt: skip
_ACTIONS_BY_LEVEL: dict[str, tuple[int, int, int]] = {  # (Easy, Medium, Hard), popgym 1.0.7
    "CountRecall": (27, 27, 17),
    "MultiarmedBandit": (10, 20, 30),
    "Battleship": (64, 100, 144),
    "Concentration": (52, 104, 52),
    "MineSweeper": (16, 36, 64),
}
LEVELS = ("Easy", "Medium", "Hard")
ACTION_COUNTS: dict[str, int] = {
    f"{fam}{lv}": _ACTIONS_BY_LEVEL.get(fam, (0, 0, 0))[i]
    or (TORQUE_BINS if "Pendulum" in fam else 4 if fam in FAMILIES[:3] else 2)
    for fam in FAMILIES
    for i, lv in enumerate(LEVELS)
}
"""Flattened action counts per task (checked against popgym by a unit test), so a mix's shared
action count is known without importing popgym."""
DEFAULT_MIX = tuple(f"{fam}Easy" for fam in FAMILIES)


def flat_size(space: gym.Space) -> int:
    """Length of the flat float encoding of `space` (one-hot for discrete parts)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.Tuple):
        return sum(flat_size(s) for s in space.spaces)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise TypeError(f"POPGym adapter cannot encode observation space {space}")


def flatten(obs: Any, space: gym.Space) -> np.ndarray:
    """One observation -> (flat_size(space),) float32, by the module's rule."""
    if isinstance(space, gym.spaces.Discrete):
        out = np.zeros(int(space.n), np.float32)
        out[int(obs) - int(space.start)] = 1.0
        return out
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = space.nvec.ravel()
        out = np.zeros(int(nvec.sum()), np.float32)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])  # (k,)
        out[offsets + np.asarray(obs).ravel().astype(np.int64)] = 1.0
        return out
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([flatten(o, s) for o, s in zip(obs, space.spaces, strict=True)])
    return np.asarray(obs, np.float32).ravel()


def action_count(space: gym.Space, torque_bins: int = TORQUE_BINS) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.prod(space.nvec))
    if isinstance(space, gym.spaces.Box) and space.shape == (1,):
        return torque_bins
    raise TypeError(f"POPGym adapter cannot map action space {space}")


class POPGymEnv(gym.Env):
    """One POPGym task with a flat float observation and a shared Discrete(num_actions)."""

    metadata = {"render_modes": []}

    def __init__(
        self, env: str = "RepeatFirstEasy", num_actions: int = 0, torque_bins: int = TORQUE_BINS
    ) -> None:
        try:
            from popgym.envs import ALL
        except ImportError as e:
            raise ImportError(
                "POPGym tasks need the `suites` extra: pip install -e '.[suites]' (popgym)"
            ) from e
        classes = {cls.__name__: cls for cls in ALL}
        if env not in classes:
            raise ValueError(f"unknown POPGym env {env!r}; known: {sorted(classes)}")
        self.inner = classes[env]()
        self.name = env
        self.torque_bins = torque_bins
        self.task_actions = action_count(self.inner.action_space, torque_bins)
        num_actions = num_actions or self.task_actions
        if num_actions < self.task_actions:
            raise ValueError(
                f"{env}: num_actions={num_actions} is below its {self.task_actions} actions"
            )
        size = flat_size(self.inner.observation_space)
        space = self.inner.observation_space
        if isinstance(space, gym.spaces.Box):
            low, high = space.low.ravel(), space.high.ravel()  # (size,)
        else:
            low, high = np.zeros(size), np.ones(size)  # one-hot codes
        self.observation_space = gym.spaces.Box(
            low.astype(np.float32), high.astype(np.float32), (size,), np.float32
        )
        self.action_space = gym.spaces.Discrete(num_actions)

    def _inner_action(self, action: int) -> Any:
        a = int(action) % self.task_actions
        space = self.inner.action_space
        if isinstance(space, gym.spaces.MultiDiscrete):
            return np.array(np.unravel_index(a, tuple(space.nvec)), dtype=space.dtype)
        if isinstance(space, gym.spaces.Box):
            levels = np.linspace(space.low[0], space.high[0], self.torque_bins)
            return np.array([levels[a]], dtype=space.dtype)
        return a

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.inner.reset(seed=seed, options=options)
        return flatten(obs, self.inner.observation_space), copy.deepcopy(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.inner.step(self._inner_action(action))
        obs = flatten(obs, self.inner.observation_space)
        # NOTE: deep copies: some tasks return one mutable info array every step (CountRecall).
        return obs, float(reward), bool(terminated), bool(truncated), copy.deepcopy(info)

    def close(self) -> None:
        self.inner.close()
        super().close()


def popgym_tasks(
    envs: Sequence[str] = DEFAULT_MIX, reward_scales: dict[str, float] | None = None
) -> list[TaskSpec]:
    """TaskSpecs named `popgym_<env>`, all with the mix's shared action count."""
    unknown = [e for e in envs if e not in ACTION_COUNTS]
    if unknown:
        raise ValueError(f"unknown POPGym envs {unknown}; known: {sorted(ACTION_COUNTS)}")
    n = max(ACTION_COUNTS[e] for e in envs)
    scales = reward_scales or {}
    return [
        TaskSpec(f"popgym_{e}", "polyskill/POPGym-v0", {"env": e, "num_actions": n},
                 scales.get(e, 1.0))
        for e in envs
    ]  # fmt: skip
