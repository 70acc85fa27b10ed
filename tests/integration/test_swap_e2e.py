"""End to end with real processes: `polyskill train` registers versions in a real SQLite MLflow
store, `polyskill serve --model models:/polyskill@champion` follows the alias, and
`polyskill models promote / rollback` swap it while 20 sessions keep stepping with zero errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from mlflow import MlflowClient

from polyskill_client._proto.polyskill.v1 import policy_pb2 as pb
from polyskill_client._proto.polyskill.v1 import policy_pb2_grpc as pb_grpc
from polyskill_client.tensors import encode_observation

POLL_S = 1.0
CLI = [sys.executable, "-m", "polyskill.cli"]


class Fleet:
    """Sessions stepping over ActStreams on a private event loop; records versions and errors."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stop = False
        self.errors: list[str] = []
        self.versions: dict[str, list[int]] = {}
        self.tasks: list = []
        self.channel = self.call(self._channel())

    async def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def add(self, n: int) -> list[str]:
        ids = self.call(self._open(n))
        self.tasks += [asyncio.run_coroutine_threadsafe(self._run(s), self.loop) for s in ids]
        return ids

    async def _open(self, n: int) -> list[str]:
        client = pb_grpc.PolicyServiceStub(self.channel)
        ids = [(await client.OpenSession(pb.OpenSessionRequest(seed=i + 1))).session_id
               for i in range(n)]
        for sid in ids:
            self.versions[sid] = []
        return ids

    async def _run(self, sid: str) -> None:
        client = pb_grpc.PolicyServiceStub(self.channel)
        obs = encode_observation(np.zeros(1, np.float32))  # the bandit: one float
        try:
            call = client.ActStream()
            while not self.stop:
                await call.write(pb.ActRequest(session_id=sid, observation=obs, reward=1.0))
                self.versions[sid].append((await call.read()).model_version)
                await asyncio.sleep(0.01)
            await call.done_writing()
            await client.CloseSession(pb.CloseSessionRequest(session_id=sid))
        except Exception as e:  # noqa: BLE001 - counted, the test asserts there are none
            self.errors.append(f"{sid}: {e!r}")

    def close(self) -> None:
        self.stop = True
        for t in self.tasks:
            t.result(30)
        self.call(self.channel.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def wait_version(client: pb_grpc.PolicyServiceStub, version: int, timeout: float) -> float:
    """Seconds until new sessions get `version` (GetModelInfo on the default alias)."""
    start = time.monotonic()
    while client.GetModelInfo(pb.GetModelInfoRequest()).version != version:
        assert time.monotonic() - start < timeout, f"server did not swap to {version}"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.timeout(170)
def test_train_register_promote_rollback_while_serving(tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    train = subprocess.run(
        [*CLI, "train", "--preset", "smoke", "--run-dir", "run", "--steps", "1200",
         "--set", "checkpoint_every_steps=400", "--set", "eval_every_steps=400",
         "--set", "eval_trials_per_task=8", "--set", "learning_starts=160",
         "--gate-margin", "1000", "--gate-task-drop", "1000"],  # every candidate passes
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert train.returncode == 0, train.stderr[-3000:]
    uri = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri, registry_uri=uri)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'polyskill'"))
    assert versions == [1, 2, 3]
    assert int(client.get_model_version_by_alias("polyskill", "champion").version) == 3

    server = subprocess.Popen(
        [*CLI, "serve", "--model", "models:/polyskill@champion", "--poll-s", str(POLL_S),
         "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=open(tmp_path / "server.log", "w"), text=True)
    try:
        line = server.stdout.readline()
        assert "listening on" in line, (tmp_path / "server.log").read_text()[-3000:]
        address = line.split()[-1]
        channel = grpc.insecure_channel(address)
        stub = pb_grpc.PolicyServiceStub(channel)
        assert stub.GetModelInfo(pb.GetModelInfoRequest()).version == 3
        fleet = Fleet(address)
        old = fleet.add(20)
        time.sleep(1.0)

        subprocess.run([*CLI, "models", "promote", "1"], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=60)
        took = wait_version(stub, 1, 2 * POLL_S + 1)
        assert took <= 2 * POLL_S, took
        new = fleet.add(5)  # new sessions get the new champion ...
        time.sleep(1.0)
        subprocess.run([*CLI, "models", "rollback"], cwd=tmp_path, env=env, check=True,
                       capture_output=True, timeout=60)
        took_back = wait_version(stub, 3, 2 * POLL_S + 1)
        assert took_back <= 2 * POLL_S, took_back
        time.sleep(0.5)
        fleet.close()

        assert fleet.errors == []
        assert all(fleet.versions[s] and set(fleet.versions[s]) == {3} for s in old)  # pinned
        assert all(fleet.versions[s] and set(fleet.versions[s]) == {1} for s in new)
        # version 1: no alias, no session left -> unloaded
        deadline = time.monotonic() + 2 * POLL_S
        while True:
            try:
                stub.GetModelInfo(pb.GetModelInfoRequest(model="1"))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
                break
            assert time.monotonic() < deadline, "version 1 was not unloaded"
            time.sleep(0.1)
        channel.close()
    finally:
        server.terminate()
        server.wait(20)
