"""Learning claims, checked by running the learner: the smoke preset beats a random policy and
adapts in context (later episodes of a trial beat the first). Seeded; about a minute on one core."""

from pathlib import Path

import numpy as np
import pytest
from random_play import random_policy_return

from polyskill.agent.checkpoint import load_network
from polyskill.trainer.evaluate import evaluate
from polyskill.trainer.loop import RunDir, train
from polyskill.trainer.presets import smoke


@pytest.mark.slow
def test_smoke_preset_beats_random_and_adapts_in_context(tmp_path: Path) -> None:
    cfg = smoke()
    cfg.total_steps, cfg.eval_every_steps, cfg.seed = 24_000, 1_000_000, 0
    train(cfg, tmp_path / "run", track=False)
    network = load_network(RunDir(tmp_path / "run").latest_checkpoint())
    m = evaluate(network, cfg.tasks, cfg.episodes_per_trial, trials_per_task=256, seed=99)
    random_return = random_policy_return(
        "polyskill/Bandit-v0", 2000, cfg.episodes_per_trial, seed=1, num_arms=5
    )

    assert 2.9 < random_return < 3.5  # 10 pulls at 0.32 expected reward each
    assert m["eval/bandit/return"] > random_return + 0.8, (m, random_return)
    first, last = m["eval/bandit/return_ep1"], m["eval/bandit/return_ep10"]
    late = np.mean([m[f"eval/bandit/return_ep{k}"] for k in range(6, 11)])
    assert last > first + 0.05, m  # the last episode of a trial beats the first: in context
    assert late > first + 0.1, m
