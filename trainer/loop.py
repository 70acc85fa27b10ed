"""The continual training loop, in plain sight: collect -> update -> evaluate -> checkpoint.

    polyskill train --preset smoke --run-dir runs/smoke

A run directory holds everything needed to resume: config.json, replay/ (one file per trial),
checkpoints/step-N/ (weights, metadata, optimiser, counters) and checkpoints/LATEST. SIGINT or
SIGTERM finishes the current iteration, writes the trials in progress to the replay, checkpoints
and exits 0; running the same command on the same run directory resumes. After SIGKILL the run
resumes from its last checkpoint with every trial written since.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from polyskill.agent.checkpoint import load_network, save_network
from polyskill.agent.network import AgentNetwork
from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space
from polyskill.malloc import mmap_large_blocks
from polyskill.malloc import trim as trim_heap

from .batch import TensorBatch
from .config import ConfigError, TrainConfig
from .evaluate import evaluate
from .experience import InlineExperience, ProcessExperience
from .learner import Learner
from .replay import ReplayBuffer
from .tracking import RunTracker
from .vector import probe_spaces

log = logging.getLogger(__name__)
# Settings a resumed run may change; anything else must match the stored config.
PER_INVOCATION = ("total_steps", "max_seconds", "log_every_seconds", "progress_log_seconds")
INIT_ONLY = {"network": ("critic_start",)}
"""Settings that only shape the initial weights: a resumed run loads its own, so they may differ."""
CheckpointHook = Callable[[Path, dict[str, float]], None]


@dataclass
class Counters:
    env_steps: int = 0
    updates: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    mlflow_run_id: str | None = None


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_network(cfg: TrainConfig) -> AgentNetwork:
    """Network for the task mix; incompatible spaces fail here, before any training."""
    try:
        obs_space, act_space = probe_spaces(cfg.tasks)
        return AgentNetwork(
            cfg.network, obs_spec_from_space(obs_space), action_spec_from_space(act_space)
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


class RunDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.checkpoints = root / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoints / "LATEST"
        if not pointer.exists():
            return None
        path = self.checkpoints / pointer.read_text().strip()
        return path if path.exists() else None

    def prepare_config(self, cfg: TrainConfig) -> TrainConfig:
        """First run: store the config. Resume: the stored config must match (steps may grow).

        A setting added since the run was stored reads as its default (new settings default to
        the old behaviour), so a run resumes after an upgrade."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "config.json"
        if not path.exists():
            _write_json(path, cfg.to_dict())
            return cfg
        stored = TrainConfig.from_dict(json.loads(path.read_text())).to_dict()
        new = cfg.to_dict()
        diff = config_differences(stored, cfg)
        if diff:
            raise ConfigError(
                f"{self.root} holds a run with a different configuration (differs in: "
                f"{', '.join(diff)}); resume with the same settings or choose a new --run-dir"
            )
        stored.update({k: new[k] for k in PER_INVOCATION})
        _write_json(path, stored)
        return cfg

    def save(
        self, network: AgentNetwork, learner: Learner, counters: Counters, keep: int, extra: dict
    ) -> Path:
        name = f"step-{counters.env_steps:012d}"
        path = self.checkpoints / name
        tmp = self.checkpoints / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_network(network, tmp, extra=extra)
        torch.save(learner.state_dict(), tmp / "learner.pt")
        _write_json(tmp / "counters.json", counters.__dict__)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        (self.checkpoints / "LATEST.tmp").write_text(name)
        os.replace(self.checkpoints / "LATEST.tmp", self.checkpoints / "LATEST")
        kept = sorted(p for p in self.checkpoints.glob("step-*") if not p.name.endswith(".tmp"))
        for old in kept[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path


class _ProgressLog:
    """The progress bar's line for runs without a terminal (tqdm disables itself there), so a
    training job in a container or under nohup says how far it is."""

    def __init__(self, cfg: TrainConfig, counters: Counters, bar: tqdm) -> None:
        self.every, self.total, self.counters = cfg.progress_log_seconds, cfg.total_steps, counters
        self.on = bool(bar.disable) and self.every > 0
        self.t, self.steps, self.updates = time.monotonic(), counters.env_steps, counters.updates

    def maybe_log(self, now: float) -> None:
        if not self.on or now - self.t < self.every:
            return
        c, dt = self.counters, now - self.t
        steps_s = (c.env_steps - self.steps) / dt
        eta = (self.total - c.env_steps) / steps_s if steps_s > 0 else float("inf")
        log.info(
            "%d / %d env steps (%.0f %%), %d updates; %.0f env steps/s, %.1f updates/s; "
            "%.1f min to go at this rate",
            c.env_steps, self.total, 100 * c.env_steps / max(self.total, 1), c.updates,
            steps_s, (c.updates - self.updates) / dt, eta / 60,
        )  # fmt: skip
        self.t, self.steps, self.updates = now, c.env_steps, c.updates


def config_differences(
    stored: dict[str, Any], cfg: TrainConfig, init_too: bool = False
) -> list[str]:
    """The settings in which a stored run's config differs from `cfg`, budget and time limit
    aside. Settings of the initial weights count only with `init_too`: a resumed run loads its
    own weights, but a finished run's results depend on them."""
    stored = TrainConfig.from_dict(stored).to_dict()
    new = cfg.to_dict()
    if not init_too:
        for section, keys in INIT_ONLY.items():
            new[section].update({k: stored[section][k] for k in keys})
    return sorted(
        _differing(k, stored.get(k), new.get(k))
        for k in set(stored) | set(new)
        if k not in PER_INVOCATION and stored.get(k) != new.get(k)
    )


def _differing(key: str, stored: Any, new: Any) -> str:
    """`loss.td_target=scalar (now distributional)` for a differing nested setting, else `key`."""
    if isinstance(stored, dict) and isinstance(new, dict):
        return ", ".join(
            f"{key}.{k}={stored.get(k)} (now {new.get(k)})"
            for k in sorted(set(stored) | set(new))
            if stored.get(k) != new.get(k)
        )
    return key


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the end of the iteration (then checkpoint)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the caller stops us another way
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        log.info(
            "received %s: finishing the iteration and checkpointing", signal.Signals(signum).name
        )
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def train(
    cfg: TrainConfig, run_dir: Path, on_checkpoint: CheckpointHook | None = None, track: bool = True
) -> dict[str, float]:
    """Train until cfg.total_steps env steps (or a stop signal); returns the last eval metrics."""
    cfg.validate()
    mmap_large_blocks()  # NOTE: else resident memory grows without bound (polyskill/malloc.py)
    rd = RunDir(Path(run_dir))
    cfg = rd.prepare_config(cfg)
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    network = build_network(cfg)
    learner = Learner(network, cfg.optim, cfg.loss)
    counters = Counters(next_eval=cfg.eval_every_steps, next_checkpoint=cfg.checkpoint_every_steps)
    latest = rd.latest_checkpoint()
    if latest is not None:
        network.load_state_dict(load_network(latest).state_dict())
        learner.load_state_dict(torch.load(latest / "learner.pt", weights_only=True))
        counters = Counters(**json.loads((latest / "counters.json").read_text()))
        log.info(
            "resumed from %s at %d env steps, %d updates",
            latest,
            counters.env_steps,
            counters.updates,
        )
    network.to(device)

    replay = ReplayBuffer(
        rd.root / "replay",
        cfg.replay_max_trajectories,
        seed=cfg.seed + counters.updates,
        writer_elsewhere=cfg.collector == "process",
        weighting=cfg.replay_weighting,
    )
    if cfg.collector == "process":
        experience = ProcessExperience(cfg, network, replay, counters.env_steps)
    else:
        experience = InlineExperience(cfg, network, replay, counters.env_steps, device)
    tracker = RunTracker(cfg.experiment, rd.root.name, counters.mlflow_run_id) if track else None
    if tracker and counters.mlflow_run_id is None:
        counters.mlflow_run_id = tracker.run_id
        tracker.log_params({**cfg.to_dict(), "run_dir": str(rd.root)})

    def checkpoint(metrics: dict[str, float]) -> None:
        extra = {
            "env_steps": counters.env_steps,
            "tasks": [t.name for t in cfg.tasks],
            "eval": metrics,
        }
        path = rd.save(network, learner, counters, cfg.keep_checkpoints, extra)
        if on_checkpoint:
            on_checkpoint(path, metrics)

    def run_eval() -> dict[str, float]:
        m = evaluate(
            network,
            cfg.tasks,
            cfg.episodes_per_trial,
            cfg.eval_trials_per_task,
            seed=cfg.seed + 7919 + counters.env_steps,
            device=device,
        )
        log.info(
            "eval at %d steps: %s",
            counters.env_steps,
            {k: round(v, 3) for k, v in m.items() if k.endswith("/return")},
        )
        if tracker:
            tracker.log_metrics(m, counters.env_steps)
        return m

    window: dict[str, list[float]] = defaultdict(list)
    t_log, steps_log, updates_log = time.monotonic(), counters.env_steps, counters.updates
    metrics: dict[str, float] = {}
    last_eval, t_housekeeping = -1, time.monotonic()
    bar = tqdm(
        total=cfg.total_steps,
        initial=counters.env_steps,
        unit="step",
        dynamic_ncols=True,
        disable=None,
    )
    progress = _ProgressLog(cfg, counters, bar)
    deadline = time.monotonic() + cfg.max_seconds if cfg.max_seconds > 0 else float("inf")
    with _StopFlag() as flag:
        while counters.env_steps < cfg.total_steps and not flag.stop:
            if time.monotonic() >= deadline:
                log.info("max_seconds reached at %d env steps", counters.env_steps)
                break
            before = counters.env_steps
            if isinstance(experience, ProcessExperience):
                learning = counters.env_steps >= cfg.learning_starts
                trials = experience.collect(wait=not learning)
            else:
                trials = experience.collect()
            if time.monotonic() - t_housekeeping > 1.0:
                trim_heap()  # NOTE: else resident memory creeps up (polyskill/malloc.py)
                t_housekeeping = time.monotonic()
            for task, ret in trials:
                window[f"train/{task}/return"].append(ret)
            counters.env_steps = experience.env_steps
            bar.update(counters.env_steps - before)
            if not (counters.env_steps >= cfg.learning_starts and len(replay) > 0):
                if isinstance(experience, ProcessExperience):
                    time.sleep(0.05)  # waiting for the collector's first trials
            else:
                for _ in range(cfg.updates_per_iteration):
                    batch = replay.sample(cfg.batch_size, cfg.network.context_length)
                    for k, v in learner.update(TensorBatch.from_numpy(batch, device)).items():
                        window[k].append(v)
                    counters.updates += 1
                experience.publish(network)
            if counters.env_steps >= counters.next_eval:
                metrics, last_eval = run_eval(), counters.env_steps
                counters.next_eval += cfg.eval_every_steps
            if counters.env_steps >= counters.next_checkpoint:
                counters.next_checkpoint += cfg.checkpoint_every_steps
                if on_checkpoint is not None and last_eval != counters.env_steps:
                    # a registered version's eval tags (and the promotion gate) must describe
                    # these weights, not an earlier evaluation
                    metrics, last_eval = run_eval(), counters.env_steps
                checkpoint(metrics)
            now = time.monotonic()
            progress.maybe_log(now)
            if now - t_log >= cfg.log_every_seconds:
                rates = {
                    "train/env_steps": counters.env_steps,
                    "train/updates": counters.updates,
                    "train/env_steps_per_s": (counters.env_steps - steps_log) / (now - t_log),
                    "train/updates_per_s": (counters.updates - updates_log) / (now - t_log),
                }
                logged = {**rates, **{k: float(np.mean(v)) for k, v in window.items()}}
                bar.set_postfix(
                    sps=f"{rates['train/env_steps_per_s']:.0f}",
                    ups=f"{rates['train/updates_per_s']:.1f}",
                )
                if tracker:
                    tracker.log_metrics(logged, counters.env_steps)
                window.clear()
                t_log, steps_log, updates_log = now, counters.env_steps, counters.updates
        bar.close()
        experience.close()
        counters.env_steps = experience.env_steps
        if last_eval != counters.env_steps:
            metrics = run_eval()
        checkpoint(metrics)
    if tracker:
        _log_learning_curve(tracker, rd.root / "learning_curve.png")
        tracker.finish()
    return metrics


def _log_learning_curve(tracker: RunTracker, path: Path) -> None:
    """Save the run's learning curve as PNG beside it and in MLflow; never fail the run."""
    try:
        from .plots import plot_run

        tracker.log_artifact(str(plot_run(tracker.run_id, path)))
        log.info("learning curve: %s", path)
    except Exception as e:  # noqa: BLE001 - a plot must not lose a finished run
        log.warning("could not plot the learning curve: %s", e)
