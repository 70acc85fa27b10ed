"""A `ModelSource` backed by the MLflow model registry: `models:/NAME@ALIAS` or `models:/NAME/V`.

Each `poll()` resolves the alias (one small request), and only when it points at a version the
server has not loaded does it download that version's checkpoint folder (model.safetensors +
model.json [+ model.onnx]) and build a backend from it with the project's own loader: nothing is
unpickled. The followed alias and the server's default alias both point at the result, so new
sessions (model "" or "champion") get it; `follower.ModelFollower` calls this periodically in a
worker thread and unloads versions nobody uses.

    polyskill serve --model models:/polyskill@champion --poll-s 5 [--backend onnx]
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from polyskill.agent.checkpoint import read_meta

from .errors import Unavailable
from .models import DEFAULT_ALIAS, LoadedModel, load_backend

log = logging.getLogger(__name__)
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w.-]+)|/(?P<version>\d+))$")


def parse_model_uri(uri: str) -> tuple[str, str | None, int | None]:
    """'models:/polyskill@champion' -> ('polyskill', 'champion', None); '/7' -> (.., None, 7)."""
    m = _URI.match(uri.strip())
    if m is None:
        raise ValueError(f"--model expects models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    version = m.group("version")
    return m.group("name"), m.group("alias"), int(version) if version else None


class RegistrySource:
    def __init__(self, uri: str, backend: str = "torch", tracking_uri: str | None = None,
                 cache_dir: str | Path | None = None, process: bool = False,
                 threads: int = 1) -> None:
        self.name, self.alias, self.version = parse_model_uri(uri)
        self.uri = uri
        self.follow = self.alias is not None
        self.backend = backend
        self.process, self.threads = process, threads  # see models.load_backend
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="polyskill-models-"))
        self._registry = None

    def _reg(self):
        if self._registry is None:
            from polyskill.trainer.registry import ModelRegistry

            self._registry = ModelRegistry(self.name, self.tracking_uri)
        return self._registry

    def resolve(self) -> int:
        """The version the URI points at now (raises Unavailable if the alias is not set)."""
        if self.version is not None:
            return self.version
        try:
            info = self._reg().alias(self.alias)
        except Exception:
            self._registry = None  # a fresh client next time (the store may have restarted)
            raise
        if info is None:
            raise Unavailable(f"{self.uri}: alias {self.alias!r} is not set in the registry yet "
                              "(train and promote a version first)")
        return info.version

    def poll(self, num_slots: int, device: str, loaded: Collection[int] = ()
             ) -> tuple[list[LoadedModel], dict[str, int]]:
        version = self.resolve()
        aliases = {DEFAULT_ALIAS: version}
        if self.alias:
            aliases[self.alias] = version
        if version in loaded:
            return [], aliases
        return [self.load(version, num_slots, device)], aliases

    def load(self, version: int, num_slots: int, device: str) -> LoadedModel:
        target = self.cache_dir / f"{self.name}-v{version}"
        shutil.rmtree(target, ignore_errors=True)
        local = self._reg().download(version, target)
        meta = read_meta(local)  # fails clearly if the version is not a Polyskill checkpoint
        backend = load_backend(self.backend, local, num_slots, device, process=self.process,
                               threads=self.threads)
        meta = {**meta, "registry_tags": self._reg().get(version).tags}
        log.info("loaded model version", extra={"model": self.name, "model_version": version,
                                                 "backend": backend.name})
        return LoadedModel(self.name, version, backend, meta, f"models:/{self.name}/{version}")
