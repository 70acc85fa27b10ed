"""Procgen games as gymnasium envs: `polyskill/Procgen-v0` with `game="coinrun"` (optional).

NOTE: not installable in this project's environment. Procgen has no Python 3.11 wheel here;
`procgen2` (the maintained build of the original) needs numpy<2 and the old `gym` API, which
conflicts with this project's numpy 2. Run it from a separate environment:
    python3.11 -m venv .venv-procgen && .venv-procgen/bin/pip install 'numpy<2' gym procgen2
    .venv-procgen/bin/pip install -e .   # then train with the procgen-multigame preset there
The gymnasium port `procgen-gym` (Python >= 3.13) is used instead when it is importable.
Without either, constructing this env raises an ImportError saying the above; importing this
module never does (`polyskill.trainer.envs` registers the id by entry-point string only).

Every game has the same spaces, so games mix in one MultiTaskEnv unpadded: 64x64x3 uint8
images and Discrete(15) actions. Rewards are the games' own (unnormalised: 10 in CoinRun, up to
hundreds elsewhere - the AMAGO-2 reward-scale test rescales two games on top). A level is drawn
by Procgen on every reset from `num_levels` levels starting at `start_level` (0 = unlimited).
Untested here for the reason above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from .multitask import TaskSpec

GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
INSTALL_HINT = (
    "Procgen needs its own environment: no Python 3.11 wheel of `procgen` exists here and "
    "`procgen2` needs numpy<2 plus the old `gym` package (see trainer/envs/procgen.py and "
    "docs/suites.md); on Python >= 3.13 `pip install procgen-gym` works instead."
)


def _make_backend(game: str, kwargs: dict[str, Any]) -> tuple[Any, bool]:
    """(env, legacy): a gymnasium env, or an old-gym env whose API `ProcgenEnv` adapts."""
    try:
        import procgen_gym  # noqa: F401  (gymnasium port, registers procgen_gym/...)

        return gym.make(f"procgen_gym/procgen-{game}-v0", **kwargs), False
    except ImportError:
        pass
    try:
        import gym as old_gym  # type: ignore[import-not-found]
        import procgen  # type: ignore[import-not-found]  # noqa: F401  (procgen or procgen2)
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} (import failed: {e})") from e
    return old_gym.make(f"procgen:procgen-{game}-v0", **kwargs), True


class ProcgenEnv(gym.Env):
    """One Procgen game: (64, 64, 3) uint8 observations, Discrete(15) actions."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        game: str = "coinrun",
        distribution_mode: str = "easy",
        num_levels: int = 0,
        start_level: int = 0,
    ) -> None:
        if game not in GAMES:
            raise ValueError(f"unknown Procgen game {game!r}; known: {list(GAMES)}")
        kwargs = dict(
            distribution_mode=distribution_mode, num_levels=num_levels, start_level=start_level
        )
        self.inner, self.legacy = _make_backend(game, kwargs)
        self.game = game
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(15)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.legacy:  # old gym: reset() -> obs (procgen seeds through start_level instead)
            out = self.inner.reset()
            obs, info = (out if isinstance(out, tuple) else (out, {}))
        else:
            obs, info = self.inner.reset(seed=seed, options=options)
        return np.asarray(obs, np.uint8), dict(info)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        out = self.inner.step(int(action))
        if self.legacy and len(out) == 4:  # (obs, reward, done, info)
            obs, reward, done, info = out
            truncated = bool(info.get("TimeLimit.truncated", False))
            terminated = bool(done) and not truncated
        else:
            obs, reward, terminated, truncated, info = out
        obs = np.asarray(obs, np.uint8)
        return obs, float(reward), bool(terminated), bool(truncated), dict(info)

    def close(self) -> None:
        self.inner.close()
        super().close()


def procgen_tasks(
    games: Sequence[str] = ("coinrun", "bigfish", "climber", "maze", "ninja"),
    reward_scales: dict[str, float] | None = None,
    **kwargs: Any,
) -> list[TaskSpec]:
    """TaskSpecs named `procgen_<game>`; `reward_scales` e.g. {"bigfish": 100, "maze": 0.1}."""
    scales = reward_scales or {}
    return [
        TaskSpec(f"procgen_{g}", "polyskill/Procgen-v0", {"game": g, **kwargs},
                 scales.get(g, 1.0))
        for g in games
    ]  # fmt: skip
