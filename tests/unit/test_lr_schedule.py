"""The learner's learning-rate schedule: linear warm-up, then constant or a cosine decay that
settles at a floor (what `optim.lr_decay_updates` promises in `--list-keys`)."""

import math

import gymnasium as gym
import pytest
from test_losses import tiny_net

from polyskill.trainer.learner import Learner, OptimConfig
from polyskill.trainer.losses import LossConfig


def _lrs(cfg: OptimConfig, n: int) -> list[float]:
    """The rates the Learner's optimizer uses over its first n updates."""
    learner = Learner(tiny_net("amago2", gym.spaces.Discrete(2)), cfg, LossConfig())
    out = []
    for _ in range(n):
        out.append(learner.optimizer.param_groups[0]["lr"])
        learner.optimizer.step()  # no gradients: nothing moves, but the schedule advances
        learner.scheduler.step()
    return out


def test_without_decay_the_rate_warms_up_then_stays() -> None:
    lrs = _lrs(OptimConfig(lr=1e-3, warmup_updates=10), 50)
    assert lrs[0] == pytest.approx(1e-4)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert lrs[9:] == pytest.approx([1e-3] * 41)


def test_cosine_decay_reaches_its_floor_halfway_is_the_mean_and_holds() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_updates=10, lr_decay_updates=100, lr_final_fraction=0.1)
    lrs = _lrs(cfg, 200)
    assert lrs[9] == pytest.approx(1e-3)  # end of warm-up: the full rate
    assert lrs[9 + 50] == pytest.approx(0.55e-3)  # half way: (1 + 0.1) / 2
    assert all(a >= b for a, b in zip(lrs[9:110], lrs[10:111], strict=True))
    assert lrs[109:] == pytest.approx([1e-4] * 91)
    assert not any(math.isnan(x) for x in lrs)
