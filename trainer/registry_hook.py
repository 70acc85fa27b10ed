"""The trainer's checkpoint hook: every kept checkpoint becomes a registry version, eventually.

    train(cfg, run_dir, on_checkpoint=Registrar(run_dir, preset="smoke"))

Why a queue: the registry may be down (or slow: a remote MLflow retries HTTP), and the loop prunes
old checkpoint folders (`keep_checkpoints`). So the hook, on the training thread, only stages a
copy of what a server needs (model.safetensors, model.json and the ONNX export, ~0.2 s) plus the
tags into RUN/registry/pending/<step-N>/; a background thread registers the queue oldest first and
deletes each entry once registered. A failure logs a warning and leaves the queue for the next
checkpoint (or the next run: the queue is on disk); nothing raises into the training loop.
`close()` at the end of training gives the queue one last chance.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

from .registry import DEFAULT_MODEL_NAME, GateConfig, ModelRegistry, git_revision, metric_tags

log = logging.getLogger(__name__)
STAGED_FILES = ("model.safetensors", "model.json")


class Registrar:
    def __init__(self, run_dir: str | Path, name: str = DEFAULT_MODEL_NAME,
                 gate: GateConfig = GateConfig(), onnx: bool = True, preset: str = "",
                 experiment: str = "polyskill", uri: str | None = None,
                 background: bool = True, retry_s: float = 30.0) -> None:
        self.root = Path(run_dir) / "registry"
        self.pending = self.root / "pending"
        self.pending.mkdir(parents=True, exist_ok=True)
        self.name, self.gate_cfg, self.onnx, self.preset = name, gate, onnx, preset
        self.experiment, self.uri, self.retry_s = experiment, uri, retry_s
        self.revision = git_revision()
        self.registered: list[int] = []  # versions created by this process, in order
        self._registry: ModelRegistry | None = None
        self._lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="polyskill-registrar",
                                            daemon=True)
            self._thread.start()

    # ---- the hook -----------------------------------------------------------------------------
    def __call__(self, checkpoint: Path, metrics: dict[str, float]) -> None:
        try:
            self.stage(checkpoint, metrics)
        except Exception as e:  # noqa: BLE001 - never stop training
            log.warning("could not stage %s for registration: %s", checkpoint, e)
        if self._thread is not None:
            self._wake.set()
        else:
            self.flush()

    def done(self) -> set[str]:
        """Checkpoint names already registered from this run dir."""
        path = self.root / "registered.txt"
        return set(path.read_text().split()) if path.exists() else set()

    def stage(self, checkpoint: Path, metrics: dict[str, float]) -> Path | None:
        """Copy what a server needs and the version's tags into the pending queue. None if this
        checkpoint was registered or queued already (the loop re-saves a step when it stops)."""
        checkpoint = Path(checkpoint)
        if checkpoint.name in self.done() or (self.pending / checkpoint.name).exists():
            log.info("%s is registered or queued already; not again", checkpoint.name)
            return None
        meta = json.loads((checkpoint / "model.json").read_text())
        dst = self.pending / checkpoint.name
        tmp = self.pending / (checkpoint.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in STAGED_FILES:
            shutil.copy2(checkpoint / f, tmp / f)
        has_onnx = False
        if self.onnx:
            try:
                from polyskill.agent.export_onnx import export_checkpoint

                export_checkpoint(tmp)
                has_onnx = True
            except Exception as e:  # noqa: BLE001 - register the weights anyway
                log.warning("ONNX export of %s failed (%s); registering without it", checkpoint, e)
        counters_file = checkpoint / "counters.json"
        counters = json.loads(counters_file.read_text()) if counters_file.exists() else {}
        tags = {
            "git_revision": self.revision,
            "preset": self.preset,
            "env_steps": str(meta.get("env_steps", counters.get("env_steps", ""))),
            "tasks": ",".join(meta.get("tasks", [])),
            "checkpoint": checkpoint.name,
            "onnx": str(has_onnx).lower(),
            **metric_tags(metrics),
        }
        (tmp / "pending.json").write_text(json.dumps(
            {"metrics": metrics, "tags": tags, "run_id": counters.get("mlflow_run_id")}))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.replace(dst)
        return dst

    # ---- the queue ----------------------------------------------------------------------------
    def queued(self) -> list[Path]:
        return sorted(p for p in self.pending.iterdir()
                      if p.is_dir() and not p.name.endswith(".tmp"))

    def flush(self) -> int:
        """Register queued checkpoints oldest first; stop at the first failure. Returns how many
        are still queued."""
        with self._lock:
            for entry in self.queued():
                try:
                    info = json.loads((entry / "pending.json").read_text())
                    registry = self._registry or ModelRegistry(self.name, self.uri)
                    self._registry = registry
                    run_id = info.get("run_id") or self._own_run(registry)
                    version = registry.register_and_gate(entry, run_id, info["tags"],
                                                         info["metrics"], self.gate_cfg)
                except Exception as e:  # noqa: BLE001 - registry down: keep the queue
                    log.warning("registry unavailable (%s: %s); %d checkpoint(s) queued in %s, "
                                "retrying later", type(e).__name__, str(e)[:300],
                                len(self.queued()), self.pending)
                    self._registry = None
                    break
                self.registered.append(version.version)
                with open(self.root / "registered.txt", "a") as f:
                    f.write(entry.name + "\n")
                shutil.rmtree(entry, ignore_errors=True)
            return len(self.queued())

    def _own_run(self, registry: ModelRegistry) -> str:
        """A run to hold the artifacts when training is not tracked (or its run was not made)."""
        path = self.root / "run_id"
        if path.exists():
            return path.read_text().strip()
        client = registry.client
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment)
        run_id = client.create_run(exp_id, run_name=f"register-{self.root.parent.name}"
                                   ).info.run_id
        path.write_text(run_id)
        return run_id

    def _run(self) -> None:
        while True:
            self._wake.wait(self.retry_s)
            self._wake.clear()
            stop = self._stop
            if self.queued():
                self.flush()
            if stop:
                return

    def close(self, timeout: float = 60.0) -> int:
        """Stop the background thread after one last flush; returns checkpoints still queued."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None
        left = len(self.queued())
        if left:
            log.warning("%d checkpoint(s) not registered yet; they stay queued in %s and are "
                        "registered by the next `polyskill train` with this run dir", left,
                        self.pending)
        return left
