"""Replay windows of a run directory, for the diagnostics that read a trained run's critic or actor
(benchmarks/readout_probe.py, benchmarks/actor_probe.py)."""

from __future__ import annotations

import json
from pathlib import Path

from polyskill.trainer.config import TrainConfig
from polyskill.trainer.replay import Batch, ReplayBuffer


def replay_windows(run_dir: Path, windows: int) -> Batch:
    """`windows` windows of context_length + 1 steps from RUN_DIR/replay (seeded: reruns match)."""
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    replay = ReplayBuffer(run_dir / "replay", cfg.replay_max_trajectories, seed=0)
    return replay.sample(windows, cfg.network.context_length + 1)
