"""The MLflow model registry: versions of one registered model, their tags, and two aliases.

A version is a checkpoint folder (model.safetensors + model.json [+ model.onnx]) logged as
artifacts of a run under `checkpoints/<step-N>/`, registered with `source=<that artifact URI>`.
Loading one needs only this project's code (`agent.checkpoint.load_network`): no pickle, no
`mlflow.pytorch` flavour (DESIGN.md section 6: it is slow and pickles the module).

Aliases: `candidate` is set on every new version; `champion` moves only when the candidate passes
`gate` (or by hand: `polyskill models promote/rollback`). The registered model keeps its champion
history in a tag so `rollback` knows where to go back to.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db polyskill models list
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tracking import mlflow_client, tracking_uri

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "polyskill"
CANDIDATE = "candidate"
CHAMPION = "champion"
HISTORY_TAG = "polyskill.champion_history"  # registered-model tag: "3,5,8" (last = champion)
FORMAT_TAG = "polyskill.format"
CHECKPOINT_FILES = ("model.safetensors", "model.json", "model.onnx")


# ---- the gate ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateConfig:
    mean_margin: float = 0.05
    """The candidate's mean eval return may be below the champion's by at most this fraction of
    |champion mean| (0 = must not be worse at all)."""
    task_regression: float = 0.2
    """No task's eval return may drop below the champion's by more than this fraction of
    |champion task return|."""

    def __post_init__(self) -> None:
        if self.mean_margin < 0 or self.task_regression < 0:
            raise ValueError(f"gate margins must be >= 0, got mean_margin={self.mean_margin}, "
                             f"task_regression={self.task_regression}")


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "passed" if self.passed else "failed: " + "; ".join(self.reasons)


def gate(candidate: dict[str, float], champion: dict[str, float] | None,
         cfg: GateConfig = GateConfig()) -> GateDecision:
    """Should the candidate replace the champion? Metrics use eval keys (`eval/mean_return`,
    `eval/<task>/return`). No champion -> pass. A task the champion was not evaluated on is not
    compared (a new task cannot regress)."""
    if champion is None:
        return GateDecision(True, ["no champion yet"])
    if "eval/mean_return" not in candidate:
        return GateDecision(False, ["candidate has no eval metrics (evaluate before checkpoint)"])
    reasons = []
    cand_mean = candidate["eval/mean_return"]
    champ_mean = champion.get("eval/mean_return")
    if champ_mean is not None and cand_mean < champ_mean - cfg.mean_margin * abs(champ_mean):
        reasons.append(f"mean return {cand_mean:.4g} < champion {champ_mean:.4g} by more than "
                       f"{cfg.mean_margin:.0%}")
    for key in sorted(champion):
        if not (key.startswith("eval/") and key.endswith("/return")) or key == "eval/mean_return":
            continue
        old, new = champion[key], candidate.get(key)
        if new is not None and new < old - cfg.task_regression * abs(old):
            task = key[len("eval/"):-len("/return")]
            reasons.append(f"task {task} return {new:.4g} < champion {old:.4g} by more than "
                           f"{cfg.task_regression:.0%}")
    return GateDecision(not reasons, reasons)


# ---- tags <-> metrics -------------------------------------------------------------------------
def metric_tags(metrics: dict[str, float]) -> dict[str, str]:
    """Eval metrics -> version tags: `eval/bandit/return` -> `eval.bandit.return`."""
    return {k.replace("/", "."): repr(float(v)) for k, v in metrics.items()
            if k.startswith("eval/")}


def metrics_from_tags(tags: dict[str, str]) -> dict[str, float]:
    """Inverse of `metric_tags` (task names must not contain dots)."""
    out = {}
    for k, v in tags.items():
        if k.startswith("eval."):
            try:
                out[k.replace(".", "/")] = float(v)
            except ValueError:
                continue
    return out


def git_revision() -> str:
    """The source revision the trainer runs (`-dirty` with local changes); 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def quiet_mlflow_defaults() -> None:
    """Fail fast when a remote registry is down (MLflow retries HTTP for minutes by default),
    and no progress bars in logs. Explicit environment settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# ---- the registry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionInfo:
    version: int
    aliases: list[str]
    tags: dict[str, str]
    source: str
    run_id: str
    created_ms: int

    @property
    def metrics(self) -> dict[str, float]:
        return metrics_from_tags(self.tags)


class ModelRegistry:
    """One registered model in an MLflow tracking/registry store (low-level MlflowClient)."""

    def __init__(self, name: str = DEFAULT_MODEL_NAME, uri: str | None = None) -> None:
        quiet_mlflow_defaults()
        self.name = name
        self.uri = uri or tracking_uri()
        self.client = mlflow_client(self.uri)

    # ---- reading ------------------------------------------------------------------------------
    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(int(mv.version), list(mv.aliases or []), dict(mv.tags or {}),
                           mv.source, mv.run_id or "", int(mv.creation_timestamp or 0))

    def exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e.error_code) or "not found" in str(e).lower():
                return False
            raise

    def versions(self) -> list[VersionInfo]:
        """All versions, newest first (aliases filled in)."""
        if not self.exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.name}'", max_results=10_000)
        # search results may omit aliases: read them from the registered model.
        aliases: dict[int, list[str]] = {}
        for alias, version in self.client.get_registered_model(self.name).aliases.items():
            aliases.setdefault(int(version), []).append(alias)
        out = [self._info(mv) for mv in found]
        out = [VersionInfo(v.version, sorted(aliases.get(v.version, [])), v.tags, v.source,
                           v.run_id, v.created_ms) for v in out]
        return sorted(out, key=lambda v: -v.version)

    def get(self, version: int) -> VersionInfo:
        return self._info(self.client.get_model_version(self.name, str(version)))

    def alias(self, alias: str) -> VersionInfo | None:
        """The version an alias points to, or None when the alias (or the model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException as e:
            if "RESOURCE_DOES_NOT_EXIST" in str(e.error_code) or "INVALID_PARAMETER" in str(
                    e.error_code) or "not found" in str(e).lower():
                return None
            raise

    def download(self, version: int, dst: str | Path | None = None) -> Path:
        """Fetch a version's checkpoint folder; returns the local folder (model.json inside)."""
        import mlflow

        uri = self.client.get_model_version_download_uri(self.name, str(version))
        dst = Path(dst) if dst else Path(tempfile.mkdtemp(prefix=f"{self.name}-v{version}-"))
        dst.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                    tracking_uri=self.uri)
        return Path(local)

    # ---- writing ------------------------------------------------------------------------------
    def register(self, checkpoint: Path, run_id: str, tags: dict[str, str]) -> VersionInfo:
        """Log a checkpoint folder as run artifacts and register it as a new version."""
        from mlflow.exceptions import MlflowException

        artifact_path = f"checkpoints/{checkpoint.name}"
        with tempfile.TemporaryDirectory() as tmp:  # only the files a server needs, no learner.pt
            for f in CHECKPOINT_FILES:
                if (checkpoint / f).exists():
                    shutil.copy2(checkpoint / f, Path(tmp) / f)
            self.client.log_artifacts(run_id, tmp, artifact_path)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        try:
            self.client.create_registered_model(
                self.name, description="Polyskill in-context multi-task policy (checkpoint "
                "folder: model.safetensors + model.json [+ model.onnx]); load with "
                "polyskill.agent.checkpoint.load_network")
        except MlflowException as e:
            if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
                raise
        mv = self.client.create_model_version(self.name, source, run_id=run_id,
                                              tags={FORMAT_TAG: "1", **tags})
        return self._info(mv)

    def set_tag(self, version: int, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.name, str(version), key, value)

    def set_alias(self, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def champion_history(self) -> list[int]:
        tag = self.client.get_registered_model(self.name).tags.get(HISTORY_TAG, "")
        return [int(v) for v in tag.split(",") if v.strip()]

    def promote(self, version: int, alias: str = CHAMPION) -> None:
        """Point `champion` at `version` and remember it for rollback."""
        self.get(version)  # a clear error for an unknown version
        self.set_alias(alias, version)
        history = self.champion_history()
        if not history or history[-1] != version:
            history.append(version)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG,
                                             ",".join(map(str, history[-100:])))

    def rollback(self, to: int | None = None) -> int:
        """Move `champion` back to the previous champion (or to `to`); returns the version."""
        history = self.champion_history()
        current = self.alias(CHAMPION)
        if to is None:
            while history and current is not None and history[-1] == current.version:
                history.pop()
            if not history:
                raise ValueError(f"{self.name}: no earlier champion to roll back to; use "
                                 "`polyskill models promote VERSION`")
            to = history[-1]
        else:
            self.get(to)
            history.append(to)
        self.set_alias(CHAMPION, to)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, ",".join(map(str, history)))
        return to

    def register_and_gate(self, checkpoint: Path, run_id: str, tags: dict[str, str],
                          metrics: dict[str, float], gate_cfg: GateConfig) -> VersionInfo:
        """The trainer's path: new version, `candidate` on it, `champion` if it passes the gate."""
        info = self.register(checkpoint, run_id, tags)
        self.set_alias(CANDIDATE, info.version)
        champion = self.alias(CHAMPION)
        decision = gate(metrics, None if champion is None else champion.metrics, gate_cfg)
        self.set_tag(info.version, "gate", decision.summary()[:5000])
        if decision.passed:
            self.promote(info.version)
        log.info("registered %s version %d (%s)%s", self.name, info.version, decision.summary(),
                 " -> champion" if decision.passed else "")
        return self.get(info.version)

