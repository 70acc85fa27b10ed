"""Gymnasium spaces <-> the network's typed specs, and observation validation.

A spec is plain data (JSON-able) so it can travel in a checkpoint, the model registry and the gRPC
ModelInfo; the network is built from specs, never from gymnasium objects. Observations are always a
dict of named fields; a non-Dict space becomes the single field "obs".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np

Kind = Literal["vector", "image", "discrete", "multidiscrete", "text"]
SINGLE_KEY = "obs"


class SpaceError(ValueError):
    """A space the network cannot take, or an observation that does not fit its spec."""


@dataclass(frozen=True)
class FieldSpec:
    """One observation field. `nvec` holds category counts for (multi)discrete fields."""

    name: str
    kind: Kind
    shape: tuple[int, ...]
    dtype: str
    low: float | None = None
    high: float | None = None
    nvec: tuple[int, ...] = ()
    max_length: int = 0  # text only: tokens kept
    vocab: tuple[str, ...] = ()  # text only: known words, index 0 is reserved for unknown/pad

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FieldSpec:
        d = dict(d)
        for k in ("shape", "nvec", "vocab"):
            d[k] = tuple(d.get(k, ()))
        return FieldSpec(**d)


@dataclass(frozen=True)
class ActionSpec:
    kind: Literal["discrete", "continuous"]
    n: int = 0  # discrete: number of actions
    dim: int = 0  # continuous: vector size
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def input_size(self) -> int:
        """Width of the action as network input (one-hot for discrete)."""
        return self.n if self.kind == "discrete" else self.dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ActionSpec:
        d = dict(d)
        d["low"], d["high"] = tuple(d.get("low", ())), tuple(d.get("high", ()))
        return ActionSpec(**d)


@dataclass(frozen=True)
class ObsSpec:
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [f.to_dict() for f in self.fields]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ObsSpec:
        return ObsSpec(tuple(FieldSpec.from_dict(f) for f in d["fields"]))


TEXT_WORD = re.compile(r"[a-z0-9]+")
"""The one text rule (trainer and server): lower-case, then runs of [a-z0-9] are words."""


def tokenize_text(text: str, vocab: tuple[str, ...], max_length: int) -> np.ndarray:
    """Text -> (max_length,) int64 ids: a word's index in `vocab` + 1; unknown words and padding
    are 0 (the encoder ignores them). Words past `max_length` are dropped. The server tokenises
    served strings with this same function."""
    index = {w: i + 1 for i, w in enumerate(vocab)}
    ids = [index.get(w, 0) for w in TEXT_WORD.findall(text.lower())][:max_length]
    out = np.zeros(max(max_length, 1), dtype=np.int64)  # (L,)
    out[: len(ids)] = ids
    return out


class TokenIds(gym.spaces.Box):
    """A text field already tokenised by `tokenize_text`: (max_length,) int64 ids in [0, V].

    Envs expose text this way (e.g. BabyAI's mission) so vector envs can stack it and
    `batch_observations` gets ids; `obs_spec_from_space` turns it into a FieldSpec(kind="text")
    carrying the vocabulary, so a served model takes the raw string instead.
    """

    def __init__(self, vocab: tuple[str, ...], max_length: int, seed: Any = None) -> None:
        if max_length < 1 or not vocab:
            raise ValueError("TokenIds needs a non-empty vocab and max_length >= 1")
        self.vocab = tuple(vocab)
        super().__init__(0, len(self.vocab), shape=(max_length,), dtype=np.int64, seed=seed)

    def encode(self, text: str) -> np.ndarray:  # str -> (L,) int64
        return tokenize_text(text, self.vocab, self.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenIds) and other.vocab == self.vocab and super().__eq__(other)

    def __repr__(self) -> str:
        return f"TokenIds(vocab={len(self.vocab)} words, max_length={self.shape[0]})"


def _is_image(space: gym.spaces.Box) -> bool:
    return space.dtype == np.uint8 and len(space.shape) == 3


def _bound(x: np.ndarray) -> float | None:
    """One scalar bound when all entries agree and are finite (else None: unbounded/mixed)."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    if flat.size and np.all(flat == flat[0]) and np.isfinite(flat[0]):
        return float(flat[0])
    return None


def field_from_space(name: str, space: gym.Space, text_vocab: tuple[str, ...] = ()) -> FieldSpec:
    if isinstance(space, TokenIds):  # before Box: it is one, but its ids are words
        return FieldSpec(name, "text", (), "str", max_length=space.shape[0], vocab=space.vocab)
    if isinstance(space, gym.spaces.Box):
        if _is_image(space):
            return FieldSpec(name, "image", tuple(space.shape), "uint8", 0.0, 255.0)
        if len(space.shape) > 1:
            raise SpaceError(
                f"observation field {name!r}: Box of shape {space.shape} is neither a vector nor a "
                "uint8 HxWxC image; flatten it (gymnasium.wrappers.FlattenObservation)"
            )
        return FieldSpec(
            name, "vector", tuple(space.shape), "float32", _bound(space.low), _bound(space.high)
        )
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise SpaceError(f"observation field {name!r}: Discrete start must be 0")
        return FieldSpec(name, "discrete", (), "int64", nvec=(int(space.n),))
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise SpaceError(f"observation field {name!r}: MultiDiscrete must be one-dimensional")
        return FieldSpec(
            name,
            "multidiscrete",
            tuple(space.shape),
            "int64",
            nvec=tuple(int(n) for n in space.nvec),
        )
    if isinstance(space, gym.spaces.Text):
        return FieldSpec(
            name, "text", (), "str", max_length=int(space.max_length), vocab=text_vocab
        )
    raise SpaceError(
        f"observation field {name!r}: the network cannot take {space!r}; supported: Box (vector or "
        "uint8 image), Discrete, MultiDiscrete, Text, and a Dict of these"
    )


def obs_spec_from_space(space: gym.Space, text_vocab: tuple[str, ...] = ()) -> ObsSpec:
    if isinstance(space, gym.spaces.Dict):
        return ObsSpec(tuple(field_from_space(k, s, text_vocab) for k, s in space.spaces.items()))
    return ObsSpec((field_from_space(SINGLE_KEY, space, text_vocab),))


def action_spec_from_space(space: gym.Space) -> ActionSpec:
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise SpaceError("action space: Discrete start must be 0")
        return ActionSpec("discrete", n=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise SpaceError(
                "action space: Box actions need finite bounds (the policy is tanh-squashed)"
            )
        return ActionSpec(
            "continuous",
            dim=int(space.shape[0]),
            low=tuple(float(x) for x in space.low),
            high=tuple(float(x) for x in space.high),
        )
    raise SpaceError(
        f"action space {space!r} is not supported; use Discrete (categorical policy) or a 1-D Box "
        "(tanh-Gaussian policy)"
    )


def as_obs_dict(obs: Any) -> dict[str, Any]:
    return obs if isinstance(obs, dict) else {SINGLE_KEY: obs}


def validate_observation(spec: ObsSpec, obs: dict[str, np.ndarray | str]) -> None:
    """Raise SpaceError naming the field and the expected spec if `obs` does not fit."""
    missing = [n for n in spec.names if n not in obs]
    extra = [k for k in obs if k not in spec.names]
    if missing or extra:
        raise SpaceError(
            f"observation keys {sorted(obs)} do not match the model's {spec.names}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    for f in spec.fields:
        value = obs[f.name]
        if f.kind == "text":
            if not isinstance(value, str):
                raise SpaceError(
                    f"field {f.name!r}: expected a text string, got {type(value).__name__}"
                )
            continue
        arr = np.asarray(value)
        if tuple(arr.shape) != f.shape:
            raise SpaceError(
                f"field {f.name!r}: expected shape {list(f.shape)}, got {list(arr.shape)}"
            )
        if f.kind in ("vector",):
            if not np.issubdtype(arr.dtype, np.floating):
                raise SpaceError(f"field {f.name!r}: expected float32, got {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise SpaceError(f"field {f.name!r}: contains NaN or inf")
        elif f.kind == "image":
            if arr.dtype != np.uint8:
                raise SpaceError(f"field {f.name!r}: expected uint8 image, got {arr.dtype}")
        else:
            if not np.issubdtype(arr.dtype, np.integer):
                raise SpaceError(f"field {f.name!r}: expected an integer dtype, got {arr.dtype}")
            n = np.asarray(f.nvec).reshape(arr.shape) if f.kind == "multidiscrete" else f.nvec[0]
            if np.any(arr < 0) or np.any(arr >= n):
                raise SpaceError(
                    f"field {f.name!r}: values must be in [0, {f.nvec}) , got {arr.tolist()}"
                )


NUMPY_DTYPES = {
    "vector": np.float32,
    "image": np.uint8,
    "discrete": np.int64,
    "multidiscrete": np.int64,
}


def batch_observations(spec: ObsSpec, obs: Any) -> dict[str, np.ndarray]:
    """Stacked observations from a vector env (array or dict of arrays, leading batch dim) ->
    field -> array in the network's dtype. Text fields must already be token ids."""
    obs = as_obs_dict(obs)
    out = {}
    for f in spec.fields:
        dtype = NUMPY_DTYPES.get(f.kind, np.int64)
        out[f.name] = np.asarray(obs[f.name], dtype=dtype)
    return out


def single_observation(spec: ObsSpec, obs: Any) -> dict[str, np.ndarray]:
    """One env's observation -> field -> array in the network's dtype (no batch dim)."""
    obs = as_obs_dict(obs)
    return {
        f.name: np.asarray(obs[f.name], dtype=NUMPY_DTYPES.get(f.kind, np.int64))
        for f in spec.fields
    }
