"""Built-in meta-RL tasks and benchmark-suite adapters, registered with gymnasium on import.

`gymnasium.make("polyskill/Bandit-v0")`, `"polyskill/DarkRoom-v0"` and `"polyskill/PointGoal-v0"`
(continuous actions) work once `polyskill.trainer.envs` has been imported;
`register_builtin_envs()` is safe to call again.
The suite adapters (`polyskill/MetaWorld-v0`, `BabyAI-v0`, `POPGym-v0`, `Atari-v0`,
`Procgen-v0`; docs/suites.md) are registered by entry-point string: importing this package
imports no suite package, and `gymnasium.make` of one raises an ImportError naming the `suites`
extra when its package is missing.
"""

from __future__ import annotations

import gymnasium as gym

from polyskill.trainer.envs.bandit import BanditEnv
from polyskill.trainer.envs.darkroom import DarkRoomEnv
from polyskill.trainer.envs.point_goal import PointGoalEnv

BUILTIN_ENVS: dict[str, str] = {
    "polyskill/Bandit-v0": "polyskill.trainer.envs.bandit:BanditEnv",
    "polyskill/DarkRoom-v0": "polyskill.trainer.envs.darkroom:DarkRoomEnv",
    "polyskill/PointGoal-v0": "polyskill.trainer.envs.point_goal:PointGoalEnv",
}
SUITE_ENVS: dict[str, str] = {
    "polyskill/MetaWorld-v0": "polyskill.trainer.envs.metaworld:MetaWorldEnv",
    "polyskill/BabyAI-v0": "polyskill.trainer.envs.babyai:BabyAIEnv",
    "polyskill/POPGym-v0": "polyskill.trainer.envs.popgym:POPGymEnv",
    "polyskill/Atari-v0": "polyskill.trainer.envs.atari:AtariEnv",
    "polyskill/Procgen-v0": "polyskill.trainer.envs.procgen:ProcgenEnv",
}


def register_builtin_envs() -> None:
    """Register the built-in tasks and the suite adapters; calling again is a no-op (gymnasium
    warns on re-registering)."""
    for env_id, entry_point in {**BUILTIN_ENVS, **SUITE_ENVS}.items():
        if env_id not in gym.registry:
            # NOTE: no max_episode_steps: each env truncates itself, a TimeLimit would duplicate it.
            gym.register(id=env_id, entry_point=entry_point)


register_builtin_envs()

__all__ = [
    "BUILTIN_ENVS",
    "SUITE_ENVS",
    "BanditEnv",
    "DarkRoomEnv",
    "PointGoalEnv",
    "register_builtin_envs",
]
