"""MLflow run tracking for training: params once, metrics as they come, resumable by run id.

The tracking URI comes from MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the working
directory (the embedded default: the full tracking + registry store without a server).
A tracking store that is down never stops training: failed writes are logged and dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def mlflow_client(uri: str | None = None) -> Any:
    """An MlflowClient (tracking and registry on `uri`) whose store exists.

    A fresh SQLite store is created under a file lock beside it: the trainer, the server and the
    demo start together on a new machine, and MLflow's table creation is not safe against
    itself ("table ... already exists" in the second process)."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    path = _sqlite_path(uri)
    if path is None or not path.parent.is_dir():
        return MlflowClient(uri, registry_uri=uri)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # creates the tables if missing
        client.search_registered_models(max_results=1)
    return client


def _sqlite_path(uri: str) -> Path | None:
    """sqlite:///relative.db or sqlite:////absolute.db -> the file; None for other stores."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]
    return out


class RunTracker:
    def __init__(self, experiment: str, run_name: str, run_id: str | None = None) -> None:
        import mlflow  # slow import: only when tracking

        self.mlflow = mlflow
        self.client = mlflow_client()
        self.run_id = run_id
        try:
            if run_id is None:
                exp = self.client.get_experiment_by_name(experiment)
                exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
                self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        except Exception as e:  # noqa: BLE001 - the store being down must not stop training
            log.warning("MLflow tracking unavailable (%s): training continues without it", e)

    def log_params(self, params: dict[str, Any]) -> None:
        self._try(
            lambda: self.client.log_batch(
                self.run_id,
                params=[self.mlflow.entities.Param(k, v) for k, v in _flatten(params).items()],
            )
        )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        ts = int(time.time() * 1000)
        self._try(
            lambda: self.client.log_batch(
                self.run_id,
                metrics=[
                    self.mlflow.entities.Metric(k.replace("@", "_"), float(v), ts, step)
                    for k, v in metrics.items()
                ],
            )
        )

    def log_artifact(self, path: str) -> None:
        self._try(lambda: self.client.log_artifact(self.run_id, path))

    def finish(self, status: str = "FINISHED") -> None:
        self._try(lambda: self.client.set_terminated(self.run_id, status))

    def _try(self, fn) -> None:
        if self.run_id is None:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            log.warning("MLflow write failed (%s); continuing", e)
