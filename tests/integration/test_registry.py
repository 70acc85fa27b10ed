"""The model registry against real MLflow stores: a SQLite store in tmp_path and one real
`mlflow server` on loopback. Inspected with MLflow's own client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from mlflow import MlflowClient

from polyskill.agent.checkpoint import load_network
from polyskill.cli import main as polyskill
from polyskill.server.registry_source import RegistrySource
from polyskill.server.testing import make_checkpoint
from polyskill.trainer.registry import ModelRegistry
from polyskill.trainer.registry_hook import Registrar

NET = dict(d_model=16, num_layers=1, num_heads=2, d_ff=32, context_length=4, encoder_hidden=16,
           head_hidden=16, num_critics=2, num_bins=8, gammas=(0.9, 0.99))


def checkpoint(root: Path, step: int, seed: int = 0) -> Path:
    path = root / "checkpoints" / f"step-{step:012d}"
    make_checkpoint(str(path), gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2),
                    seed=seed, **NET)
    meta = json.loads((path / "model.json").read_text())
    meta.update(env_steps=step, tasks=["bandit"])
    (path / "model.json").write_text(json.dumps(meta))
    (path / "learner.pt").write_bytes(b"optimizer state: never registered")
    return path


def metrics(mean: float) -> dict[str, float]:
    return {"eval/mean_return": mean, "eval/bandit/return": mean}


def test_versions_aliases_tags_and_artifacts(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    reg = Registrar(tmp_path / "run", "pm", preset="smoke", uri=uri, background=False)
    for step, mean in ((100, 4.0), (200, 2.0), (300, 5.0)):
        reg(checkpoint(tmp_path / "run", step, seed=step), metrics(mean))
    assert reg.registered == [1, 2, 3] and reg.queued() == []

    client = MlflowClient(uri, registry_uri=uri)
    model = client.get_registered_model("pm")
    assert {a: int(v) for a, v in model.aliases.items()} == {"candidate": 3, "champion": 3}
    v1, v2, v3 = (client.get_model_version("pm", str(v)) for v in (1, 2, 3))
    assert v2.tags["gate"].startswith("failed: mean return 2")
    assert v1.tags["gate"] == v3.tags["gate"] == "passed"
    assert v3.tags["eval.mean_return"] == "5.0" and v3.tags["eval.bandit.return"] == "5.0"
    assert v3.tags["preset"] == "smoke" and v3.tags["env_steps"] == "300"
    assert v3.tags["onnx"] == "true" and v3.tags["tasks"] == "bandit"
    assert len(v3.tags["git_revision"].split("-")[0]) in (40, 7) or \
        v3.tags["git_revision"] == "unknown"
    files = {os.path.basename(f.path) for f in client.list_artifacts(
        v3.run_id, "checkpoints/step-000000000300")}
    assert files == {"model.safetensors", "model.json", "model.onnx"}  # no learner.pt, no pickle

    local = ModelRegistry("pm", uri).download(3, tmp_path / "dl")
    net = load_network(local)
    assert net.cfg.d_model == 16

    # by hand: promote, rollback (to the champion before), rollback again
    assert polyskill(["models", "--name", "pm", "--tracking-uri", uri, "promote", "2"]) == 0
    assert int(client.get_model_version_by_alias("pm", "champion").version) == 2
    assert polyskill(["models", "--name", "pm", "--tracking-uri", uri, "rollback"]) == 0
    assert int(client.get_model_version_by_alias("pm", "champion").version) == 3
    assert polyskill(["models", "--name", "pm", "--tracking-uri", uri, "rollback"]) == 0
    assert int(client.get_model_version_by_alias("pm", "champion").version) == 1
    assert polyskill(["models", "--name", "pm", "--tracking-uri", uri, "list"]) == 0
    assert polyskill(["models", "--name", "pm", "--tracking-uri", uri, "promote", "9"]) == 2


def test_registry_down_keeps_a_queue_and_catches_up(tmp_path: Path) -> None:
    run = tmp_path / "run"
    down = Registrar(run, "pm", uri="http://127.0.0.1:9", onnx=False, background=False)
    started = time.monotonic()
    for step in (100, 200):
        ckpt = checkpoint(run, step)
        down(ckpt, metrics(1.0))  # must not raise
        shutil.rmtree(ckpt)  # the loop prunes old checkpoints: the queue has its own copy
    assert time.monotonic() - started < 30
    assert [p.name for p in down.queued()] == ["step-000000000100", "step-000000000200"]

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    up = Registrar(run, "pm", uri=uri, onnx=False, background=True, retry_s=0.2)
    deadline = time.monotonic() + 30
    while up.queued() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert up.close() == 0
    versions = ModelRegistry("pm", uri).versions()
    assert [(v.version, v.tags["env_steps"]) for v in versions] == [(2, "200"), (1, "100")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(150)
def test_against_a_real_mlflow_server(tmp_path: Path) -> None:
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("mlflow server could not start: "
                                + (tmp_path / "server.log").read_text()[-500:])
                time.sleep(0.5)
        reg = Registrar(tmp_path / "run", "pm", uri=uri, background=False)
        reg(checkpoint(tmp_path / "run", 100), metrics(3.0))
        assert reg.registered == [1]
        client = MlflowClient(uri, registry_uri=uri)
        mv = client.get_model_version_by_alias("pm", "champion")
        assert int(mv.version) == 1 and mv.source.startswith("mlflow-artifacts:")
        source = RegistrySource("models:/pm@champion", backend="onnx", tracking_uri=uri,
                                cache_dir=tmp_path / "cache")
        new, aliases = source.poll(4, "cpu")
        assert [m.version for m in new] == [1] and aliases == {"default": 1, "champion": 1}
        assert new[0].backend.name == "onnx-cpu"
    finally:
        proc.terminate()
        proc.wait(20)
