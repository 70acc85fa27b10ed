"""Learning claims for continuous actions, on the `point` preset (a point robot finds a hidden
goal over 3 episodes; reward -distance). Seeded; a few minutes on one core.

- The continuous path as a whole (action scaling, exploration noise, the tanh-Gaussian actor's
  log-probabilities at the bounds, the critic over actions, the greedy mode) learns: the baseline
  agent plays greedily far better than a random policy. Measured at these settings: -18.3 and
  -18.6 per trial (seeds 0 and 1), random -60.9, heading straight for the known goal -11.7.
- amago2 learns it too once its bins span the task's returns (the preset's [-3,000, 300]):
  -23.2 / -26.1 / -27.7 / -20.8 per trial (seeds 0-3), and its values stay where the returns
  are. With the default +-1e5 its distributional targets carried the softmax's floor on far
  bins from state to state on this time-limited task and read +3,373 (seed 1, the greedy
  trials' discounted return-to-go -286) and -3,021 (seed 0 at 20k env steps, return-to-go
  -294); it played -33.7 / -63.4 / -78.1 / -95.2 (docs/results/barrier.md, "`point` over four
  seeds").
- On that wide range trimmed distributional targets keep the values in the task's range
  (-57 to -177).
"""

from pathlib import Path

import pytest
from random_play import random_policy_return

from polyskill.agent.checkpoint import load_network
from polyskill.benchmarks.point_probe import probe
from polyskill.trainer.evaluate import evaluate
from polyskill.trainer.loop import RunDir, train
from polyskill.trainer.presets import point


@pytest.mark.slow
def test_baseline_learns_the_point_task_with_continuous_actions(tmp_path: Path) -> None:
    cfg = point()
    cfg.network.agent, cfg.eval_every_steps, cfg.seed = "baseline", 1_000_000, 0
    train(cfg, tmp_path / "run", track=False)
    network = load_network(RunDir(tmp_path / "run").latest_checkpoint())
    m = evaluate(network, cfg.tasks, cfg.episodes_per_trial, trials_per_task=128, seed=99)
    random_return = random_policy_return(
        "polyskill/PointGoal-v0", 500, cfg.episodes_per_trial, seed=1
    )

    assert -65 < random_return < -57  # ~1 from the goal on every step of 3 x 20
    assert m["eval/point_goal/return"] > random_return + 30, (m, random_return)
    assert m["eval/point_goal/success"] > 0.3, m  # ends within 0.2 of the goal


@pytest.mark.slow
def test_amago2_learns_the_point_task_with_its_bins_fitted_to_the_returns(tmp_path: Path) -> None:
    cfg = point()
    assert (cfg.network.agent, cfg.network.bin_low, cfg.network.bin_high) == (
        "amago2", -3_000.0, 300.0
    )
    cfg.eval_every_steps, cfg.seed = 1_000_000, 0
    train(cfg, tmp_path / "run", track=False)
    network = load_network(RunDir(tmp_path / "run").latest_checkpoint()).eval()
    m = evaluate(network, cfg.tasks, cfg.episodes_per_trial, trials_per_task=128, seed=99)
    random_return = random_policy_return(
        "polyskill/PointGoal-v0", 500, cfg.episodes_per_trial, seed=1
    )
    # measured 33-40 above random over seeds 0-3; the wide range gave 27 above to 34 below
    assert m["eval/point_goal/return"] > random_return + 25, (m, random_return)
    p = probe(network, trials=4)
    assert 3 * p["return_to_go"] < p["value"] < 0, p  # measured -171 against -89 (seed 0)


@pytest.mark.slow
def test_trimmed_targets_keep_amago2s_values_in_the_tasks_range(tmp_path: Path) -> None:
    cfg = point()
    cfg.loss.td_target, cfg.total_steps, cfg.eval_every_steps, cfg.seed = (
        "trimmed", 20_000, 1_000_000, 0
    )
    cfg.network.bin_low, cfg.network.bin_high = -1e5, 1e5  # the wide default, not the preset's
    train(cfg, tmp_path / "run", track=False)
    network = load_network(RunDir(tmp_path / "run").latest_checkpoint()).eval()
    p = probe(network, trials=4)  # medians over the greedy trials' states (and 16 moves)
    # every reward is <= 0; the critic (of the stochastic policy, starting from 0) may lag the
    # greedy trials' own discounted return-to-go but not overshoot it threefold: plain
    # distributional targets read 10x (-3,021 against -294) at 20k env steps (seed 0)
    assert 3 * p["return_to_go"] < p["value"] < 0, p
