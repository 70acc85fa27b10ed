"""Built-in meta-RL tasks, registered with gymnasium on import.

`gymnasium.make("polyskill/Bandit-v0")` and `gymnasium.make("polyskill/DarkRoom-v0")` work once
`polyskill.trainer.envs` has been imported; `register_builtin_envs()` is safe to call again.
"""

from __future__ import annotations

import gymnasium as gym

from polyskill.trainer.envs.bandit import BanditEnv
from polyskill.trainer.envs.darkroom import DarkRoomEnv

BUILTIN_ENVS: dict[str, str] = {
    "polyskill/Bandit-v0": "polyskill.trainer.envs.bandit:BanditEnv",
    "polyskill/DarkRoom-v0": "polyskill.trainer.envs.darkroom:DarkRoomEnv",
}


def register_builtin_envs() -> None:
    """Register the built-in tasks; calling again is a no-op (gymnasium warns on re-registering)."""
    for env_id, entry_point in BUILTIN_ENVS.items():
        if env_id not in gym.registry:
            # NOTE: no max_episode_steps: each env truncates itself, a TimeLimit would duplicate it.
            gym.register(id=env_id, entry_point=entry_point)


register_builtin_envs()

__all__ = ["BUILTIN_ENVS", "BanditEnv", "DarkRoomEnv", "register_builtin_envs"]
