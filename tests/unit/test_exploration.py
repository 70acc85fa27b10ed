"""Exploration in the collector: epsilon-greedy, optionally with a per-trial random scale, and the
process collector's env-step cap."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from polyskill.agent.network import AgentNetwork
from polyskill.agent.policy import Policy
from polyskill.trainer.collector import Collector
from polyskill.trainer.config import ConfigError, TrainConfig
from polyskill.trainer.loop import RunDir, build_network, train
from polyskill.trainer.presets import smoke
from polyskill.trainer.vector import make_vector_env

ARMS = 5  # smoke's bandit


def make_collector(randomize: bool, num_envs: int = 6) -> tuple[Collector, AgentNetwork]:
    cfg = smoke()
    net = build_network(cfg)
    envs = make_vector_env(cfg.tasks, cfg.episodes_per_trial, num_envs)
    collector = Collector(envs, Policy(net, num_envs), net.obs_spec, net.action_spec, None,
                          seed=3, randomize_epsilon=randomize)  # fmt: skip
    return collector, net


def changed_fraction(collector: Collector, calls: int = 4000) -> np.ndarray:
    """Per env slot: how often epsilon 1 replaced a fixed action (random picks may match it)."""
    changed = np.zeros(collector.num_envs)
    for _ in range(calls):
        changed += collector._explore(np.zeros(collector.num_envs, np.int64), 1.0) != 0
    return changed / calls  # (N,)


@pytest.mark.parametrize("randomize", [False, True])
def test_each_slot_explores_at_its_scale_of_epsilon(randomize: bool) -> None:
    collector, _ = make_collector(randomize)
    try:
        scale = collector.eps_scale.copy()
        if randomize:
            assert np.all((0 <= scale) & (scale < 1)) and len(set(scale)) == len(scale)
        else:
            assert np.all(scale == 1.0)
        expected = scale * (ARMS - 1) / ARMS  # a random arm differs from arm 0 4 times in 5
        np.testing.assert_allclose(changed_fraction(collector), expected, atol=0.04)
    finally:
        collector.envs.close()


def test_random_scale_is_drawn_again_for_every_trial() -> None:
    collector, _ = make_collector(randomize=True)
    try:
        seen = [collector.eps_scale.copy()]
        for _ in range(3 * 10):  # smoke trials: 10 one-pull episodes, so 3 trials per slot
            if collector.step(0.5):
                seen.append(collector.eps_scale.copy())
        assert len(seen) == 4  # every slot finished a trial at the same steps
        for before, after in zip(seen, seen[1:], strict=False):
            assert np.all(before != after)
    finally:
        collector.envs.close()


def test_collector_cap_bounds_the_env_step_rate(tmp_path: Path) -> None:
    cfg = smoke()
    cfg.collector, cfg.collector_max_steps_per_s = "process", 1000.0
    cfg.total_steps, cfg.learning_starts, cfg.updates_per_iteration = 4000, 10**9, 0
    cfg.eval_every_steps, cfg.eval_trials_per_task = 10**9, 1
    t0 = time.monotonic()
    train(cfg, tmp_path / "run", track=False)
    wall = time.monotonic() - t0
    counters = json.loads((RunDir(tmp_path / "run").latest_checkpoint() / "counters.json")
                          .read_text())  # fmt: skip
    assert counters["env_steps"] >= 4000
    # the cap allows at most rate * time (start-up only adds time); a slow machine only helps
    assert counters["env_steps"] / wall <= 1000.0 * 1.05


def test_negative_cap_is_a_config_error() -> None:
    cfg = TrainConfig(tasks=smoke().tasks, collector_max_steps_per_s=-1.0)
    with pytest.raises(ConfigError, match="collector_max_steps_per_s must be >= 0"):
        cfg.validate()
