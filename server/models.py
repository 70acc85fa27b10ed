"""Loaded model versions and aliases: what a session's `model` string resolves to.

Several versions can be loaded at once (each with its own cache pool of `max_sessions` slots, so a
session keeps its slot id when it is re-encoded onto another version). A `ModelSource` fills the
store: `CheckpointSource` (one local checkpoint = version 1 under the default alias) or
`registry_source.RegistrySource` (follows `models:/NAME@ALIAS` in MLflow; `follower.py` polls it
and unloads versions no alias and no session uses). `poll()` returns versions to add and alias
moves, so the server core does not depend on where models come from.

    python -c "from polyskill.server.models import *"
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from polyskill.agent.checkpoint import read_meta

from .backends.base import Backend
from .errors import ModelNotFound, Unavailable

DEFAULT_ALIAS = "default"


@dataclass
class LoadedModel:
    """One model version ready to step: its backend (weights + cache pool) and metadata."""

    name: str
    version: int
    backend: Backend
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # checkpoint folder or registry URI, for logs


class ModelSource(Protocol):
    """Where models come from. `poll()` is called at start and then periodically (in a worker
    thread: it may block on the network and on loading weights)."""

    follow: bool  # True: poll periodically (a registry alias); False: load once

    def poll(self, num_slots: int, device: str, loaded: Collection[int] = ()
             ) -> tuple[list[LoadedModel], dict[str, int]]:
        """New versions to load (not in `loaded`), and {alias: version} for aliases that (may
        have) moved."""
        ...


def load_backend(kind: str, path: str | Path, num_slots: int, device: str, *,
                 process: bool = False, threads: int = 1) -> Backend:
    """A backend (`torch` or `onnx`) for a checkpoint folder, warmed up with one step; with
    `process`, run in its own worker process with `threads` intra-op threads
    (backends/process.py)."""
    if process:
        from .backends.process import ProcessBackend

        return ProcessBackend(kind, path, num_slots, device, threads)
    if kind == "onnx":
        from .backends.onnx import OnnxBackend

        backend: Backend = OnnxBackend.from_checkpoint(path, num_slots, device)
    elif kind == "torch":
        from .backends.torch import TorchBackend  # torch only where a model is loaded

        backend = TorchBackend.from_checkpoint(path, num_slots, device)
    else:
        raise ValueError(f"unknown backend {kind!r}; choose torch or onnx")
    warm_up(backend)
    return backend


def warm_up(backend: Backend) -> None:
    """One step on slot 0 at position 0, so the first real step does not pay for allocation.

    Harmless: a session's step at position 0 overwrites ring entry 0, and no other entry is valid
    at position 0 (see KVCache.valid_mask)."""
    from polyskill.agent.policy import StepInputs

    from .backends.base import stack_observations

    obs = {f.name: "" if f.kind == "text" else np.zeros(f.shape, f.dtype)
           for f in backend.obs_spec.fields}
    backend.step(StepInputs(
        obs=stack_observations(backend.obs_spec, [obs]),
        prev_action=np.asarray(backend.zero_action())[None],
        prev_reward=np.zeros(1, np.float32), new_episode=np.ones(1, bool),
        positions=np.zeros(1, np.int64), slot_ids=np.zeros(1, np.int64),
        starts=np.zeros(1, np.int64)))


class ModelStore:
    """Versions by number and aliases by name. Mutated on the event loop only."""

    def __init__(self, default_alias: str = DEFAULT_ALIAS,
                 source: ModelSource | None = None) -> None:
        self.default_alias = default_alias
        self.source = source  # polled by follower.ModelFollower when source.follow
        self._versions: dict[int, LoadedModel] = {}
        self._aliases: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._versions)

    @property
    def versions(self) -> list[int]:
        return sorted(self._versions)

    def add(self, model: LoadedModel, aliases: tuple[str, ...] = ()) -> None:
        self._versions[model.version] = model
        for alias in aliases:
            self.set_alias(alias, model.version)

    def set_alias(self, alias: str, version: int) -> bool:
        """Point `alias` at a loaded version; True if it moved."""
        if version not in self._versions:
            raise ModelNotFound(f"cannot point alias {alias!r} at version {version}: not loaded")
        moved = self._aliases.get(alias) != version
        self._aliases[alias] = version
        return moved

    def alias_version(self, alias: str) -> int | None:
        return self._aliases.get(alias)

    def unused(self, in_use: Collection[int]) -> list[int]:
        """Loaded versions that no alias points to and no session uses: safe to unload."""
        aliased = set(self._aliases.values())
        return [v for v in self.versions if v not in aliased and v not in in_use]

    def remove(self, version: int) -> LoadedModel:
        """Unload a version (callers check no session uses it); its aliases are dropped and its
        backend closed (a worker process stops; in-flight steps of it fail)."""
        self._aliases = {a: v for a, v in self._aliases.items() if v != version}
        model = self._versions.pop(version)
        model.backend.close()
        return model

    def close(self) -> None:
        """Close every loaded backend (server shutdown)."""
        for model in self._versions.values():
            model.backend.close()

    def aliases_of(self, version: int) -> list[str]:
        return sorted(a for a, v in self._aliases.items() if v == version)

    def get(self, version: int) -> LoadedModel:
        model = self._versions.get(version)
        if model is None:
            raise Unavailable(f"model version {version} is no longer loaded; open a new session")
        return model

    def resolve(self, ref: str) -> LoadedModel:
        """'' -> the default alias; '7' -> version 7; anything else -> an alias."""
        if not self._versions:
            raise Unavailable("no model is loaded yet; retry shortly (check the server's logs "
                              "and its --checkpoint/--model option)")
        ref = ref.strip()
        if ref.isdigit():
            if int(ref) not in self._versions:
                raise ModelNotFound(f"model version {ref} is not loaded; loaded versions: "
                                    f"{self.versions}")
            return self._versions[int(ref)]
        alias = ref or self.default_alias
        if alias not in self._aliases:
            raise ModelNotFound(f"model alias {alias!r} is not loaded; known aliases: "
                                f"{sorted(self._aliases)}, versions: {self.versions}")
        return self._versions[self._aliases[alias]]

    def apply(self, source: ModelSource, num_slots: int, device: str) -> list[str]:
        """Poll `source` now (blocking) and apply its answer; returns the aliases that moved."""
        new, aliases = source.poll(num_slots, device, set(self.versions))
        return self.update(new, aliases)

    def update(self, new: list[LoadedModel], aliases: dict[str, int]) -> list[str]:
        for model in new:
            self.add(model)
        return [alias for alias, version in aliases.items() if self.set_alias(alias, version)]


class CheckpointSource:
    """A local checkpoint folder (from `polyskill train`): loaded once as one version."""

    follow = False

    def __init__(self, path: str | Path, aliases: tuple[str, ...] = (DEFAULT_ALIAS,),
                 backend: str = "torch", process: bool = False, threads: int = 1) -> None:
        self.path = Path(path)
        self.aliases = aliases
        self.backend = backend
        self.process, self.threads = process, threads  # see load_backend
        self._loaded = False

    def poll(self, num_slots: int, device: str, loaded: Collection[int] = ()
             ) -> tuple[list[LoadedModel], dict[str, int]]:
        if self._loaded:
            return [], {}
        meta = read_meta(self.path)
        version = int(meta.get("version", 1))
        name = str(meta.get("name") or _checkpoint_name(self.path))
        backend = load_backend(self.backend, self.path, num_slots, device,
                               process=self.process, threads=self.threads)
        model = LoadedModel(name, version, backend, meta, str(self.path))
        self._loaded = True
        return [model], {a: version for a in self.aliases}


def _checkpoint_name(path: Path) -> str:
    """RUN/checkpoints/latest -> RUN; any other folder -> its own name."""
    path = path.resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.name


def source_from_uri(model_uri: str, backend: str = "torch", process: bool = False,
                    threads: int = 1) -> ModelSource:
    """`models:/NAME@ALIAS` (followed) or `models:/NAME/VERSION` (fixed) in the MLflow registry."""
    from .registry_source import RegistrySource

    return RegistrySource(model_uri, backend, process=process, threads=threads)
