"""Named starting configurations. `polyskill train --preset NAME` then `--set key=value` on top.

- smoke:   5-arm Bernoulli bandit, 10 one-pull episodes per trial; a tiny agent learns to find
           the good arm in context within about a minute on one CPU core.
- scales:  bandit (x1) and dark room (x1000) rewards in one agent: the reward-scale barrier.
- cartpole: gymnasium CartPole-v1 with the reference-size network (the `bench train` config).
"""

from __future__ import annotations

from collections.abc import Callable

from polyskill.agent.config import NetworkConfig

from .config import ConfigError, TrainConfig
from .envs.multitask import TaskSpec
from .learner import OptimConfig


def _small_network(context: int, **kw) -> NetworkConfig:
    base = dict(
        d_model=64,
        num_layers=1,
        num_heads=4,
        d_ff=128,
        context_length=context,
        encoder_hidden=64,
        head_hidden=64,
        num_critics=2,
        num_bins=32,
        gammas=(0.9, 0.99),
        dropout=0.0,
    )
    return NetworkConfig(**{**base, **kw})


def smoke() -> TrainConfig:
    return TrainConfig(
        tasks=[TaskSpec("bandit", "polyskill/Bandit-v0", {"num_arms": 5})],
        episodes_per_trial=10,
        num_envs=8,
        batch_size=32,
        steps_per_iteration=1,
        updates_per_iteration=1,
        learning_starts=320,
        eps_start=0.5,
        eps_end=0.05,
        eps_anneal_steps=20_000,
        total_steps=40_000,
        eval_every_steps=8_000,
        eval_trials_per_task=64,
        checkpoint_every_steps=8_000,
        replay_max_trajectories=2000,
        network=_small_network(context=11),
        optim=OptimConfig(lr=1e-3, warmup_updates=100),
    )


def scales() -> TrainConfig:
    return TrainConfig(
        tasks=[
            TaskSpec("bandit", "polyskill/Bandit-v0", {"num_arms": 5}),
            TaskSpec("darkroom_x1000", "polyskill/DarkRoom-v0", {"reward_scale": 1000.0}),
        ],
        episodes_per_trial=4,
        num_envs=8,
        batch_size=32,
        steps_per_iteration=4,
        updates_per_iteration=1,
        learning_starts=1000,
        eps_anneal_steps=100_000,
        total_steps=200_000,
        eval_every_steps=20_000,
        eval_trials_per_task=32,
        checkpoint_every_steps=20_000,
        network=_small_network(context=64, num_layers=2),
        optim=OptimConfig(lr=3e-4, warmup_updates=200),
    )


def cartpole() -> TrainConfig:
    return TrainConfig(
        tasks=[TaskSpec("cartpole", "CartPole-v1")],
        episodes_per_trial=1,
        num_envs=4,
        batch_size=24,
        steps_per_iteration=16,
        updates_per_iteration=1,
        learning_starts=2000,
        eps_anneal_steps=100_000,
        total_steps=1_000_000,
        eval_every_steps=50_000,
        eval_trials_per_task=8,
        checkpoint_every_steps=50_000,
        network=NetworkConfig(
            d_model=128,
            num_layers=2,
            num_heads=8,
            d_ff=512,
            context_length=64,
            num_critics=4,
            num_bins=32,  # DESIGN: 32-64 for small tasks; the output layer is most of an update
        ),
    )


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "smoke": smoke,
    "scales": scales,
    "cartpole": cartpole,
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def tasks_from_env_ids(env_ids: list[str]) -> list[TaskSpec]:
    """`--env A --env B`: each gymnasium id becomes a task named after it."""
    import gymnasium as gym

    import polyskill.trainer.envs  # noqa: F401  (built-in ids)

    tasks = []
    for env_id in env_ids:
        if env_id not in gym.registry:
            raise ConfigError(
                f"--env {env_id}: not a registered gymnasium id (is its package "
                "installed and imported?)"
            )
        tasks.append(TaskSpec(env_id.replace("/", "_"), env_id))
    return tasks
