"""The continuous actor probe (benchmarks/actor_probe.py) reads a real short Pendulum run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyskill.agent.config import NetworkConfig
from polyskill.benchmarks.actor_probe import main, probe
from polyskill.benchmarks.replay_windows import replay_windows
from polyskill.trainer.batch import TensorBatch
from polyskill.trainer.config import TrainConfig
from polyskill.trainer.learner import OptimConfig
from polyskill.trainer.loop import RunDir, train
from polyskill.trainer.presets import tasks_from_env_ids


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = NetworkConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=16,
                        encoder_hidden=32, head_hidden=32, num_critics=2, num_bins=16,
                        gammas=(0.9, 0.99), dropout=0.0)  # fmt: skip
    cfg = TrainConfig(
        tasks=tasks_from_env_ids(["Pendulum-v1"]), episodes_per_trial=1, num_envs=2,
        batch_size=4, steps_per_iteration=8, updates_per_iteration=1, learning_starts=32,
        total_steps=400, eval_every_steps=10**9, eval_trials_per_task=1,
        checkpoint_every_steps=200, replay_max_trajectories=50, eps_start=1.0, eps_end=1.0,
        network=net, optim=OptimConfig(lr=1e-3, warmup_updates=10),
    )  # fmt: skip
    run = tmp_path_factory.mktemp("probe") / "run"
    train(cfg, run, track=False)
    return run


def test_probe_counts_clipped_actions_and_splits_the_pull(pendulum_run: Path, capsys) -> None:
    torch.manual_seed(0)
    b = TensorBatch.from_numpy(replay_windows(pendulum_run, 8))
    stats = probe(RunDir(pendulum_run).latest_checkpoint(), b)
    # the same count straight from the windows: Pendulum's torque is in [-2, 2]
    executed = b.actions[:, :-1][b.action_mask[:, :-1]].numpy()  # (N, 1)
    assert stats["on_bound"] == pytest.approx(float(np.mean(np.abs(executed) >= 2 * 0.999)),
                                              abs=1e-6)  # fmt: skip
    assert stats["on_bound"] > 0.02  # epsilon 1: noise clipped at the bounds on every step
    for key in ("on_bound", "beyond_95", "greedy_beyond_95", "kept_on_bound", "kept_inside"):
        assert 0.0 <= stats[key] <= 1.0, key
    assert stats["std"] > 0 and np.isfinite(stats["pull_on_bound"] + stats["pull_inside"])
    main([str(pendulum_run), "--windows", "8"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step-")]
    assert len(rows) == len(list((pendulum_run / "checkpoints").glob("step-*"))) >= 2
