"""The one interface the batcher drives: a model with a per-slot KV-cache pool, stepped in batches.

Backends (torch now, ONNX Runtime later) differ only in how `step` runs; everything else (specs,
stacking observations, re-encoding a context) is shared here. Inputs and outputs are numpy so the
batcher never touches a framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from polyskill.agent.policy import ActionParams, StepInputs
from polyskill.agent.spaces import ActionSpec, FieldSpec, ObsSpec, tokenize_text


def tokenize(text: str, spec: FieldSpec) -> np.ndarray:
    """Text -> (max_length,) int64 word ids by the one rule of `agent.spaces.tokenize_text`
    (the documented wire representation of text: proto TensorSpec.vocab)."""
    return tokenize_text(text, spec.vocab, spec.max_length)


def stack_observations(spec: ObsSpec, observations: Sequence[dict[str, np.ndarray | str]]
                       ) -> dict[str, np.ndarray]:
    """B validated observations -> {field: (B, ...)} in the dtypes the network takes."""
    out: dict[str, np.ndarray] = {}
    for f in spec.fields:
        values = [o[f.name] for o in observations]
        if f.kind == "text":
            out[f.name] = np.stack([tokenize(str(v), f) for v in values])  # (B, L)
        elif len(values) == 1:  # B=1 (the latency path): a view, no stacking
            out[f.name] = np.asarray(values[0], dtype=f.dtype)[None]  # (1, *shape)
        else:
            out[f.name] = np.stack(values).astype(f.dtype, copy=False)  # (B, *shape)
    return out


def stack_batch(spec: ObsSpec, obs: dict[str, np.ndarray | Sequence[str]]
                ) -> dict[str, np.ndarray]:
    """Validated stacked observations (field -> (B, ...), a text field B strings) -> the
    network's dtypes, as stack_observations makes them from B single observations."""
    out: dict[str, np.ndarray] = {}
    for f in spec.fields:
        value = obs[f.name]
        if f.kind == "text":
            out[f.name] = np.stack([tokenize(str(v), f) for v in value])  # (B, L)
        else:
            out[f.name] = np.asarray(value, dtype=f.dtype)  # (B, *shape)
    return out


class Backend(ABC):
    """A loaded network plus its cache pool of `num_slots` slots."""

    name: str = "abstract"

    def __init__(self, obs_spec: ObsSpec, action_spec: ActionSpec, context_length: int) -> None:
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.context_length = context_length

    @property
    @abstractmethod
    def num_slots(self) -> int: ...

    @property
    @abstractmethod
    def cache_bytes(self) -> int:
        """Bytes held by the KV-cache pool (for metrics and capacity planning)."""

    @abstractmethod
    def step(self, inputs: StepInputs) -> ActionParams:
        """One token for each of B slots (`inputs.slot_ids`); writes the cache in place."""

    pipelined: bool = False
    """True where `send` / `receive` can keep several passes in flight (a model in another
    process): the batcher then builds and sends pass N+1 while pass N computes."""

    def send(self, inputs: StepInputs) -> None:
        """Start a `step` whose result the next `receive` returns (passes answered in order)."""
        raise NotImplementedError(f"{self.name} does not pipeline passes")

    def receive(self) -> ActionParams:
        """The result of the oldest `send` not yet received."""
        raise NotImplementedError(f"{self.name} does not pipeline passes")

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release what the backend holds outside this process (a worker process); default none."""

    def zero_action(self) -> np.ndarray:
        """The 'previous action' of a session's first step."""
        if self.action_spec.kind == "discrete":
            return np.zeros((), dtype=np.int64)
        return np.zeros(self.action_spec.dim, dtype=np.float32)

    def reencode(self, slot: int, steps: Sequence) -> None:
        """Rebuild a slot's cache from raw recent steps (`sessions.RawStep`), oldest first.

        Used to move a live session onto another model version: the first stored step's position
        becomes the slot's `start`, so attention never reaches the dropped older steps.
        """
        if not steps:
            return
        start = np.array([steps[0].position], dtype=np.int64)
        for s in steps:
            self.step(StepInputs(
                obs=stack_observations(self.obs_spec, [s.obs]),
                prev_action=np.asarray(s.prev_action)[None],
                prev_reward=np.array([s.prev_reward], dtype=np.float32),
                new_episode=np.array([s.new_episode]),
                positions=np.array([s.position], dtype=np.int64),
                slot_ids=np.array([slot], dtype=np.int64), starts=start,
            ))
