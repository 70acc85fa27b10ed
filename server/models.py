"""Loaded model versions and aliases: what a session's `model` string resolves to.

Several versions can be loaded at once (each with its own cache pool of `max_sessions` slots, so a
session keeps its slot id when it is re-encoded onto another version). A `ModelSource` fills the
store: `CheckpointSource` now (one local checkpoint = version 1 under the default alias); the
MLflow registry source that follows an alias and loads new versions beside old ones plugs in
through the same protocol (`poll()` returns versions to add and alias moves), so the server core
does not change.

    python -c "from polyskill.server.models import *"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
    """Where models come from. `poll()` is called at start and then periodically."""

    def poll(self, num_slots: int, device: str) -> tuple[list[LoadedModel], dict[str, int]]:
        """New versions to load, and {alias: version} for aliases that (may have) moved."""
        ...


class ModelStore:
    """Versions by number and aliases by name. Mutated on the event loop only."""

    def __init__(self, default_alias: str = DEFAULT_ALIAS) -> None:
        self.default_alias = default_alias
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

    def set_alias(self, alias: str, version: int) -> None:
        if version not in self._versions:
            raise ModelNotFound(f"cannot point alias {alias!r} at version {version}: not loaded")
        self._aliases[alias] = version

    def remove(self, version: int) -> LoadedModel:
        """Unload a version (callers check no session uses it); its aliases are dropped."""
        self._aliases = {a: v for a, v in self._aliases.items() if v != version}
        return self._versions.pop(version)

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

    def apply(self, source: ModelSource, num_slots: int, device: str) -> None:
        new, aliases = source.poll(num_slots, device)
        for model in new:
            self.add(model)
        for alias, version in aliases.items():
            self.set_alias(alias, version)


class CheckpointSource:
    """A local checkpoint folder (from `polyskill train`): loaded once as one version."""

    def __init__(self, path: str | Path, aliases: tuple[str, ...] = (DEFAULT_ALIAS,)) -> None:
        self.path = Path(path)
        self.aliases = aliases
        self._loaded = False

    def poll(self, num_slots: int, device: str) -> tuple[list[LoadedModel], dict[str, int]]:
        if self._loaded:
            return [], {}
        from .backends.torch import TorchBackend  # torch only where a model is loaded

        meta = read_meta(self.path)
        version = int(meta.get("version", 1))
        name = str(meta.get("name") or _checkpoint_name(self.path))
        backend = TorchBackend.from_checkpoint(self.path, num_slots, device)
        model = LoadedModel(name, version, backend, meta, str(self.path))
        self._loaded = True
        return [model], {a: version for a in self.aliases}


def _checkpoint_name(path: Path) -> str:
    """RUN/checkpoints/latest -> RUN; any other folder -> its own name."""
    path = path.resolve()
    if path.parent.name == "checkpoints":
        return path.parent.parent.name
    return path.name


def source_from_uri(model_uri: str) -> ModelSource:
    """`models:/NAME@ALIAS` -> a registry source. Not implemented before the MLflow issue."""
    if not model_uri.startswith("models:/"):
        raise ValueError(f"--model expects models:/NAME@ALIAS or models:/NAME/VERSION, "
                         f"got {model_uri!r}")
    raise NotImplementedError(
        f"cannot load {model_uri}: the MLflow registry loader arrives with the MLflow integration; "
        "serve a local checkpoint for now: --checkpoint RUN_DIR/checkpoints/latest"
    )
