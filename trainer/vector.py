"""Vector envs for a task mix: each slot is TrialEnv(MultiTaskEnv(tasks)), auto-reset same step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym

import polyskill.trainer.envs  # noqa: F401  (registers the built-in polyskill/... tasks)

from .envs.multitask import MultiTaskEnv, TaskSpec
from .trials import TrialEnv


def env_factory(
    tasks: Sequence[TaskSpec], episodes_per_trial: int, fixed_task: str | None = None
) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return TrialEnv(MultiTaskEnv(list(tasks), fixed_task=fixed_task), episodes_per_trial)

    return make


def make_vector_env(
    tasks: Sequence[TaskSpec],
    episodes_per_trial: int,
    num_envs: int,
    vector: str = "sync",
    fixed_task: str | None = None,
) -> gym.vector.VectorEnv:
    fns = [env_factory(tasks, episodes_per_trial, fixed_task) for _ in range(num_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if vector == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def probe_spaces(tasks: Sequence[TaskSpec]) -> tuple[gym.Space, gym.Space]:
    """The merged observation space and shared action space (raises a clear error if none)."""
    env = MultiTaskEnv(list(tasks))
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
