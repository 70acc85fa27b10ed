"""MLflow run tracking for training: params once, metrics as they come, resumable by run id.

The tracking URI comes from MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` in the working
directory (the embedded default: the full tracking + registry store without a server).
A tracking store that is down never stops training: failed writes are logged and dropped.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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
        self.client = mlflow.MlflowClient(tracking_uri())
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
