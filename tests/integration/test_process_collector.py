"""The collector process: acts in its own process, writes the replay, follows published weights,
and stops with the learner, flushing its trials in progress."""

import json
from pathlib import Path

import pytest

from polyskill.trainer.loop import RunDir, train
from polyskill.trainer.presets import smoke


@pytest.mark.timeout(120)
def test_training_with_a_collector_process(tmp_path: Path) -> None:
    cfg = smoke()
    cfg.collector, cfg.total_steps, cfg.learning_starts = "process", 20_000, 400
    cfg.eval_every_steps, cfg.eval_trials_per_task = 10**9, 8
    metrics = train(cfg, tmp_path / "run", track=False)
    latest = RunDir(tmp_path / "run").latest_checkpoint()
    counters = json.loads((latest / "counters.json").read_text())
    assert counters["env_steps"] >= 20_000
    assert counters["updates"] > 0
    trajectories = list((tmp_path / "run" / "replay" / "trajectories").glob("*.npz"))
    assert len(trajectories) >= 20_000 // 10  # 10-step trials, all written by the collector
    assert not list((tmp_path / "run" / "replay" / "trajectories").glob("*.tmp"))
    assert "eval/bandit/return" in metrics
