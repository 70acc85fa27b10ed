"""BabyAI levels (via minigrid) as gymnasium envs: `polyskill/BabyAI-v0` with `level="GoToLocal"`.

Observation: a Dict of `image` (7x7x3 uint8, the agent's egocentric view in minigrid's
(object, colour, state) encoding, each code multiplied by IMAGE_CODE_SCALE so that the codes span
0..255 like pixels: the network divides images by 255, which left raw codes 0..10 below 0.04),
`direction` (Discrete(4)) and `mission` (the instruction as
int64 word ids, `TokenIds`: a fixed vocabulary of the BabyAI grammar words, `max_length` ids,
0 = padding or unknown). The network's spec for `mission` is FieldSpec(kind="text", vocab=...),
so a served model takes the mission string and tokenises it with the same rule.
Actions: Discrete(7), identical for every level, so levels mix in one MultiTaskEnv unpadded.

A "task" is one generated level instance (layout + mission): `sample_task(rng)` picks its seed
once per trial and every episode of the trial replays it, so a 2-episode trial is two attempts
at the same instance (AMAGO-2's BabyAI protocol; `episodes_per_trial=2` is set by the preset).
`info["success"]` is 1.0 when the episode ended by completing the mission (minigrid terminates
with a positive reward then). Level generation prints rejected samples to stdout; resets run
with stdout redirected. Needs the `suites` extra (`minigrid`).
Exercise it with: `.venv/bin/python -m pytest -q tests/integration/test_suites.py -k babyai`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from polyskill.agent.spaces import TokenIds

from .multitask import TaskSpec

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")  # minigrid.core.constants
OBJECTS = ("door", "key", "ball", "box", "object")  # verifier.OBJ_TYPES, "object" = any type
GRAMMAR = (
    "go to", "pick up", "open", "put next to",  # verbs (verifier.*Instr.surface)
    "a the",  # articles: "a" when several objects match
    "on your left right in front of behind you",  # locations (ObjDesc.surface)
    "and then after",  # "A and B", "A, then B", "A after you B"
)  # fmt: skip
BABYAI_VOCAB: tuple[str, ...] = tuple(
    sorted({w for phrase in (*COLORS, *OBJECTS, *GRAMMAR) for w in phrase.split()})
)
"""Every word of the BabyAI mission grammar, sorted: ids are stable across runs and machines."""
MAX_MISSION_WORDS = 64
"""Enough for BossLevel's longest compound instructions (about 50 words)."""

DEFAULT_LEVELS = ("GoToRedBallGrey", "GoToLocal", "PickupLoc", "OpenDoor", "PutNextLocal")


class TokenizeText(gym.ObservationWrapper):
    """Replace the Text field `key` of a Dict observation by its word ids (`TokenIds`)."""

    def __init__(self, env: gym.Env, key: str, vocab: tuple[str, ...], max_length: int) -> None:
        super().__init__(env)
        self.key = key
        self.tokens = TokenIds(vocab, max_length)
        spaces = dict(env.observation_space.spaces)  # type: ignore[attr-defined]
        spaces[key] = self.tokens
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        return {**observation, self.key: self.tokens.encode(str(observation[self.key]))}


class BabyAIEnv(gym.Env):
    """One BabyAI level with a tokenised mission; one level instance per trial."""

    metadata = {"render_modes": []}

    def __init__(self, level: str = "GoToLocal", max_length: int = MAX_MISSION_WORDS) -> None:
        try:
            import minigrid  # noqa: F401  (registers the BabyAI-* ids)
        except ImportError as e:
            raise ImportError(
                "BabyAI levels need the `suites` extra: pip install -e '.[suites]' (minigrid>=3)"
            ) from e
        env_id = level if level.startswith("BabyAI-") else f"BabyAI-{level}-v0"
        if env_id not in gym.registry:
            known = sorted(e[7:-3] for e in gym.registry if e.startswith("BabyAI-"))
            raise ValueError(f"unknown BabyAI level {level!r}; known: {known}")
        # NOTE: built with gym.make for its TimeLimit; no env checker (ours wraps this env).
        inner = gym.make(env_id, disable_env_checker=True)
        keep = {k: inner.observation_space[k] for k in ("image", "direction", "mission")}
        inner = gym.wrappers.FilterObservation(inner, list(keep))
        self.inner = TokenizeText(inner, "mission", BABYAI_VOCAB, max_length)
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self._rng = np.random.default_rng()
        self._level_seed: int | None = None
        self._driven_externally = False

    def sample_task(self, rng: np.random.Generator) -> None:
        """Choose the level instance (its generation seed) for the next trial."""
        self._driven_externally = True
        self._level_seed = int(rng.integers(2**31))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if not self._driven_externally or self._level_seed is None:
            self._level_seed = int(self._rng.integers(2**31))
        with contextlib.redirect_stdout(io.StringIO()):  # "Sampling rejected: ..." lines
            obs, info = self.inner.reset(seed=self._level_seed)
        return _spread(obs), {**info, "success": 0.0}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.inner.step(action)
        success = float(bool(terminated) and float(reward) > 0)
        return (_spread(obs), float(reward), bool(terminated), bool(truncated),
                {**info, "success": success})

    def close(self) -> None:
        self.inner.close()
        super().close()


IMAGE_CODE_SCALE = np.array([23, 42, 85], dtype=np.uint8)
"""Per channel: object codes 0..10 -> 0..230, colours 0..5 -> 0..210, states 0..2 -> 0..170."""


def _spread(obs: dict[str, Any]) -> dict[str, Any]:
    return {**obs, "image": obs["image"] * IMAGE_CODE_SCALE}  # (7, 7, 3) uint8, no overflow


def babyai_tasks(
    levels: Sequence[str] = DEFAULT_LEVELS, max_length: int = MAX_MISSION_WORDS
) -> list[TaskSpec]:
    """One TaskSpec per level, named `babyai_<level>`."""
    return [
        TaskSpec(f"babyai_{lv}", "polyskill/BabyAI-v0", {"level": lv, "max_length": max_length})
        for lv in levels
    ]
