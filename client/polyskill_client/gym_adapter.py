"""gymnasium <-> Polyskill: check an env against the served model, convert obs and actions.

Needs the `gym` extra (`pip install "./client[gym]"`). The check runs before the first step and
lists every difference at once, so a wrong env or model is a readable error, not a failed step:

    with PolicyClient("localhost:50051") as client, client.open_session() as session:
        agent = GymSession(session, env)                      # raises SpecMismatch on mismatch
        obs, _ = env.reset(seed=0)
        action = agent.step(obs)                              # env-ready action
        obs, reward, terminated, truncated, info = env.step(action)
        action = agent.step(obs, reward)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .errors import SpecMismatch
from .specs import ActionSpec, ModelInfo, TensorSpec

SINGLE_KEY = "obs"
_DTYPES = {"vector": np.float32, "image": np.uint8, "discrete": np.int64,
           "multidiscrete": np.int64}


def _expected_field(name: str, space: gym.Space) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(kind, shape, nvec) the server derives from an env space (mirrors its spaces module)."""
    if isinstance(space, gym.spaces.Box):
        if space.dtype == np.uint8 and len(space.shape) == 3:
            return "image", tuple(space.shape), ()
        if len(space.shape) != 1:
            raise SpecMismatch(f"observation field {name!r}: Box of shape {space.shape} is "
                               "neither a vector nor a uint8 HxWxC image; wrap the env in "
                               "gymnasium.wrappers.FlattenObservation (as in training)")
        return "vector", tuple(space.shape), ()
    if isinstance(space, gym.spaces.Discrete):
        return "discrete", (), (int(space.n),)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multidiscrete", tuple(space.shape), tuple(int(n) for n in space.nvec.ravel())
    if isinstance(space, gym.spaces.Text):
        return "text", (), ()
    raise SpecMismatch(f"observation field {name!r}: {space!r} cannot be sent to the policy")


def _action_problems(spec: ActionSpec, space: gym.Space) -> list[str]:
    if isinstance(space, gym.spaces.Discrete):
        if spec.kind != "discrete":
            return [f"action: env has Discrete({space.n}), model has {spec.describe()}"]
        if int(space.n) != spec.n or int(space.start) != 0:
            return [f"action: env has Discrete({space.n}, start={space.start}), model has "
                    f"{spec.describe()}"]
        return []
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if spec.kind != "continuous" or spec.dim != space.shape[0]:
            return [f"action: env has Box{space.shape}, model has {spec.describe()}"]
        if not (np.allclose(space.low, spec.low) and np.allclose(space.high, spec.high)):
            return [f"action: env bounds [{space.low.tolist()}, {space.high.tolist()}] differ "
                    f"from the model's [{list(spec.low)}, {list(spec.high)}]"]
        return []
    return [f"action: env space {space!r} is not supported (Discrete or 1-D Box)"]


def check_env(model: ModelInfo, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise SpecMismatch listing every way the env's spaces differ from the model's specs."""
    if isinstance(observation_space, gym.spaces.Dict):
        env_fields = dict(observation_space.spaces.items())
    else:
        env_fields = {SINGLE_KEY: observation_space}
    problems: list[str] = []
    by_name = {f.name: f for f in model.observation_spec}
    if missing := [n for n in by_name if n not in env_fields]:
        problems.append(f"observation: the env lacks field(s) {missing}")
    if extra := [n for n in env_fields if n not in by_name]:
        problems.append(f"observation: the model has no field(s) {extra}")
    for name, space in env_fields.items():
        if name not in by_name:
            continue
        try:
            kind, shape, nvec = _expected_field(name, space)
        except SpecMismatch as e:
            problems.append(str(e))
            continue
        want: TensorSpec = by_name[name]
        if (kind, shape) != (want.kind, want.shape) or (nvec and nvec != want.nvec):
            problems.append(f"observation field {name!r}: env gives {kind} shape {list(shape)}"
                            + (f" n={list(nvec)}" if nvec else "")
                            + f", model expects {want.describe()}")
    problems += _action_problems(model.action_spec, action_space)
    if problems:
        raise SpecMismatch(
            f"the env does not fit model {model.name!r} version {model.version}:\n  - "
            + "\n  - ".join(problems))


def encode(model: ModelInfo, obs: Any) -> dict[str, np.ndarray | str]:
    """An env observation -> {field: array in the model's dtype}, checking shapes."""
    fields = obs if isinstance(obs, dict) else {SINGLE_KEY: obs}
    out: dict[str, np.ndarray | str] = {}
    for spec in model.observation_spec:
        if spec.name not in fields:
            raise SpecMismatch(f"observation lacks field {spec.name!r} ({spec.describe()})")
        value = fields[spec.name]
        if spec.kind == "text":
            out[spec.name] = str(value)
            continue
        arr = np.asarray(value, dtype=_DTYPES.get(spec.kind, np.float32))
        if arr.shape != spec.shape:
            raise SpecMismatch(f"observation field {spec.name!r} has shape {list(arr.shape)}, "
                               f"the model expects {spec.describe()}")
        out[spec.name] = arr
    return out


def decode(model: ModelInfo, action: np.ndarray) -> Any:
    """A served action -> what `env.step` takes (a Python int, or a float32 vector)."""
    if model.action_spec.kind == "discrete":
        return int(action)
    return np.asarray(action, dtype=np.float32)


class GymSession:
    """A session plus an env: checks the env on creation, then converts each step both ways.

    Works with a sync `Session`; for an `AsyncSession` use `check_env`, `encode` and `decode`."""

    def __init__(self, session: Any, env: gym.Env) -> None:
        self.session = session
        check_env(session.model, env.observation_space, env.action_space)
        self.env = env

    def step(self, obs: Any, reward: float = 0.0, new_episode: bool = False) -> Any:
        """One step: env observation (+ reward for the previous action) -> env action."""
        model = self.session.model
        return decode(model, self.session.step(encode(model, obs), reward, new_episode))
