"""Several tasks behind one gymnasium env: one shared observation/action space, a task per trial.

How it composes with `TrialEnv` (which wraps it from the outside: `TrialEnv(MultiTaskEnv(...))`):
- `TrialEnv.reset` calls `MultiTaskEnv.sample_task(rng)`, which picks the next trial's task
  (weighted by `TaskSpec.weight`, or the fixed task) and resamples that task's hidden parameters
  (its own `sample_task`, if any). Then it calls `MultiTaskEnv.reset`, and later resets it again
  between the trial's episodes.
- Once `sample_task` has been called, `reset` never re-picks: the task changes only through
  `sample_task` or `reset(options={"task": name})`. So a trial is always one task.
- Used without `TrialEnv` (`sample_task` never called), every `reset` picks a task and resamples
  its hidden parameters: each episode is a fresh task.
Every reset and step reports the current task name in `info["task"]`; rewards are multiplied by the
task's `reward_scale`.

Observation spaces are merged as follows: identical spaces are kept; 1-D float Boxes of different
sizes become one Box of the largest size, smaller observations zero-padded at the END (bounds
taken over the tasks that have the dimension, widened to include 0 where some task pads it); Dicts
with the same keys follow these rules per key. Anything else raises a ValueError.
Exercise it with: `.venv/bin/python -m pytest tests/unit/test_multitask.py -q`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

COMPATIBLE_HINT = (
    "MultiTaskEnv merges identical spaces, 1-D float Boxes (zero-padded at the end to the largest "
    "size) and Dicts with the same keys whose fields follow these rules; wrap one task's env "
    "(e.g. FlattenObservation, or an adapter to a Dict) so that the spaces match."
)


@dataclass
class TaskSpec:
    """One task of the mix: a gymnasium id and kwargs, a reward multiplier, a sampling weight."""

    name: str
    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    reward_scale: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"task {self.name!r}: weight must be >= 0, got {self.weight}")


def _is_flat_float_box(space: gym.Space) -> bool:
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 1
        and np.issubdtype(space.dtype, np.floating)
    )


def _pad_boxes(boxes: list[gym.spaces.Box]) -> gym.spaces.Box:
    """One Box of the largest size; dims some task lacks (padded with 0) must contain 0."""
    size = max(b.shape[0] for b in boxes)
    dtype = np.result_type(*(b.dtype for b in boxes))
    low = np.full(size, np.inf)  # (size,)
    high = np.full(size, -np.inf)
    for b in boxes:
        n = b.shape[0]
        low[:n] = np.minimum(low[:n], b.low)
        high[:n] = np.maximum(high[:n], b.high)
        low[n:] = np.minimum(low[n:], 0.0)
        high[n:] = np.maximum(high[n:], 0.0)
    return gym.spaces.Box(low.astype(dtype), high.astype(dtype), shape=(size,), dtype=dtype)


def _merge_leaf(spaces: list[gym.Space], names: list[str], where: str) -> gym.Space:
    for name, space in zip(names[1:], spaces[1:], strict=True):
        if space != spaces[0] and not (_is_flat_float_box(space) and _is_flat_float_box(spaces[0])):
            raise ValueError(
                f"observation spaces{where} of tasks {names[0]!r} ({spaces[0]}) and {name!r} "
                f"({space}) are incompatible. {COMPATIBLE_HINT}"
            )
    if all(s == spaces[0] for s in spaces):
        return spaces[0]
    return _pad_boxes(spaces)  # type: ignore[arg-type]


def merge_observation_spaces(spaces: Sequence[gym.Space], names: Sequence[str]) -> gym.Space:
    """The shared observation space of the tasks `names`, or a ValueError naming two that clash."""
    spaces, names = list(spaces), list(names)
    if not all(isinstance(s, gym.spaces.Dict) for s in spaces):
        if any(isinstance(s, gym.spaces.Dict) for s in spaces):
            i = next(i for i, s in enumerate(spaces) if isinstance(s, gym.spaces.Dict))
            j = next(j for j, s in enumerate(spaces) if not isinstance(s, gym.spaces.Dict))
            raise ValueError(
                f"observation spaces of tasks {names[i]!r} ({spaces[i]}) and {names[j]!r} "
                f"({spaces[j]}) are incompatible: one is a Dict. {COMPATIBLE_HINT}"
            )
        return _merge_leaf(spaces, names, "")
    keys = list(spaces[0].spaces)
    for name, space in zip(names[1:], spaces[1:], strict=True):
        if set(space.spaces) != set(keys):
            raise ValueError(
                f"observation spaces of tasks {names[0]!r} (keys {sorted(keys)}) and {name!r} "
                f"(keys {sorted(space.spaces)}) have different Dict keys. {COMPATIBLE_HINT}"
            )
    return gym.spaces.Dict(
        {k: _merge_leaf([s[k] for s in spaces], names, f" (key {k!r})") for k in keys}
    )


def pad_observation(obs: Any, space: gym.Space) -> Any:
    """Fit one task's observation into the merged `space` (zero-pad 1-D Boxes at the end)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: pad_observation(obs[k], s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Box) and _is_flat_float_box(space):
        obs = np.asarray(obs, dtype=space.dtype)  # (n,)
        if obs.shape[0] < space.shape[0]:
            obs = np.concatenate([obs, np.zeros(space.shape[0] - obs.shape[0], space.dtype)])
        return obs
    return obs


class MultiTaskEnv(gym.Env):
    """A weighted mix of tasks with one merged observation space and one shared action space."""

    metadata = {"render_modes": []}

    def __init__(self, tasks: Sequence[TaskSpec], fixed_task: str | None = None) -> None:
        if not tasks:
            raise ValueError("MultiTaskEnv needs at least one TaskSpec")
        self.tasks = list(tasks)
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        weights = np.array([t.weight for t in self.tasks], dtype=np.float64)
        if weights.sum() <= 0:
            raise ValueError("at least one task needs a positive weight")
        self.probs = weights / weights.sum()  # (num_tasks,)
        self.envs = [gym.make(t.env_id, **t.kwargs) for t in self.tasks]
        for t, env in zip(self.tasks[1:], self.envs[1:], strict=True):
            if env.action_space != self.envs[0].action_space:
                raise ValueError(
                    f"action spaces of tasks {names[0]!r} ({self.envs[0].action_space}) and "
                    f"{t.name!r} ({env.action_space}) differ; all tasks must share one action "
                    "space (wrap an env to map its actions onto the shared one)."
                )
        self.action_space = self.envs[0].action_space
        self.observation_space = merge_observation_spaces(
            [e.observation_space for e in self.envs], names
        )
        self.fixed_task = fixed_task
        self.current = self._index_of(fixed_task) if fixed_task is not None else 0
        self._driven_externally = False  # set by the first sample_task(): resets stop re-picking
        self._pending_seeds: dict[int, int] = {}

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def current_task(self) -> str:
        return self.tasks[self.current].name

    def _index_of(self, name: str) -> int:
        if name not in self.task_names:
            raise ValueError(f"unknown task {name!r}; known tasks: {self.task_names}")
        return self.task_names.index(name)

    def _pick(self, rng: np.random.Generator) -> None:
        if self.fixed_task is None:
            self.current = int(rng.choice(len(self.tasks), p=self.probs))
        inner_sample = getattr(self.envs[self.current].unwrapped, "sample_task", None)
        if callable(inner_sample):
            inner_sample(rng)

    def sample_task(self, rng: np.random.Generator) -> None:
        """Pick the task (and its hidden parameters) for the next trial; reset() keeps it."""
        self._driven_externally = True
        self._pick(rng)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            # Seed each inner env once, on its next reset, from our freshly seeded generator.
            self._pending_seeds = {
                i: int(self.np_random.integers(2**31)) for i in range(len(self.envs))
            }
        if options and "task" in options:
            self.current = self._index_of(options["task"])
            inner_sample = getattr(self.envs[self.current].unwrapped, "sample_task", None)
            if callable(inner_sample):
                inner_sample(self.np_random)
        elif not self._driven_externally:
            self._pick(self.np_random)
        inner_options = {k: v for k, v in (options or {}).items() if k != "task"} or None
        obs, info = self.envs[self.current].reset(
            seed=self._pending_seeds.pop(self.current, None), options=inner_options
        )
        return pad_observation(obs, self.observation_space), {**info, "task": self.current_task}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.envs[self.current].step(action)
        reward = self.tasks[self.current].reward_scale * float(reward)
        obs = pad_observation(obs, self.observation_space)
        return obs, reward, terminated, truncated, {**info, "task": self.current_task}

    def close(self) -> None:
        for env in self.envs:
            env.close()
        super().close()
